// The stats reply both ways: kpsd writes it (kpsctl stats and wait, the status page's
// /api/overview), kpsctl reads it back. See control_reply.hpp.
#include "protocol/control_reply.hpp"
#include "protocol/job_json.hpp"
#include "protocol/json_fields.hpp"

#include <boost/json.hpp>

#include <cmath>

namespace kpsd {

namespace json = boost::json;

namespace {

// A rate or share as JSON: a whole value as an integer (Boost.JSON writes the double 40 as
// `4E1`), another one as the double it is.
json::value number(double d) {
  constexpr double exact = 9007199254740992.0;  // 2^53: every integer below is a double
  if (std::trunc(d) == d && std::fabs(d) < exact) return static_cast<std::int64_t>(d);
  return d;
}

template <class T>
json::value or_null(const std::optional<T>& v) {
  return v ? json::value(*v) : json::value(nullptr);
}

json::array paused_batches_json(const std::vector<PausedBatchView>& batches) {
  json::array out;
  for (const PausedBatchView& b : batches) {
    json::object o{{"id", b.id}, {"reason", b.reason}, {"paused_at", b.paused_at}};
    o["name"] = or_null(b.name);
    o["detail"] = or_null(b.detail);
    out.push_back(std::move(o));
  }
  return out;
}

json::object store_json(const StatsView::Store& s) {
  json::object store{{"writable", s.writable}, {"outcomes_waiting", s.outcomes_waiting}};
  if (s.problem) store["problem"] = *s.problem;
  if (s.down_ms) store["down_ms"] = *s.down_ms;
  if (s.read_problem) store["read_problem"] = *s.read_problem;
  return store;
}

StatsView::Store store_of(const JsonFields& f) {
  return {f.boolean("writable"), f.int64("outcomes_waiting"), f.opt_string("problem"),
          f.opt_int64("down_ms"), f.opt_string("read_problem")};
}

PausedBatchView paused_batch_of(const JsonFields& f) {
  return {f.int64("id"), f.opt_string("name"), f.string("reason"), f.int64("paused_at"),
          f.opt_string("detail")};
}

void read_view(const JsonFields& f, StatsView& r) {
  JsonFields states = f.object("states");
  for (JobState s : all_job_states) {
    if (auto n = states.opt_int64(to_string(s))) r.states[s] = *n;
  }
  r.in_flight = f.int64("in_flight");
  r.rate_per_second = f.number("rate_per_second");
  r.send_rate_per_second = f.number("send_rate_per_second");
  r.configured_rate_per_second = f.number("configured_rate_per_second");
  r.throttled_share = f.number("throttled_share");
  JsonFields quota = f.object("quota");
  r.quota = {quota.boolean("holding"), quota.int64("window_ms"), quota.int64("calls")};
  r.paused = f.boolean("paused");
  r.stopping = f.boolean("stopping");
  r.oldest_queued_ms = f.opt_int64("oldest_queued_ms");
  r.store = store_of(f.object("store"));
  if (auto b = f.opt_object("blocked")) {
    r.blocked = StatsView::Blocked{b->string("reason"), b->string("cause"), b->int64("for_ms")};
  }
  r.paused_batches = f.objects("paused_batches", paused_batch_of);
}

}  // namespace

json::object to_json(const StatsView& r) {
  json::object states;
  std::int64_t total = 0;
  for (const auto& [state, n] : r.states) {
    states[to_string(state)] = n;
    total += n;
  }
  json::value blocked = nullptr;
  if (r.blocked) {
    blocked = json::object{
        {"reason", r.blocked->reason}, {"cause", r.blocked->cause}, {"for_ms", r.blocked->for_ms}};
  }
  return json::object{{"states", std::move(states)},
                      {"total", total},
                      {"in_flight", r.in_flight},
                      {"rate_per_second", number(r.rate_per_second)},
                      {"send_rate_per_second", number(r.send_rate_per_second)},
                      {"configured_rate_per_second", number(r.configured_rate_per_second)},
                      {"throttled_share", number(r.throttled_share)},
                      {"quota", json::object{{"holding", r.quota.holding},
                                             {"window_ms", r.quota.window_ms},
                                             {"calls", r.quota.calls}}},
                      {"paused", r.paused},
                      {"stopping", r.stopping},
                      {"oldest_queued_ms", or_null(r.oldest_queued_ms)},
                      {"store", store_json(r.store)},
                      {"blocked", std::move(blocked)},
                      {"paused_batches", paused_batches_json(r.paused_batches)}};
}

json::object to_json(const StatsReply& r) {
  json::object reply = to_json(r.view);
  reply["now_ms"] = r.now_ms;
  reply["max_id"] = r.max_id;
  reply["min_unfinished_id"] = or_null(r.min_unfinished_id);
  if (r.batch) reply["batch"] = batch_to_json(*r.batch);
  if (r.waiting) reply["waiting"] = *r.waiting;
  return reply;
}

template <>
Result<StatsView> parse_reply(const json::value& v) {
  return read_reply<StatsView>(v, read_view);
}

template <>
Result<StatsReply> parse_reply(const json::value& v) {
  return read_reply<StatsReply>(v, [](const JsonFields& f, StatsReply& r) {
    read_view(f, r.view);
    r.now_ms = f.int64("now_ms");
    r.max_id = f.int64("max_id");
    r.min_unfinished_id = f.opt_int64("min_unfinished_id");
    if (auto b = f.opt_object("batch")) r.batch = batch_from_json(*b);
    r.waiting = f.opt_boolean("waiting");
  });
}

}  // namespace kpsd
