#include "scheduling/dispatcher.hpp"

#include <algorithm>

namespace kpsd {

using Clock = RateLimiter::Clock;

std::chrono::milliseconds Dispatcher::capped(Clock::duration d) {
  return std::min<std::chrono::milliseconds>(idle_check,
                                             std::chrono::ceil<std::chrono::milliseconds>(d));
}

DispatchStep Dispatcher::next(const DispatchView& v, Clock::time_point now) {
  DispatchStep step;
  step.wait = idle_check;
  std::size_t ahead = v.ready_polls + v.ready_deliveries;
  if (v.stopping) {
    if (ahead > 0) step.release = "stopping";
    return step;
  }
  if (v.paused) {
    if (ahead > 0) step.release = "paused";
    return step;  // resume() wakes the loop
  }
  if (v.store_failing) {
    // Outcomes wait in memory until their commit goes through: claim nothing meanwhile, so no
    // more than `concurrency` of them ever wait. The flusher wakes the loop.
    return step;
  }
  bool probing = gate_.holding();
  if ((probing || limiter_.holding()) && ahead > 0) {
    step.release = "calls held";  // a 401, a block, a Retry-After or a quota window
    ahead = 0;
  }
  // Calls claimed ahead of their tokens go out as the pace allows, before any new claim.
  if (ahead > 0) return send_ready(v, now);
  if (wait_for_slots(v.slots, v.concurrency, probing)) {
    // Claim in batches: one transaction (one fsync) claims many jobs, and a call ending wakes
    // the loop, so the slots fill again within one call's time.
    return step;
  }
  if (probing && !gate_.may_probe(now)) {
    // A probe in flight wakes the loop when it ends; otherwise the probe's backoff runs out.
    if (!gate_.probe_in_flight()) step.wait = capped(gate_.until_probe(now));
    return step;
  }
  std::size_t free = free_slots(v.slots, v.concurrency);
  std::size_t room = probing ? std::min<std::size_t>(free, 1) : free;
  std::size_t tokens = 0;
  while (tokens < room && limiter_.try_acquire(now)) ++tokens;
  if (tokens == 0) {
    if (free > 0) step.wait = capped(limiter_.time_until_available(now));
    return step;
  }
  // Set before the probe starts: a coroutine may run to its end inside co_spawn.
  if (probing) gate_.probe_sent();
  step.kind = DispatchStep::Kind::claim;
  step.tokens = tokens;
  step.probe = probing;
  step.sent_at = now;
  // Paced: the next 100 ms of calls are claimed in the same transaction (one fsync for many
  // jobs, not one per token); they wait in the ready queues for their tokens.
  step.size = claim_size(free, tokens, limiter_.rate(now), probing, limiter_.holding());
  reserved_ += step.size.total();  // until claim_ended()
  loop_claim_left_ = step.size.total();
  return step;
}

DispatchStep Dispatcher::send_ready(const DispatchView& v, Clock::time_point now) {
  DispatchStep step;
  std::size_t ahead = v.ready_polls + v.ready_deliveries;
  // Polls first: they finish work already delivered (issue 18).
  while (step.send_polls + step.send_deliveries < ahead && limiter_.try_acquire(now)) {
    if (step.send_polls < v.ready_polls) {
      ++step.send_polls;
    } else {
      ++step.send_deliveries;
    }
  }
  if (step.send_polls + step.send_deliveries > 0) {
    step.kind = DispatchStep::Kind::send_ready;
    step.sent_at = now;
  } else {
    step.wait = capped(limiter_.time_until_available(now, ahead));
  }
  return step;
}

void Dispatcher::claimed(std::size_t calls) noexcept {
  calls = std::min(calls, loop_claim_left_);
  loop_claim_left_ -= calls;
  reserved_ -= calls;
}

bool Dispatcher::claim_ended(const DispatchStep& claim, std::size_t started,
                             std::size_t claimed_ahead) {
  reserved_ -= std::min(reserved_, loop_claim_left_);
  loop_claim_left_ = 0;
  limiter_.give_back(claim.tokens - std::min(started, claim.tokens));
  if (claim.probe && started == 0) gate_.probe_unsent();
  return started > 0 || claimed_ahead > 0;
}

Placement Dispatcher::place(const DispatchStep& claim, std::size_t polls,
                            std::size_t deliveries) const {
  return place_claimed(claim.size, polls, deliveries, !claim.probe && gate_.holding());
}

bool Dispatcher::hold_committed_claim(const DispatchView& v) const noexcept {
  return v.stopping || v.paused || gate_.holding();
}

std::size_t Dispatcher::commit_claim(const DispatchView& v, std::size_t outcomes,
                                     Clock::time_point now) {
  if (v.stopping || v.paused || v.store_failing || gate_.holding() || limiter_.holding() ||
      limiter_.rate(now) > 0)
    return 0;  // paced or held: the dispatch loop claims, at the pace
  std::size_t free = commit_claim_slots(v.slots, outcomes, v.concurrency);
  std::size_t tokens = 0;
  while (tokens < free && limiter_.try_acquire(now)) ++tokens;
  reserved_ += tokens;  // until commit_claim_ended()
  return tokens;
}

void Dispatcher::commit_claim_ended(std::size_t asked) noexcept {
  reserved_ -= std::min(reserved_, asked);
}

bool Dispatcher::gather_outcomes(const DispatchView& v, std::size_t waiting,
                                 Clock::time_point now) const {
  if (v.stopping || waiting >= claim_batch(v.concurrency)) return false;
  if (limiter_.rate(now) <= 0) return false;
  const SlotCount& s = v.slots;
  return 2 * (s.in_flight + s.outcomes_waiting + s.claimed_ahead) < v.concurrency;
}

}  // namespace kpsd
