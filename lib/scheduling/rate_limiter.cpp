#include "scheduling/rate_limiter.hpp"

#include <algorithm>
#include <cmath>

namespace kpsd {

namespace {

using Clock = RateLimiter::Clock;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

constexpr auto tick_length = std::chrono::milliseconds(100);

}  // namespace

RateLimiter::RateLimiter(double ceiling, Clock::time_point now, Tuning tuning)
    : tuning_(tuning), ceiling_(ceiling), origin_(now), last_refill_(now) {}

void RateLimiter::Minute::count(std::int64_t s, bool was_throttled) {
  auto i = static_cast<std::size_t>(s % 60);
  if (second[i] != s) {
    second[i] = s;
    admitted[i] = 0;
    throttled[i] = 0;
  }
  ++(was_throttled ? throttled[i] : admitted[i]);
}

double RateLimiter::throttled_share(Clock::time_point now) const {
  auto s = std::chrono::duration_cast<std::chrono::seconds>(now - origin_).count();
  std::int64_t admitted = 0, throttled = 0;
  for (std::size_t i = 0; i < 60; ++i) {
    if (minute_.second[i] <= s - 60 || minute_.second[i] > s) continue;
    admitted += minute_.admitted[i];
    throttled += minute_.throttled[i];
  }
  if (admitted + throttled == 0) return 0;
  return static_cast<double>(throttled) / static_cast<double>(admitted + throttled);
}

std::optional<Clock::duration> RateLimiter::window() const { return window_; }

void RateLimiter::add_to_tick(std::array<Tick, 10>& ticks, std::int64_t tick, std::int64_t n) {
  Tick& t = ticks[static_cast<std::size_t>(tick % 10)];
  if (t.tick != tick) t = {tick, 0};
  t.count = std::max<std::int64_t>(0, t.count + n);
}

std::int64_t RateLimiter::sum_of_ticks(const std::array<Tick, 10>& ticks, std::int64_t first,
                                       std::int64_t last) {
  std::int64_t n = 0;
  for (const Tick& t : ticks) {
    if (t.tick >= first && t.tick <= last) n += t.count;
  }
  return n;
}

std::int64_t RateLimiter::tick_of(Clock::time_point t) const { return (t - origin_) / tick_length; }

void RateLimiter::count_sent(Clock::time_point now, std::int64_t n) {
  if (!first_sent_) first_sent_ = now;
  add_to_tick(sent_, tick_of(now), n);
  sent_in_window_ = std::max<std::int64_t>(0, sent_in_window_ + n);
}

double RateLimiter::recent_throttled_share(Clock::time_point now) const {
  std::int64_t tick = tick_of(now);
  std::int64_t throttled = sum_of_ticks(throttled_recent_, tick - 9, tick);
  std::int64_t admitted = sum_of_ticks(admitted_recent_, tick - 9, tick);
  if (throttled + admitted == 0) return 0;
  return static_cast<double>(throttled) / static_cast<double>(throttled + admitted);
}

double RateLimiter::observed_send_rate(Clock::time_point now) const {
  if (!first_sent_) return 0;
  // Since calls last started flowing: a second that included a hold is not what they do.
  Clock::time_point since = std::max(*first_sent_, flowing_since_);
  std::int64_t tick = tick_of(now);
  std::int64_t sent = sum_of_ticks(sent_, std::max(tick - 9, tick_of(since)), tick);
  // Spread over at least 100 ms: 64 calls in the first millisecond are 640/s, not 64,000/s.
  double span = std::clamp(seconds(now - since), 0.1, 1.0);
  return static_cast<double>(sent) / span;
}

double RateLimiter::found_rate(Clock::time_point now) const {
  if (!cut_.active) return 0;
  double t = std::max(0.0, seconds(now - cut_.at));
  double tau = std::max(1e-3, seconds(tuning_.recover_time));
  // Back toward the rate that was cut, fast at first ...
  double r = cut_.from - (cut_.from - cut_.to) * std::exp(-t / tau);
  // ... then above it: slowly at first, faster the longer no 429 comes (doubles in ~10 s).
  double probing = t - 2 * tau;
  if (probing > 0) r += cut_.from * tuning_.probe_growth * probing * (1 + probing / 10);
  return std::max(tuning_.min_rate, r);
}

double RateLimiter::rate(Clock::time_point now) const {
  double found = found_rate(now);
  if (found > 0 && ceiling_ > 0) return std::min(found, ceiling_);
  return found > 0 ? found : ceiling_;
}

void RateLimiter::refill(Clock::time_point now) {
  double r = rate(now);
  if (now > last_refill_ && r > 0) {
    double capacity = std::max(1.0, r * seconds(tuning_.burst));
    tokens_ = std::min(capacity, tokens_ + seconds(now - last_refill_) * r);
  }
  last_refill_ = std::max(last_refill_, now);
}

bool RateLimiter::try_acquire(Clock::time_point now) {
  if (holding_) {
    // A probe whose answer never came (its call ended some other way) does not hold forever.
    if (probe_out_ && now - probe_sent_ > tuning_.probe_timeout) probe_out_ = false;
    if (probe_out_ || now < hold_until_) return false;
    probe_out_ = true;  // one probe; its answer decides
    probe_sent_ = now;
    count_sent(now, 1);
    return true;
  }
  if (window_ && window_quota_ > 0 && window_started_by_turn_ && sent_in_window_ >= window_quota_) {
    // This window's quota is used up: wait for the next one instead of collecting 429s.
    enter_hold(now, Hold::quota, std::nullopt);
    return false;
  }
  refill(now);
  if (rate(now) > 0) {
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
  }
  count_sent(now, 1);
  return true;
}

void RateLimiter::give_back(std::size_t tokens) {
  if (tokens == 0) return;
  auto n = static_cast<std::int64_t>(tokens);
  if (first_sent_) count_sent(last_refill_, -n);
  if (holding_) {
    probe_out_ = false;
    return;
  }
  tokens_ += static_cast<double>(tokens);  // capped at the next refill
}

void RateLimiter::unsent(Clock::time_point sent_at) {
  if (!holding_) {
    give_back(1);
    return;
  }
  if (!probe_out_ || sent_at < probe_sent_) return;  // not the probe: tokens are 0 in a hold
  probe_out_ = false;
  count_sent(last_refill_, -1);
}

Clock::duration RateLimiter::time_until_available(Clock::time_point now) {
  return time_until_available(now, 1);
}

Clock::duration RateLimiter::time_until_available(Clock::time_point now, std::size_t tokens) {
  if (holding_) {
    if (probe_out_) return std::chrono::seconds(1);  // its answer wakes the caller sooner
    return std::max(Clock::duration::zero(), hold_until_ - now);
  }
  double r = rate(now);
  if (r <= 0) return Clock::duration::zero();
  refill(now);
  double wanted = std::clamp(static_cast<double>(tokens), 1.0,
                             std::max(1.0, std::floor(r * seconds(tuning_.burst))));
  if (tokens_ >= wanted) return Clock::duration::zero();
  return std::chrono::ceil<Clock::duration>(std::chrono::duration<double>((wanted - tokens_) / r));
}

void RateLimiter::make_cut(Clock::time_point now) {
  double current = rate(now);
  double observed = observed_send_rate(now);
  // What calls were really going at: the pace, or less when concurrency held them back.
  double from = current > 0 ? (observed > 0 ? std::min(current, observed) : current) : observed;
  from = std::max(from, tuning_.min_rate);
  before_cut_ = cut_;
  cut_ = {true, from, std::max(tuning_.min_rate, from * tuning_.cut), now};
  admitted_since_cut_ = false;
  tokens_ = 0;  // the gateway just said "too many": no burst right after
  last_refill_ = now;
}

void RateLimiter::enter_hold(Clock::time_point now, Hold kind,
                             std::optional<Clock::duration> retry_after) {
  if (!holding_) {
    holding_ = true;
    hold_kind_ = kind;
    refused_probes_ = 0;
    probe_out_ = false;
    probe_gap_ = tuning_.first_probe;
  } else if (kind == Hold::retry_after) {
    hold_kind_ = kind;
  }
  schedule_probe(now, retry_after);
}

void RateLimiter::schedule_probe(Clock::time_point now,
                                 std::optional<Clock::duration> retry_after) {
  if (retry_after) {
    hold_until_ = std::max(hold_until_, now + *retry_after);
    return;
  }
  Clock::time_point next = now + probe_gap_;
  if (window_ && last_turn_) {
    // The next turn is due at last_turn + k x window, give or take `margin`: wait for that band,
    // then probe densely inside it (the gap growing from first_probe).
    auto margin = std::max(tuning_.first_probe, 2 * turn_uncertainty_);
    std::int64_t k = std::max<std::int64_t>(1, (now - margin - *last_turn_) / *window_ + 1);
    Clock::time_point due = *last_turn_ + k * *window_;
    if (now < due - margin) {
      next = std::min(due - margin, now + tuning_.max_probe_gap);
      probe_gap_ = tuning_.first_probe;
    }
  }
  hold_until_ = next;
}

void RateLimiter::window_turned(Clock::time_point probe_sent) {
  // The turn came between the last refused probe and this one.
  Clock::time_point turn = last_refused_probe_ + (probe_sent - last_refused_probe_) / 2;
  Clock::duration uncertainty = (probe_sent - last_refused_probe_) / 2;
  if (last_turn_) {
    Clock::duration length = turn - *last_turn_;
    if (!window_) {
      window_ = length;
    } else if (length > *window_ * 7 / 10 && length < *window_ * 13 / 10) {
      window_ = (*window_ + length) / 2;
    } else if (length >= *window_ * 13 / 10) {
      // A window or more passed unseen: keep the length, re-anchor on this turn.
    } else {
      window_ = length;  // shorter than thought
    }
  }
  if (window_started_by_turn_) window_quota_ = admitted_in_window_;
  last_turn_ = turn;
  turn_uncertainty_ = uncertainty;
  window_started_by_turn_ = true;
  sent_in_window_ = 1;  // the probe
  admitted_in_window_ = 0;
}

RateLimiter::Change RateLimiter::on_answer(Clock::time_point sent_at, Clock::time_point now,
                                           Answer answer,
                                           std::optional<Clock::duration> retry_after) {
  if (answer != Answer::none) {
    minute_.count(std::chrono::duration_cast<std::chrono::seconds>(now - origin_).count(),
                  answer == Answer::throttled);
    add_to_tick(answer == Answer::throttled ? throttled_recent_ : admitted_recent_, tick_of(now),
                1);
  }
  // Calls sent before the hold are still coming back: only the probe's answer ends it.
  bool probe = holding_ && probe_out_ && sent_at >= probe_sent_;
  if (answer == Answer::none) {
    if (probe) {
      probe_out_ = false;
      schedule_probe(now, std::nullopt);
    }
    return Change::none;
  }
  if (answer == Answer::admitted) {
    ++admitted_in_window_;
    if (cut_.active && sent_at >= cut_.at) admitted_since_cut_ = true;
    if (!probe) return Change::none;
    // A probe got through: the wall is gone.
    holding_ = false;
    probe_out_ = false;
    if (hold_kind_ == Hold::wall && refused_probes_ == 0 && !window_) {
      // Through at the first probe: it was congestion, not a quota window. Slow down again.
      cut_ = cut_at_hold_;
      make_cut(now);
      return Change::cut;
    }
    if (hold_kind_ == Hold::wall || (hold_kind_ == Hold::quota && refused_probes_ > 0)) {
      window_turned(sent_at);
    } else if (hold_kind_ == Hold::quota) {
      sent_in_window_ = 1;  // the turn was on time; the window's length stands
      admitted_in_window_ = 1;
    }
    tokens_ = 0;
    last_refill_ = now;
    flowing_since_ = sent_at;  // the probe was the first call of the new flow
    return Change::resumed;
  }

  // A 429.
  if (retry_after) {
    if (probe) probe_out_ = false;
    enter_hold(now, Hold::retry_after, retry_after);
    return Change::holding;
  }
  if (holding_) {
    if (probe) {
      probe_out_ = false;
      last_refused_probe_ = sent_at;
      ++refused_probes_;
      probe_gap_ = std::min(tuning_.max_probe_gap, probe_gap_ * 3 / 2);
      schedule_probe(now, std::nullopt);
    }
    return Change::none;
  }
  if (cut_.active && sent_at < cut_.at) return Change::none;  // same episode: already cut
  if (cut_.active && !admitted_since_cut_) {
    // Refused again after the cut, with nothing let through since: a quota wall, not
    // congestion. Undo that cut (the window, not the rate, was the limit) and hold.
    cut_at_hold_ = cut_;
    cut_ = before_cut_;
    last_refused_probe_ = sent_at;
    enter_hold(now, Hold::wall, std::nullopt);
    return Change::holding;
  }
  if (recent_throttled_share(now) < tuning_.cut_share) return Change::none;  // a lone 429
  make_cut(now);
  return Change::cut;
}

}  // namespace kpsd
