#include "control/overview.hpp"

#include <boost/json.hpp>

#include <fmt/format.h>

#include <algorithm>
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

json::array paused_batches_json(const std::vector<Batch>& batches) {
  json::array out;
  for (const Batch& b : batches) {
    json::object o{{"id", b.id},
                   {"reason", b.paused ? to_string(*b.paused) : "operator"},
                   {"paused_at", b.paused_at}};
    o["name"] = b.name ? json::value(*b.name) : json::value(nullptr);
    o["detail"] = b.paused_detail ? json::value(*b.paused_detail) : json::value(nullptr);
    out.push_back(std::move(o));
  }
  return out;
}

// "batch 7 (night) paused: canary done: ...; " for the first paused batch, and how many more.
std::string paused_batches_text(const std::vector<Batch>& batches) {
  if (batches.empty()) return {};
  const Batch& b = batches.front();
  std::string why = b.paused_detail                   ? *b.paused_detail
                    : b.paused == PauseReason::canary ? std::string("canary running")
                                                      : std::string("by the operator");
  std::string more = batches.size() > 1
                         ? fmt::format(" (and {} more paused batches)", batches.size() - 1)
                         : std::string();
  return fmt::format("BATCH {}{} PAUSED: {}{}; ", b.id, b.name ? " (" + *b.name + ")" : "", why,
                     more);
}

}  // namespace

json::object stats_json(const Overview& o, std::int64_t now) {
  const Scheduler::Stats& st = o.scheduler;
  auto since = [now](std::int64_t at) { return std::max<std::int64_t>(0, now - at); };
  json::object states;
  std::int64_t total = 0;
  for (const auto& [state, n] : o.counts) {
    states[to_string(state)] = n;
    total += n;
  }
  json::object store{{"writable", st.store_writable}, {"outcomes_waiting", st.outcomes_waiting}};
  if (!st.store_writable) {
    store["problem"] = st.store_problem;
    store["down_ms"] = since(st.store_down_since_ms);
  }
  if (!o.read_problem.empty()) store["read_problem"] = o.read_problem;
  json::value blocked = nullptr;
  if (!st.blocked_reason.empty()) {
    blocked = json::object{{"reason", st.blocked_reason},
                           {"cause", st.blocked_cause},
                           {"for_ms", since(st.blocked_since_ms)}};
  }
  return json::object{
      {"states", std::move(states)},
      {"total", total},
      {"in_flight", st.in_flight},
      {"rate_per_second", number(st.rate_per_second)},
      {"send_rate_per_second", number(st.send_rate_per_second)},
      {"configured_rate_per_second", number(st.configured_rate_per_second)},
      {"throttled_share", number(st.throttled_share)},
      {"quota", json::object{{"holding", st.holding_for_quota},
                             {"window_ms", st.quota_window_ms},
                             {"calls", st.quota_calls}}},
      {"paused", st.paused},
      {"stopping", st.stopping},
      {"oldest_queued_ms",
       o.oldest_queued_due ? json::value(since(*o.oldest_queued_due)) : json::value(nullptr)},
      {"store", std::move(store)},
      {"blocked", std::move(blocked)},
      {"paused_batches", paused_batches_json(o.paused_batches)}};
}

Metrics::Gauges metrics_gauges(const Overview& o, std::int64_t now) {
  const Scheduler::Stats& st = o.scheduler;
  Metrics::Gauges g;
  g.jobs = o.counts;
  g.jobs_known = o.read_problem.empty();
  if (o.oldest_queued_due) {
    g.oldest_queued_age_s =
        static_cast<double>(std::max<std::int64_t>(0, now - *o.oldest_queued_due)) / 1000;
  }
  g.store_writable = st.store_writable;
  g.blocked = !st.blocked_reason.empty();
  g.blocked_cause = std::string(st.blocked_cause);
  g.send_rate_per_second = st.send_rate_per_second;
  g.outcomes_waiting = st.outcomes_waiting;
  g.in_flight = st.in_flight;
  g.rate_per_second = st.rate_per_second;
  g.configured_rate_per_second = st.configured_rate_per_second;
  g.throttled_share = st.throttled_share;
  g.holding_for_quota = st.holding_for_quota;
  g.paused = st.paused;
  for (const Batch& b : o.paused_batches) {
    ++g.batches_paused[std::string(to_string(b.paused.value_or(PauseReason::operator_asked)))];
  }
  return g;
}

std::string status_line(const Overview& o, bool stopping) {
  const Scheduler::Stats& st = o.scheduler;
  std::string counts = "job counts unavailable";
  if (o.read_problem.empty()) {
    auto n = [&o](JobState s) {
      auto it = o.counts.find(s);
      return it == o.counts.end() ? std::int64_t{0} : it->second;
    };
    counts = fmt::format(
        "queued {}, running {}, retrying {}, delivered {}, succeeded {}, failed {}, cancelled {}",
        n(JobState::queued), n(JobState::running), n(JobState::retrying), n(JobState::delivered),
        n(JobState::succeeded), n(JobState::failed), n(JobState::cancelled));
  }
  std::string prefix =
      !st.store_writable           ? fmt::format("STORE UNAVAILABLE ({}); {} outcomes waiting; ",
                                                 st.store_problem, st.outcomes_waiting)
      : !st.blocked_reason.empty() ? fmt::format("BLOCKED: {}; ", st.blocked_reason)
      : st.paused                  ? "PAUSED; "
      : stopping                   ? "stopping; "
                                   : "";
  return fmt::format("STATUS={}{}{}; {} in flight", prefix, paused_batches_text(o.paused_batches),
                     counts, st.in_flight);
}

}  // namespace kpsd
