// The control replies as JSON: what kpsd sends, built from the structs kpsctl parses back
// (control_reply_parse.cpp), so the two ends share one definition of each reply. Key order is
// the wire's as documented; stats is in stats_reply_json.cpp.
#include "protocol/control_reply.hpp"
#include "protocol/job_json.hpp"

#include <boost/json.hpp>

namespace kpsd {

namespace json = boost::json;

json::object to_json(const ReplyEnvelope& r) {
  json::object o{{"ok", r.ok}};
  if (!r.ok || !r.error.empty()) o["error"] = r.error;
  return o;
}

json::object to_json(const ErrorReply& r) { return {{"error", r.error}}; }

json::object to_json(const EnqueueReply& r) {
  json::array jobs;
  jobs.reserve(r.jobs.size());
  for (const EnqueueResult& j : r.jobs) {
    jobs.push_back(json::object{{"id", j.id}, {"existing", j.existing}});
  }
  return {{"jobs", std::move(jobs)}, {"batch_id", r.batch_id}};
}

json::object to_json(const ListReply& r) {
  json::array jobs;
  jobs.reserve(r.jobs.size());
  bool with_request_ids = r.request_ids.size() == r.jobs.size() && !r.jobs.empty();
  for (std::size_t i = 0; i < r.jobs.size(); ++i) {
    json::object j = job_to_json(r.jobs[i]);
    if (with_request_ids) {
      const auto& id = r.request_ids[i];
      j["last_request_id"] = id ? json::value(*id) : json::value(nullptr);
    }
    jobs.push_back(std::move(j));
  }
  json::object reply{{"jobs", std::move(jobs)}};
  if (r.next_after_id) reply["next_after_id"] = *r.next_after_id;
  return reply;
}

json::object to_json(const ShowReply& r) { return job_detail_to_json(r); }

json::object to_json(const BatchesReply& r) {
  json::array out;
  for (const Batch& b : r.batches) out.push_back(batch_to_json(b));
  return {{"batches", std::move(out)}};
}

json::object to_json(const PrunePreviewReply& r) {
  json::array rows;
  for (const PruneCount& c : r.counts) {
    rows.push_back(
        json::object{{"batch_id", c.batch_id}, {"state", to_string(c.state)}, {"jobs", c.jobs}});
  }
  return {{"dry_run", true},
          {"would_prune", r.would_prune},
          {"counts", std::move(rows)},
          {"before_ms", r.before_ms}};
}

json::object to_json(const PruneReply& r) {
  return {{"pruned", r.pruned}, {"more", r.more}, {"before_ms", r.before_ms}};
}

json::object to_json(const VersionReply& r) {
  return {{"version", r.version}, {"schema_version", r.schema_version}, {"pid", r.pid}};
}

json::object to_json(const RetryCountsReply& r) {
  json::object o{{"requeued", r.requeued},
                 {"rechecking", r.rechecking},
                 {"skipped_key_gone", r.skipped_key_gone},
                 {"skipped_call_in_flight", r.skipped_call_in_flight},
                 {"skipped_server_busy", r.skipped_server_busy}};
  if (r.batch_id) o.emplace("batch_id", *r.batch_id);
  return o;
}

json::object to_json(const CancelBatchReply& r) {
  return {{"batch_id", r.batch_id}, {"cancelled", r.cancelled}};
}

namespace {
json::object job_result_json(const JobResult& r) {
  json::object o{{"id", r.id}};
  if (r.result) o["result"] = *r.result;
  if (r.error) o["error"] = *r.error;
  return o;
}
}  // namespace

json::object to_json(const PerJobReply& r) {
  // One job: the shape it had before several could be given.
  if (r.results.empty() && r.error) return {{"error", *r.error}};
  if (r.results.size() == 1 && !r.error && r.results.front().result && !r.results.front().error) {
    return job_result_json(r.results.front());
  }
  json::array results;
  for (const JobResult& one : r.results) results.push_back(job_result_json(one));
  json::object reply{{"results", std::move(results)}};
  if (r.error) reply.emplace("error", *r.error);
  return reply;
}

json::object to_json(const PauseReply& r) {
  if (!r.batch) return {{"paused", r.paused}};
  return {{"batch_id", r.batch->batch_id},
          {"paused", r.paused},
          {r.paused ? "held" : "released", r.batch->jobs},
          {"changed", r.batch->changed}};
}

json::object to_json(const ReloadReply& r) {
  json::array applied, need_restart;
  for (const auto& a : r.applied) applied.emplace_back(a);
  for (const auto& n : r.need_restart) need_restart.emplace_back(n);
  json::object reply{{"applied", std::move(applied)}, {"need_restart", std::move(need_restart)}};
  if (r.error) reply.emplace("error", *r.error);
  return reply;
}

}  // namespace kpsd
