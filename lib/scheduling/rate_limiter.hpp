#pragma once
// The rate controller shared by every outgoing call: a token bucket whose rate it finds by
// itself from the API gateway's answers. Time is passed in, so tests need no clock.
//
// - No limit found yet: calls go as fast as concurrency allows (or at the ceiling,
//   queue.rate_per_second, when one is set; it is never exceeded).
// - A 429 starts a congestion episode: the rate is cut once, to `cut` times the rate calls were
//   going at. 429s for calls sent before that cut are the same episode and cut nothing more.
// - After a cut the rate climbs back toward the rate that was cut (fast at first, within about
//   `recover_time`), then probes above it, slowly at first and faster the longer no 429 comes,
//   so a gateway that admits more is found again.
// - A quota window (N calls per T, then 429 to everything until the window turns): a 429 for a
//   call sent after the cut, with no call admitted since, is not congestion. The controller
//   holds: nothing is sent but one probe at a time, spaced out, until one is admitted (the
//   window turned), and then the rate from before the wall applies again. After two turns it
//   knows the window's length and how many calls it admits: it stops by itself when that many
//   have gone out and probes again just as the next window is due.
// - A Retry-After on a 429 holds everything until then.
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace kpsd {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  struct Tuning {
    double min_rate = 0.1;                                   // never slower than one call per 10 s
    double cut = 0.8;                                        // a congestion episode: rate x this
    Clock::duration recover_time = std::chrono::seconds(1);  // time constant of the climb back
    double probe_growth = 0.05;  // above the cut rate: + this share of it per second, growing
    Clock::duration burst = std::chrono::milliseconds(25);  // the bucket holds this much (>= 1)
    Clock::duration first_probe = std::chrono::milliseconds(100);  // quota wall: first probe
    Clock::duration max_probe_gap = std::chrono::seconds(15);      // and the longest gap
    Clock::duration probe_timeout = std::chrono::minutes(2);       // a probe's answer is lost
    // A 429 cuts only when 429s are at least this share of the last second's answers: a lone
    // 429 among hundreds of admitted calls is not the gateway's limit (and cutting for each
    // would drive the rate down step by step).
    double cut_share = 0.02;
  };

  // ceiling: calls per second never exceeded; 0 = none.
  RateLimiter(double ceiling, Clock::time_point now, Tuning tuning);
  RateLimiter(double ceiling, Clock::time_point now) : RateLimiter(ceiling, now, Tuning{}) {}

  bool try_acquire(Clock::time_point now);  // takes one token (a call may start) if there is one
  void give_back(std::size_t tokens);       // tokens taken but not used
  // The call that took its token at `sent_at` was not sent after all (a look decided without
  // it): a held probe's token frees the probe (or the hold would wait for an answer that never
  // comes, up to probe_timeout); a token taken while calls flow goes back to the bucket; one
  // taken before a hold that still runs is simply dropped. Safe to call for any call once.
  void unsent(Clock::time_point sent_at);
  Clock::duration time_until_available(Clock::time_point now);  // 0 when one is there
  // Until `tokens` are there (at most what the bucket holds): waking once for several calls
  // costs a fraction of waking for each.
  Clock::duration time_until_available(Clock::time_point now, std::size_t tokens);

  enum class Answer {
    admitted,   // any HTTP answer but 429: the gateway let it through
    throttled,  // 429
    none,       // no answer (connection error, timeout): says nothing about the gateway
  };
  enum class Change { none, cut, holding, resumed };
  // The answer to a call that took its token at `sent_at`.
  Change on_answer(Clock::time_point sent_at, Clock::time_point now, Answer answer,
                   std::optional<Clock::duration> retry_after = std::nullopt);

  double rate(Clock::time_point now) const;  // calls per second now; 0 = not paced
  double ceiling() const noexcept { return ceiling_; }
  void set_ceiling(double ceiling) noexcept { ceiling_ = ceiling; }
  bool holding() const noexcept { return holding_; }
  // 429s among the answers of the last minute (0 when there were none).
  double throttled_share(Clock::time_point now) const;
  // The quota window, once two turns have been seen.
  std::optional<Clock::duration> window() const;
  std::int64_t window_quota() const noexcept { return window_quota_; }  // 0 = unknown
  double observed_send_rate(Clock::time_point now) const;  // calls sent in the last second

 private:
  enum class Hold { wall, quota, retry_after };
  double found_rate(Clock::time_point now) const;  // 0 = no limit found
  void refill(Clock::time_point now);
  void make_cut(Clock::time_point now);
  void enter_hold(Clock::time_point now, Hold kind, std::optional<Clock::duration> retry_after);
  void schedule_probe(Clock::time_point now, std::optional<Clock::duration> retry_after);
  void window_turned(Clock::time_point probe_sent);

  // Counts per second over the last minute: [second % 60].
  struct Minute {
    std::array<std::int64_t, 60> second{}, admitted{}, throttled{};  // [s % 60]
    void count(std::int64_t s, bool was_throttled);
  };

  Tuning tuning_;
  double ceiling_;
  Clock::time_point origin_;

  // Token bucket.
  double tokens_ = 1;
  Clock::time_point last_refill_;

  // The rate found: none until the first 429. After a cut, found_rate() climbs from `to` back
  // toward `from` and then probes above it.
  struct Cut {
    bool active = false;
    double from = 0, to = 0;
    Clock::time_point at{};
  };
  Cut cut_;
  Cut before_cut_;  // what the newest cut replaced (a quota wall undoes that cut)
  bool admitted_since_cut_ = false;

  // Calls sent per 100 ms over the last second (what "not paced" is doing).
  struct Tick {
    std::int64_t tick = -1;
    std::int64_t count = 0;
  };
  std::array<Tick, 10> sent_{};
  std::array<Tick, 10> admitted_recent_{}, throttled_recent_{};  // answers, per 100 ms
  static void add_to_tick(std::array<Tick, 10>& ticks, std::int64_t tick, std::int64_t n);
  static std::int64_t sum_of_ticks(const std::array<Tick, 10>& ticks, std::int64_t first,
                                   std::int64_t last);
  std::int64_t tick_of(Clock::time_point t) const;  // 100 ms ticks since construction
  double recent_throttled_share(Clock::time_point now) const;
  std::optional<Clock::time_point> first_sent_;
  Clock::time_point flowing_since_{};  // the end of the last hold
  void count_sent(Clock::time_point now, std::int64_t n);

  // Holding: nothing goes out but one probe at a time.
  bool holding_ = false;
  Hold hold_kind_ = Hold::wall;
  bool probe_out_ = false;
  Clock::time_point probe_sent_{};  // the probe out (its token's time)
  Clock::time_point hold_until_{};
  Clock::duration probe_gap_{};
  Clock::time_point last_refused_probe_{};  // sent time of the newest probe answered 429
  int refused_probes_ = 0;                  // in this hold
  Cut cut_at_hold_;                         // the state a false wall (congestion) goes back to

  // The window, learned from turns (midway between the last refused and the admitted probe).
  std::optional<Clock::time_point> last_turn_;
  Clock::duration turn_uncertainty_{};
  std::optional<Clock::duration> window_;
  std::int64_t sent_in_window_ = 0;
  std::int64_t admitted_in_window_ = 0;
  bool window_started_by_turn_ = false;
  std::int64_t window_quota_ = 0;

  Minute minute_;
};

}  // namespace kpsd
