#pragma once
// The scheduler's log lines: a job's transition, and what a change of the rate controller or of
// the call gate means to the operator, each said once per episode (rate cuts once a minute at
// most). Plain code over spdlog; no state of the scheduler beyond what it is given. Log lines
// only, so no unit test: the e2e tests read them (rate cuts, quota window, blocked, resumed).
#include "model/job.hpp"
#include "scheduling/call_gate.hpp"
#include "scheduling/rate_limiter.hpp"

#include <cstdint>
#include <optional>
#include <string_view>

namespace kpsd {

// A job left a call or a poll in state `next`: `what` names it (server, task), `code` and `msg`
// say why, `delay_ms` is the wait before a retry.
void log_transition(std::int64_t job_id, std::string_view what, JobState next,
                    std::string_view code, std::string_view msg, std::int64_t delay_ms);

// What a gate change means: said once per episode. `was_reason`/`outage_ms`: the block that
// just cleared (for `resumed`).
void log_gate_change(CallGate::Change change, const CallGate& gate, std::string_view was_reason,
                     std::int64_t outage_ms);

// Says what a change of the rate controller means (RateLimiter::on_answer's result).
class RateReport {
 public:
  using Clock = RateLimiter::Clock;
  // `retry_after`: the hold the gateway asked for, if it did. Returns true when the dispatch
  // loop should be woken (the quota window turned).
  bool changed(RateLimiter::Change change, const RateLimiter& limiter, Clock::time_point now,
               std::optional<Clock::duration> retry_after);

 private:
  std::int64_t cuts_unreported_ = 0;
  Clock::time_point last_cut_report_{};
  bool hold_reported_ = false;
  bool window_reported_ = false;
};

}  // namespace kpsd
