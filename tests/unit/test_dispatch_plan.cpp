// The dispatch arithmetic and the Dispatcher's own bookkeeping, alone: slots, claim sizes,
// placement, reservations, tokens and the probe given back. The loop they drive is tested in
// test_dispatch_loop.cpp. No socket, no sleep.
#include "scheduling/call_gate.hpp"
#include "scheduling/dispatch_plan.hpp"
#include "scheduling/dispatcher.hpp"
#include "scheduling/rate_limiter.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <numeric>
#include <random>
#include <vector>

using namespace kpsd;
using namespace std::chrono_literals;
using Clock = RateLimiter::Clock;

TEST_CASE("slots: busy counts every stage and free never underflows") {
  SlotCount s{3, 2, 1, 4};
  CHECK(s.busy() == 10);
  CHECK(free_slots(s, 16) == 6);
  CHECK(free_slots(s, 8) == 0);  // a SIGHUP lowered concurrency below what is busy
  CHECK(claim_batch(64) == 8);
  CHECK(claim_batch(4) == 1);
  CHECK(wait_for_slots({60, 0, 0, 0}, 64, false));  // 4 free < 8: wait for more
  CHECK_FALSE(wait_for_slots({56, 0, 0, 0}, 64, false));
  CHECK_FALSE(wait_for_slots({60, 0, 0, 0}, 64, true));  // a probe needs one slot
  CHECK_FALSE(wait_for_slots({}, 64, false));            // nothing in flight: claim what is due
}

TEST_CASE("claim size: tokens now and 100 ms ahead when paced, one while probing") {
  CHECK(claim_size(64, 10, 0, false, false).total() == 10);  // unpaced: nothing ahead
  ClaimSize paced = claim_size(64, 1, 40, false, false);
  CHECK(paced.now == 1);
  CHECK(paced.ahead == 4);                                // 40/s x 100 ms
  CHECK(claim_size(3, 1, 400, false, false).ahead == 2);  // never past the free slots
  CHECK(claim_size(64, 1, 40, false, true).ahead == 0);   // the rate controller holds
  CHECK(claim_size(64, 0, 40, false, false).total() == 0);
  ClaimSize probe = claim_size(64, 5, 40, true, false);
  CHECK(probe.now == 1);
  CHECK(probe.ahead == 0);
}

TEST_CASE("claimed calls start polls first and nothing starts when the gate closed meanwhile") {
  ClaimSize size{3, 4};
  Placement p = place_claimed(size, 2, 5, false);
  CHECK(p.polls_now == 2);
  CHECK(p.deliveries_now == 1);
  p = place_claimed(size, 6, 1, false);
  CHECK(p.polls_now == 3);
  CHECK(p.deliveries_now == 0);
  CHECK(place_claimed(size, 2, 5, true).started() == 0);
}

TEST_CASE("an outcome commit claims only for a batch of freed slots") {
  CHECK(commit_claim_slots({0, 8, 0, 56}, 8, 64) == 8);
  CHECK(commit_claim_slots({0, 2, 0, 62}, 2, 64) == 0);  // 2 < claim_batch(64)
  CHECK(commit_claim_slots({0, 70, 0, 0}, 10, 64) == 0);
}

TEST_CASE("what an outcome commit claimed goes back while stopping, paused or held") {
  RateLimiter limiter(0, Clock::time_point{} + 1h);
  CallGate gate(false);
  Dispatcher d(limiter, gate);
  DispatchView v;
  CHECK_FALSE(d.hold_committed_claim(v));
  v.paused = true;
  CHECK(d.hold_committed_claim(v));
  v.paused = false;
  v.stopping = true;
  CHECK(d.hold_committed_claim(v));
  v.stopping = false;
  gate.on_refused(false, Clock::time_point{} + 1h, 0);
  CHECK(d.hold_committed_claim(v));
}

TEST_CASE("a claim's slots stay reserved while it runs: a commit claiming meanwhile sees them") {
  RateLimiter limiter(0, Clock::time_point{} + 1h);
  CallGate gate(false);
  Dispatcher d(limiter, gate);
  auto now = Clock::time_point{} + 1h;
  DispatchView v;
  v.concurrency = 64;
  DispatchStep step = d.next(v, now);  // the loop's claim: every free slot
  REQUIRE(step.kind == DispatchStep::Kind::claim);
  REQUIRE(step.size.total() == 64);
  CHECK(d.reserved() == 64);
  // Meanwhile 8 calls end and their commit would claim: no slot is free while the claim runs.
  v.slots = {0, 8, 0, d.reserved()};
  CHECK(d.commit_claim(v, 8, now) == 0);
  d.claimed(10);  // its polls: 10 slots now held by calls
  CHECK(d.reserved() == 54);
  CHECK(d.claim_ended(step, 10, 0));
  CHECK(d.reserved() == 0);  // the deliveries it did not find free their slots
  // A commit's own claim reserves its slots until it ends.
  v.slots = {0, 8, 0, 0};
  std::size_t asked = d.commit_claim(v, 8, now);
  CHECK(asked == 64);
  CHECK(d.reserved() == 64);
  d.commit_claim_ended(asked);
  CHECK(d.reserved() == 0);
}

TEST_CASE("claim_ended gives back unused tokens and an unsent probe") {
  RateLimiter limiter(0, Clock::time_point{} + 1h);
  CallGate gate;  // verifying: the first call is a probe
  Dispatcher d(limiter, gate);
  DispatchView v;
  v.concurrency = 8;
  DispatchStep step = d.next(v, Clock::time_point{} + 1h);
  REQUIRE(step.kind == DispatchStep::Kind::claim);
  CHECK(step.probe);
  CHECK(step.size.total() == 1);
  CHECK(gate.probe_in_flight());
  CHECK_FALSE(d.claim_ended(step, 0, 0));  // nothing due: sleep until the next due job
  CHECK_FALSE(gate.probe_in_flight());
  step = d.next(v, Clock::time_point{} + 1h);
  REQUIRE(step.kind == DispatchStep::Kind::claim);
  CHECK(d.claim_ended(step, 1, 0));
  CHECK(gate.probe_in_flight());
  // The probe is out: no second one until it ends, and the loop sleeps until woken (by the
  // probe's end), not a zero wait over and over.
  DispatchStep held = d.next(v, Clock::time_point{} + 1h);
  CHECK(held.kind == DispatchStep::Kind::sleep);
  CHECK(held.wait == Dispatcher::idle_check);
}
