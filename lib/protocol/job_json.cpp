#include "protocol/job_json.hpp"

#include "protocol/control_reply.hpp"

#include <boost/json.hpp>

namespace kpsd {

namespace json = boost::json;

namespace {
template <class T>
void put(json::object& o, std::string_view key, const std::optional<T>& v) {
  if (v) {
    o[key] = *v;
  } else {
    o[key] = nullptr;
  }
}
}  // namespace

json::object job_to_json(const Job& j) {
  json::object o;
  o["id"] = j.id;
  o["server_id"] = j.server_id;
  o["state"] = to_string(j.state);
  o["attempts"] = j.attempts;
  o["next_attempt_at"] = j.next_attempt_at;
  put(o, "task_id", j.task_id);
  put(o, "delivery_status", j.delivery_status);
  put(o, "task_status", j.task_status);
  put(o, "error_code", j.error_code);
  put(o, "error_msg", j.error_msg);
  o["created_at"] = j.created_at;
  o["updated_at"] = j.updated_at;
  put(o, "port", j.port);
  put(o, "auth_type", j.auth_type);  // the type only; the key is never sent back
  put(o, "task_error_code", j.task_error_code);
  put(o, "task_error_msg", j.task_error_msg);
  o["task_failures"] = j.task_failures;
  if (j.held) o["held"] = true;    // its batch is paused
  o["maybe_done"] = j.maybe_done;  // failed after a call went again past an unknown outcome
  return o;
}

json::object batch_to_json(const Batch& b) {
  json::object o;
  o["id"] = b.id;
  put(o, "name", b.name);
  o["created_at"] = b.created_at;
  json::object states;
  std::int64_t total = 0;
  for (const auto& [state, n] : b.states) {
    states[to_string(state)] = n;
    total += n;
  }
  o["states"] = std::move(states);
  o["total"] = total;
  // Its brakes and where they stand (fields added for issue 22; null/absent when off).
  o["paused"] = b.paused ? json::value(to_string(*b.paused)) : json::value(nullptr);
  if (b.paused) o["paused_at"] = b.paused_at;
  put(o, "paused_detail", b.paused_detail);
  if (b.brakes.canary) o["canary"] = *b.brakes.canary;
  if (auto budget = describe_max_failures(b.brakes); !budget.empty()) o["max_failures"] = budget;
  o["ended"] = b.ended;
  o["failed"] = b.failed;
  return o;
}

json::object attempt_to_json(const Attempt& a) {
  json::object o;
  o["n"] = a.n;
  o["started_at"] = a.started_at;
  put(o, "finished_at", a.finished_at);
  put(o, "http_status", a.http_status);
  put(o, "task_id", a.task_id);
  put(o, "delivery_status", a.delivery_status);
  put(o, "error_code", a.error_code);
  put(o, "error_msg", a.error_msg);
  put(o, "request_id", a.request_id);
  put(o, "latency_ms", a.latency_ms);
  put(o, "look", a.look);  // what the look before the next call found (after this one's outcome
                           // was unknown)
  return o;
}

json::object job_detail_to_json(const JobDetail& detail) {
  json::array attempts;
  for (const Attempt& a : detail.attempts) attempts.push_back(attempt_to_json(a));
  return json::object{{"job", job_to_json(detail.job)}, {"attempts", std::move(attempts)}};
}

json::object job_page_to_json(const JobPage& page, std::int64_t limit) {
  ListReply reply{page.jobs, page.request_ids, std::nullopt};
  // A full page: there may be more after its last id.
  if (!page.jobs.empty() && static_cast<std::int64_t>(page.jobs.size()) == limit) {
    reply.next_after_id = page.jobs.back().id;
  }
  return to_json(reply);
}

}  // namespace kpsd
