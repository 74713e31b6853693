#include "stats_json.hpp"

#include <boost/json.hpp>

#include <algorithm>

namespace kpsd {

namespace json = boost::json;

json::object stats_json(const std::map<JobState, std::int64_t>& counts,
                        std::optional<std::int64_t> oldest_queued_due,
                        const std::string& read_problem, const Scheduler::Stats& st,
                        std::int64_t now) {
  auto since = [now](std::int64_t at) { return std::max<std::int64_t>(0, now - at); };
  json::object states;
  std::int64_t total = 0;
  for (const auto& [state, n] : counts) {
    states[to_string(state)] = n;
    total += n;
  }
  json::object store{{"writable", st.store_writable}, {"outcomes_waiting", st.outcomes_waiting}};
  if (!st.store_writable) {
    store["problem"] = st.store_problem;
    store["down_ms"] = since(st.store_down_since_ms);
  }
  if (!read_problem.empty()) store["read_problem"] = read_problem;
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
      {"rate_per_second", st.rate_per_second},
      {"send_rate_per_second", st.send_rate_per_second},
      {"configured_rate_per_second", st.configured_rate_per_second},
      {"throttled_share", st.throttled_share},
      {"quota", json::object{{"holding", st.holding_for_quota},
                             {"window_ms", st.quota_window_ms},
                             {"calls", st.quota_calls}}},
      {"paused", st.paused},
      {"stopping", st.stopping},
      {"oldest_queued_ms",
       oldest_queued_due ? json::value(since(*oldest_queued_due)) : json::value(nullptr)},
      {"store", std::move(store)},
      {"blocked", std::move(blocked)}};
}

}  // namespace kpsd
