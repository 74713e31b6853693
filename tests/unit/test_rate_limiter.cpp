// The rate controller, alone and against simulated gateways (a virtual clock, no sockets).
#include "scheduling/rate_limiter.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <vector>

using namespace kpsd;
using namespace std::chrono_literals;

namespace {

using Clock = RateLimiter::Clock;
const Clock::time_point t0 = Clock::time_point{} + 1000s;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// nginx's limit_req with `burst=B nodelay`: a request is refused when the excess over the rate
// would pass the burst (ngx_http_limit_req_module's arithmetic, without its 1/1000 units).
struct LeakyBucket {
  double rate;
  double burst;
  double excess = 0;
  std::optional<Clock::time_point> last;
  bool admit(Clock::time_point now) {
    double e = 1;
    if (last) e = std::max(0.0, excess - rate * seconds(now - *last)) + 1;
    if (e > burst + 1) return false;
    excess = e;
    last = now;
    return true;
  }
};

// N calls per window of T, then 429 until the window turns. `phase` shifts the windows.
struct FixedWindow {
  std::int64_t quota;
  Clock::duration window;
  Clock::duration phase{};
  std::int64_t current = -1;
  std::int64_t used = 0;
  bool admit(Clock::time_point now) {
    std::int64_t w = (now - t0 + phase) / window;
    if (w != current) {
      current = w;
      used = 0;
    }
    if (used >= quota) return false;
    ++used;
    return true;
  }
};

struct RunResult {
  double seconds = 0;  // first call to last admitted answer
  std::int64_t calls = 0;
  std::int64_t throttled = 0;
  double max_calls_in_a_second = 0;
  double throttled_share() const { return static_cast<double>(throttled) / calls; }
};

// `jobs` jobs at `concurrency`, each answer `latency` after its call; a refused job is due
// again at once (as job_policy decides without Retry-After). Steps of 0.25 ms.
RunResult run(RateLimiter& limiter, const std::function<bool(Clock::time_point)>& gateway, int jobs,
              int concurrency, Clock::duration latency, Clock::duration limit = 600s) {
  struct InFlight {
    Clock::time_point sent, answer_at;
    bool admitted;
  };
  std::deque<InFlight> flying;  // answers come back in order: one latency for all
  RunResult r;
  int done = 0;
  int pending = jobs;
  std::deque<Clock::time_point> last_second;
  Clock::time_point now = t0, last_answer = t0;
  while (done < jobs && now - t0 < limit) {
    while (!flying.empty() && flying.front().answer_at <= now) {
      InFlight f = flying.front();
      flying.pop_front();
      limiter.on_answer(
          f.sent, now, f.admitted ? RateLimiter::Answer::admitted : RateLimiter::Answer::throttled);
      if (f.admitted) {
        ++done;
        last_answer = now;
      } else {
        ++r.throttled;
        ++pending;
      }
    }
    while (pending > 0 && static_cast<int>(flying.size()) < concurrency &&
           limiter.try_acquire(now)) {
      --pending;
      ++r.calls;
      flying.push_back({now, now + latency, gateway(now)});
      last_second.push_back(now);
    }
    while (!last_second.empty() && now - last_second.front() >= 1s) last_second.pop_front();
    r.max_calls_in_a_second =
        std::max(r.max_calls_in_a_second, static_cast<double>(last_second.size()));
    now += 250us;
  }
  r.seconds = seconds(last_answer - t0);
  MESSAGE(jobs << " jobs: " << r.seconds << " s, " << jobs / r.seconds << " jobs/s, " << r.calls
               << " calls, " << r.throttled << " throttled (" << 100 * r.throttled_share()
               << " %), rate at the end " << limiter.rate(now) << "/s");
  return r;
}

}  // namespace

TEST_CASE("rate limiter: a ceiling paces calls with a small burst and is never exceeded") {
  RateLimiter r(40, t0);
  CHECK(r.try_acquire(t0));  // a bucket of one token (25 ms of 40/s)
  CHECK_FALSE(r.try_acquire(t0));
  CHECK(r.time_until_available(t0) == 25ms);
  CHECK_FALSE(r.try_acquire(t0 + 24ms));
  CHECK(r.try_acquire(t0 + 25ms));
  r.give_back(1);
  CHECK(r.try_acquire(t0 + 25ms));
  CHECK_FALSE(r.try_acquire(t0 + 25ms));
  // A long pause banks no burst beyond the bucket.
  int burst = 0;
  while (r.try_acquire(t0 + 100s)) ++burst;
  CHECK(burst == 1);
  RateLimiter fast(2000, t0);
  burst = 0;
  while (fast.try_acquire(t0 + 100s)) ++burst;
  CHECK(burst == 50);  // 25 ms of 2,000/s
  RateLimiter unlimited(0, t0);
  for (int i = 0; i < 1000; ++i) CHECK(unlimited.try_acquire(t0));
  CHECK(unlimited.time_until_available(t0) == Clock::duration::zero());
  CHECK(unlimited.rate(t0) == 0);
}

