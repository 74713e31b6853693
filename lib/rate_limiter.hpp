#pragma once
// Token bucket shared by every outgoing call. Time is passed in, so tests need no clock.
#include <chrono>
#include <cstddef>

namespace kpsd {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  // rate 0 = unlimited. The bucket holds at most max(1, rate) tokens: one second of burst.
  RateLimiter(double rate_per_second, Clock::time_point now);

  bool try_acquire(Clock::time_point now);               // takes one token if there is one
  void give_back(std::size_t tokens);  // returns tokens taken but not used (capped)
  Clock::duration time_until_available(Clock::time_point now) const;  // 0 when one is there
  double rate() const noexcept { return rate_; }

 private:
  void refill(Clock::time_point now);
  double rate_;
  double capacity_;
  double tokens_;
  Clock::time_point last_;
};

}  // namespace kpsd
