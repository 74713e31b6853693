#include "control/overview.hpp"

#include <boost/json.hpp>

#include <fmt/format.h>

#include <algorithm>

namespace kpsd {

namespace json = boost::json;

namespace {

std::vector<PausedBatchView> paused_batches_view(const std::vector<Batch>& batches) {
  std::vector<PausedBatchView> out;
  for (const Batch& b : batches) {
    out.push_back({b.id, b.name, std::string(b.paused ? to_string(*b.paused) : "operator"),
                   b.paused_at, b.paused_detail});
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

StatsView stats_view(const Overview& o, std::int64_t now) {
  const Scheduler::Stats& st = o.scheduler;
  auto since = [now](std::int64_t at) { return std::max<std::int64_t>(0, now - at); };
  StatsView v;
  v.states = o.counts;
  v.in_flight = st.in_flight;
  v.rate_per_second = st.rate_per_second;
  v.send_rate_per_second = st.send_rate_per_second;
  v.configured_rate_per_second = st.configured_rate_per_second;
  v.throttled_share = st.throttled_share;
  v.quota = {st.holding_for_quota, st.quota_window_ms, st.quota_calls};
  v.paused = st.paused;
  v.stopping = st.stopping;
  if (o.oldest_queued_due) v.oldest_queued_ms = since(*o.oldest_queued_due);
  v.store.writable = st.store_writable;
  v.store.outcomes_waiting = st.outcomes_waiting;
  if (!st.store_writable) {
    v.store.problem = st.store_problem;
    v.store.down_ms = since(st.store_down_since_ms);
  }
  if (!o.read_problem.empty()) v.store.read_problem = o.read_problem;
  if (!st.blocked_reason.empty()) {
    v.blocked = StatsView::Blocked{st.blocked_reason, std::string(st.blocked_cause),
                                   since(st.blocked_since_ms)};
  }
  v.paused_batches = paused_batches_view(o.paused_batches);
  return v;
}

json::object stats_json(const Overview& o, std::int64_t now) { return to_json(stats_view(o, now)); }

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