TEST_CASE("rate limiter: one cut per congestion episode however many 429s were in flight") {
  RateLimiter r(100, t0);
  std::vector<Clock::time_point> sent;
  for (int i = 0; i < 100; ++i) {
    auto t = t0 + std::chrono::milliseconds(10 * i);
    REQUIRE(r.try_acquire(t));
    sent.push_back(t);
  }
  auto now = t0 + 1s;
  r.on_answer(sent[0], now, RateLimiter::Answer::admitted);
  CHECK(r.on_answer(sent[90], now, RateLimiter::Answer::throttled) == RateLimiter::Change::cut);
  double after_cut = r.rate(now);
  // 0.8 x what it sent in the last second (90 calls in the 100 ms ticks still counted).
  CHECK(after_cut == doctest::Approx(0.8 * 90).epsilon(0.02));
  // The other 9 calls sent before the cut come back 429 too: the same episode.
  for (int i = 91; i < 100; ++i) {
    CHECK(r.on_answer(sent[i], now + 1ms, RateLimiter::Answer::throttled) ==
          RateLimiter::Change::none);
  }
  CHECK(r.rate(now + 1ms) == doctest::Approx(after_cut).epsilon(0.01));
  // A call sent after the cut is admitted, a later one refused: a new episode, a new cut.
  REQUIRE(r.try_acquire(now + 100ms));
  r.on_answer(now + 100ms, now + 110ms, RateLimiter::Answer::admitted);
  REQUIRE(r.try_acquire(now + 120ms));
  CHECK(r.on_answer(now + 120ms, now + 130ms, RateLimiter::Answer::throttled) ==
        RateLimiter::Change::cut);
  CHECK(r.rate(now + 130ms) < after_cut);
  CHECK(r.throttled_share(now + 130ms) == doctest::Approx(11.0 / 13));
  CHECK(r.throttled_share(now + 120s) == 0);  // a minute later it is forgotten
}

TEST_CASE("rate limiter: after a cut the rate climbs back within seconds and then probes above") {
  RateLimiter r(0, t0);
  for (int i = 0; i < 100; ++i) REQUIRE(r.try_acquire(t0 + std::chrono::milliseconds(10 * i)));
  auto cut_at = t0 + 1s;
  REQUIRE(r.on_answer(t0 + 990ms, cut_at, RateLimiter::Answer::throttled) ==
          RateLimiter::Change::cut);
  CHECK(r.rate(cut_at) == doctest::Approx(72).epsilon(0.02));  // 0.8 x 90/s
  CHECK(r.rate(cut_at + 1s) > 83);                             // most of the way back in 1 s
  CHECK(r.rate(cut_at + 3s) > 90);    // probing above the rate that was cut
  CHECK(r.rate(cut_at + 12s) > 150);  // and faster the longer no 429 comes
  CHECK(r.ceiling() == 0);
  RateLimiter capped(90, t0);
  for (int i = 0; i < 80; ++i) REQUIRE(capped.try_acquire(t0 + std::chrono::milliseconds(12 * i)));
  capped.on_answer(t0 + 990ms, cut_at, RateLimiter::Answer::throttled);
  CHECK(capped.rate(cut_at + 60s) == 90);  // the ceiling stands
}

TEST_CASE("rate limiter: Retry-After holds every call until then and one probe goes first") {
  RateLimiter r(0, t0);
  REQUIRE(r.try_acquire(t0));
  CHECK(r.on_answer(t0, t0 + 10ms, RateLimiter::Answer::throttled, 2s) ==
        RateLimiter::Change::holding);
  CHECK(r.holding());
  CHECK_FALSE(r.try_acquire(t0 + 1s));
  CHECK(r.time_until_available(t0 + 1s) == 1010ms);
  CHECK(r.try_acquire(t0 + 2010ms));  // the probe
  CHECK_FALSE(r.try_acquire(t0 + 2010ms));
  CHECK(r.on_answer(t0 + 2010ms, t0 + 2020ms, RateLimiter::Answer::admitted) ==
        RateLimiter::Change::resumed);
  CHECK_FALSE(r.holding());
  CHECK(r.try_acquire(t0 + 2020ms));
}

TEST_CASE("rate limiter: a probe that gets no answer is sent again later") {
  RateLimiter r(0, t0);
  REQUIRE(r.try_acquire(t0));
  r.on_answer(t0, t0 + 1ms, RateLimiter::Answer::throttled, 1s);
  REQUIRE(r.try_acquire(t0 + 1001ms));
  r.on_answer(t0 + 1001ms, t0 + 1200ms, RateLimiter::Answer::none);
  CHECK(r.holding());
  CHECK_FALSE(r.try_acquire(t0 + 1201ms));
  CHECK(r.try_acquire(t0 + 1300ms));  // first_probe (100 ms) later
}

