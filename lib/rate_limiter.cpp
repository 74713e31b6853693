#include "rate_limiter.hpp"

#include <algorithm>

namespace kpsd {

RateLimiter::RateLimiter(double rate_per_second, Clock::time_point now)
    : rate_(rate_per_second), capacity_(std::max(1.0, rate_per_second)), tokens_(capacity_),
      last_(now) {}

void RateLimiter::refill(Clock::time_point now) {
  if (now <= last_) return;
  double seconds = std::chrono::duration<double>(now - last_).count();
  tokens_ = std::min(capacity_, tokens_ + seconds * rate_);
  last_ = now;
}

bool RateLimiter::try_acquire(Clock::time_point now) {
  if (rate_ <= 0) return true;
  refill(now);
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

void RateLimiter::give_back(std::size_t tokens) {
  if (rate_ <= 0) return;
  tokens_ = std::min(capacity_, tokens_ + static_cast<double>(tokens));
}

RateLimiter::Clock::duration RateLimiter::time_until_available(Clock::time_point now) const {
  if (rate_ <= 0) return Clock::duration::zero();
  double seconds = now > last_ ? std::chrono::duration<double>(now - last_).count() : 0.0;
  double tokens = std::min(capacity_, tokens_ + seconds * rate_);
  if (tokens >= 1.0) return Clock::duration::zero();
  return std::chrono::ceil<Clock::duration>(std::chrono::duration<double>((1.0 - tokens) / rate_));
}

}  // namespace kpsd
