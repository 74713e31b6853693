#pragma once
// kpsd's time, as the database stores it: Unix milliseconds.
//
// It is the wall clock read once, when kpsd first asks, then advanced by the monotonic clock
// (CLOCK_MONOTONIC: NTP slews it but nothing steps it). Every due time, deadline, lease,
// backoff and poll timeout kpsd writes and compares is in it, so a wall-clock step (an NTP
// step, a VM resumed, an operator's `date -s`) neither freezes work (a step back) nor expires
// it (a step forward). For people it reads as Unix ms, off the wall clock by the steps since
// kpsd started (wall_clock_step_ms); a restart reads the wall clock again.
#include <chrono>
#include <cstdint>
#include <ctime>
#include <optional>

namespace kpsd {

// Now, in kpsd's time (Unix ms). Thread-safe; the first call anchors it.
std::int64_t unix_ms();

// How far the wall clock has stepped away from kpsd's time since the anchor (wall minus kpsd
// time, ms; positive: the wall clock jumped ahead). Slews of a few ms are noise.
std::int64_t wall_clock_step_ms();

// What to say about a step, once per new step: a step of at least `threshold_ms` that differs
// from the one last reported by that much too. Plain code, for the daemon's periodic check.
// A broken-down UTC time (timegm) as a time point, for years 1970 to 2199 only: the system
// clock counts nanoseconds in 64 bits, which overflow in 2262 (a fuzzer found a date in 2347).
// nullopt outside that range. For dates read from answers (Retry-After, IAM's expires_at).
std::optional<std::chrono::system_clock::time_point> utc_time_point(std::tm tm);

class ClockStepReport {
 public:
  explicit ClockStepReport(std::int64_t threshold_ms = 2000) : threshold_ms_(threshold_ms) {}
  // True when `step_ms` (wall_clock_step_ms) is new enough to be said.
  bool should_report(std::int64_t step_ms);

 private:
  std::int64_t threshold_ms_;
  std::int64_t reported_ms_ = 0;
};

}  // namespace kpsd
