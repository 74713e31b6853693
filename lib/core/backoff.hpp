#pragma once
// Retry delay policy, without I/O: exponential with full jitter, capped, and never sooner than
// the server's Retry-After. The random draw is passed in so tests choose it.
#include <chrono>
#include <optional>

namespace kpsd {

class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
      : initial_(initial), max_(max) {}

  // Ceiling for retry number `attempt` (1 = the first retry): min(max, initial * 2^(attempt-1)).
  std::chrono::milliseconds ceiling(int attempt) const noexcept;

  // `uniform01` is a draw from [0, 1). Full jitter: uniform over [0, ceiling], then raised to
  // Retry-After when the server asked for longer.
  std::chrono::milliseconds delay(
      int attempt, double uniform01,
      std::optional<std::chrono::milliseconds> retry_after = {}) const noexcept;

 private:
  std::chrono::milliseconds initial_, max_;
};

}  // namespace kpsd
