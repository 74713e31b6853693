#pragma once
// Token bucket shared by every outgoing call, with AIMD: it halves its rate when the API
// gateway throttles (429) and creeps back toward the configured rate after quiet periods.
// Time is passed in, so tests need no clock.
#include <chrono>
#include <cstddef>

namespace kpsd {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  struct Tuning {
    Clock::duration quiet_period = std::chrono::seconds(10);  // no 429 this long → step up
    double step_fraction = 0.1;  // each step adds this share of the ceiling
    double min_rate = 0.1;       // never slower than one call per 10 s
    Clock::duration decrease_cooldown = std::chrono::seconds(2);  // one halving per burst of 429s
  };

  // configured_rate 0 = unlimited (until the first 429). The bucket holds at most max(1, rate)
  // tokens: one second of burst.
  RateLimiter(double configured_rate, Clock::time_point now, Tuning tuning);
  RateLimiter(double configured_rate, Clock::time_point now)
      : RateLimiter(configured_rate, now, Tuning{}) {}

  bool try_acquire(Clock::time_point now);  // takes one token if there is one
  void give_back(std::size_t tokens);       // returns tokens taken but not used (capped)
  Clock::duration time_until_available(Clock::time_point now);  // 0 when one is there

  // A 429 arrived: halve the rate (at most once per decrease_cooldown). True if it changed.
  bool on_throttled(Clock::time_point now);

  double rate() const noexcept { return rate_; }  // current; 0 = unlimited
  double configured_rate() const noexcept { return configured_; }

 private:
  void refill(Clock::time_point now);
  void recover(Clock::time_point now);
  void set_rate(double rate);
  double observed_rate(Clock::time_point now) const;

  Tuning tuning_;
  double configured_;
  double rate_;
  double ceiling_;  // where recovery stops: configured, or what unlimited ran at before a 429
  double tokens_;
  Clock::time_point last_refill_;
  Clock::time_point last_change_;
  Clock::time_point last_decrease_;
  bool decreased_ = false;
  // Calls started in the current and previous one-second windows: what "unlimited" was doing.
  Clock::time_point window_start_;
  double window_count_ = 0;
  double previous_window_rate_ = 0;
};

}  // namespace kpsd
