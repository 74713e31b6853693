#include "core/backoff.hpp"

#include <algorithm>

namespace kpsd {

std::chrono::milliseconds Backoff::ceiling(int attempt) const noexcept {
  auto value = initial_;
  for (int i = 1; i < attempt && value < max_; ++i) value *= 2;  // no overflow: stops at max
  return std::min(value, max_);
}

std::chrono::milliseconds Backoff::delay(
    int attempt, double uniform01,
    std::optional<std::chrono::milliseconds> retry_after) const noexcept {
  double u = std::clamp(uniform01, 0.0, 1.0);
  auto jittered = std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(
      static_cast<double>(ceiling(attempt).count()) * u));
  if (retry_after && *retry_after > jittered) return *retry_after;
  return jittered;
}

}  // namespace kpsd