TEST_CASE("rate limiter: a probe not sent after all frees the hold's probe at once") {
  RateLimiter r(0, t0);
  REQUIRE(r.try_acquire(t0));        // a call from before the hold
  REQUIRE(r.try_acquire(t0 + 1ms));  // another, unsent later: nothing to give back in a hold
  r.on_answer(t0, t0 + 10ms, RateLimiter::Answer::throttled, 1s);
  REQUIRE(r.try_acquire(t0 + 1010ms));  // the probe ...
  r.unsent(t0 + 1ms);                   // (the older call: the probe stays out)
  CHECK_FALSE(r.try_acquire(t0 + 1020ms));
  r.unsent(t0 + 1010ms);  // ... went to a job whose look sent nothing
  CHECK(r.holding());
  CHECK(r.try_acquire(t0 + 1020ms));  // the next probe, now: not after the 2-minute timeout
  r.unsent(t0 + 1010ms);              // told twice: the new probe is still out
  CHECK_FALSE(r.try_acquire(t0 + 1030ms));
  CHECK(r.on_answer(t0 + 1020ms, t0 + 1040ms, RateLimiter::Answer::admitted) ==
        RateLimiter::Change::resumed);
  // While calls flow at a ceiling, an unsent call's token goes back to the bucket.
  RateLimiter paced(40, t0);
  REQUIRE(paced.try_acquire(t0));
  CHECK_FALSE(paced.try_acquire(t0));
  paced.unsent(t0);
  CHECK(paced.try_acquire(t0));
}

TEST_CASE("rate limiter: finds a leaky-bucket gateway's limit without being told") {
  // nginx limit_req: 200/s, burst 20; 4,000 jobs at concurrency 64, answers after 2 or 50 ms.
  for (auto latency : {2ms, 50ms}) {
    CAPTURE(latency.count());
    RateLimiter r(0, t0);
    LeakyBucket gateway{200, 20, 0, std::nullopt};
    auto result = run(
        r, [&](Clock::time_point t) { return gateway.admit(t); }, 4000, 64, latency);
    CHECK(4000 / result.seconds >= 0.9 * 200);
    CHECK(result.throttled_share() <= 0.05);
    CHECK_FALSE(r.window());  // not mistaken for a quota window
  }
}

TEST_CASE("rate limiter: a leaky-bucket gateway told its rate exactly or twice over") {
  for (double told : {200.0, 400.0}) {
    CAPTURE(told);
    RateLimiter r(told, t0);
    LeakyBucket gateway{200, 20, 0, std::nullopt};
    auto result = run(
        r, [&](Clock::time_point t) { return gateway.admit(t); }, 4000, 64, 2ms);
    CHECK(4000 / result.seconds >= 0.9 * 200);
    CHECK(result.throttled_share() <= 0.05);
    CHECK(result.max_calls_in_a_second <= told + 1);
  }
}

TEST_CASE("rate limiter: a fixed quota window is recognised and waited for") {
  // 1,000 calls per 10 s, the window turning 3.7 s after the start.
  RateLimiter r(0, t0);
  FixedWindow gateway{1000, 10s, 6300ms, -1, 0};
  auto result = run(
      r, [&](Clock::time_point t) { return gateway.admit(t); }, 6000, 64, 2ms);
  // The admitted rate is 100/s; bursting at each turn finishes a little sooner than that.
  CHECK(6000 / result.seconds >= 0.9 * 100);
  CHECK(result.throttled_share() <= 0.05);
  REQUIRE(r.window());
  CHECK(seconds(*r.window()) == doctest::Approx(10).epsilon(0.05));
  CHECK(r.window_quota() == doctest::Approx(1000).epsilon(0.05));
}

TEST_CASE("rate limiter: a fixed window with a ceiling below its quota never waits") {
  RateLimiter r(90, t0);
  FixedWindow gateway{1000, 10s, 0s, -1, 0};
  auto result = run(
      r, [&](Clock::time_point t) { return gateway.admit(t); }, 2000, 64, 2ms);
  CHECK(result.throttled == 0);
  CHECK(2000 / result.seconds >= 0.95 * 90);
}

TEST_CASE("rate limiter: a lone 429 among many admitted answers cuts nothing") {
  RateLimiter r(0, t0);
  for (int i = 0; i < 500; ++i) {
    auto t = t0 + std::chrono::milliseconds(2 * i);
    REQUIRE(r.try_acquire(t));
    r.on_answer(t, t + 1ms, RateLimiter::Answer::admitted);
  }
  auto now = t0 + 1s;
  REQUIRE(r.try_acquire(now));
  CHECK(r.on_answer(now, now + 1ms, RateLimiter::Answer::throttled) == RateLimiter::Change::none);
  CHECK(r.rate(now + 1ms) == 0);  // still not paced
  // Many 429s in the same second are the gateway's limit.
  RateLimiter::Change last = RateLimiter::Change::none;
  for (int i = 0; i < 20 && last == RateLimiter::Change::none; ++i) {
    auto t = now + std::chrono::milliseconds(2 + i);
    REQUIRE(r.try_acquire(t));
    last = r.on_answer(t, t + 1ms, RateLimiter::Answer::throttled);
  }
  CHECK(last == RateLimiter::Change::cut);
  CHECK(r.rate(now + 30ms) > 0);
}
