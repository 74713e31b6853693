#include "core/clock.hpp"

#include <cstdlib>

namespace kpsd {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

struct Anchor {
  std::int64_t wall_ms;
  std::chrono::steady_clock::time_point steady;
};

std::int64_t wall_now_ms() {
  return duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

const Anchor& anchor() {
  // A function-local static: initialised once, thread-safe (C++11 and later).
  static const Anchor a{wall_now_ms(), std::chrono::steady_clock::now()};
  return a;
}

}  // namespace

std::int64_t unix_ms() {
  const Anchor& a = anchor();
  return a.wall_ms +
         duration_cast<milliseconds>(std::chrono::steady_clock::now() - a.steady).count();
}

std::int64_t wall_clock_step_ms() {
  std::int64_t kpsd_now = unix_ms();
  return wall_now_ms() - kpsd_now;
}

bool ClockStepReport::should_report(std::int64_t step_ms) {
  if (std::llabs(step_ms - reported_ms_) < threshold_ms_) return false;
  reported_ms_ = step_ms;
  return true;
}

std::optional<std::chrono::system_clock::time_point> utc_time_point(std::tm tm) {
  if (tm.tm_year < 70 || tm.tm_year > 299) return std::nullopt;
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

}  // namespace kpsd
