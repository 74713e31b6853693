#include "rate_limiter.hpp"

#include <algorithm>

namespace kpsd {

namespace {
double seconds(RateLimiter::Clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

RateLimiter::RateLimiter(double configured_rate, Clock::time_point now, Tuning tuning)
    : tuning_(tuning),
      configured_(configured_rate),
      rate_(configured_rate),
      ceiling_(configured_rate),
      tokens_(std::max(1.0, configured_rate)),
      last_refill_(now),
      last_change_(now),
      last_decrease_(now),
      window_start_(now) {}

void RateLimiter::set_rate(double rate) {
  rate_ = rate;
  if (rate_ > 0) tokens_ = std::min(tokens_, std::max(1.0, rate_));
}

void RateLimiter::refill(Clock::time_point now) {
  if (now <= last_refill_) return;
  if (rate_ > 0) {
    tokens_ = std::min(std::max(1.0, rate_), tokens_ + seconds(now - last_refill_) * rate_);
  }
  last_refill_ = now;
}

void RateLimiter::recover(Clock::time_point now) {
  if (!decreased_) return;
  while (now - last_change_ >= tuning_.quiet_period) {
    refill(last_change_ + tuning_.quiet_period);  // tokens earned at the old rate
    last_change_ += tuning_.quiet_period;
    double next = rate_ + std::max(ceiling_ * tuning_.step_fraction, tuning_.min_rate);
    if (next >= ceiling_) {
      decreased_ = false;
      set_rate(configured_);  // back to the configuration (0 = unlimited again)
      return;
    }
    set_rate(next);
  }
}

double RateLimiter::observed_rate(Clock::time_point now) const {
  // Calls started in the current window, spread over at least one second: a burst of 75 calls
  // 40 ms ago is "75 calls in the last second", not 1,875 per second.
  double elapsed = std::max(1.0, seconds(now - window_start_));
  return std::max(window_count_ / elapsed, previous_window_rate_);
}

bool RateLimiter::try_acquire(Clock::time_point now) {
  recover(now);
  if (rate_ <= 0) {
    if (now - window_start_ >= std::chrono::seconds(1)) {
      previous_window_rate_ = window_count_ / seconds(now - window_start_);
      window_start_ = now;
      window_count_ = 0;
    }
    window_count_ += 1;
    return true;
  }
  refill(now);
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

void RateLimiter::give_back(std::size_t tokens) {
  if (rate_ <= 0) {
    window_count_ = std::max(0.0, window_count_ - static_cast<double>(tokens));
    return;
  }
  tokens_ = std::min(std::max(1.0, rate_), tokens_ + static_cast<double>(tokens));
}

RateLimiter::Clock::duration RateLimiter::time_until_available(Clock::time_point now) {
  recover(now);
  if (rate_ <= 0) return Clock::duration::zero();
  refill(now);
  if (tokens_ >= 1.0) return Clock::duration::zero();
  return std::chrono::ceil<Clock::duration>(std::chrono::duration<double>((1.0 - tokens_) / rate_));
}

bool RateLimiter::on_throttled(Clock::time_point now) {
  recover(now);
  if (decreased_ && now - last_decrease_ < tuning_.decrease_cooldown) return false;
  refill(now);
  if (rate_ <= 0) {
    // Unlimited until now: halve what it was actually doing, and come back to that.
    ceiling_ = std::max(observed_rate(now), 2 * tuning_.min_rate);
    set_rate(std::max(tuning_.min_rate, ceiling_ / 2));
    tokens_ = 0;  // the gateway just said "too many": do not burst right after
  } else {
    ceiling_ = configured_;
    set_rate(std::max(tuning_.min_rate, rate_ / 2));
  }
  decreased_ = true;
  last_decrease_ = now;
  last_change_ = now;
  return true;
}

}  // namespace kpsd
