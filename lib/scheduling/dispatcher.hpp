#pragma once
// One turn of the scheduler's dispatch loop as plain code: given the slots, the queues of calls
// claimed ahead and the flags, it asks the rate limiter and the call gate (both plain code with
// the clock passed in) and returns what the coroutine shell does next: sleep, send calls that
// waited for their rate tokens, or claim. No I/O and no clock of its own; the unit tests drive
// it on a virtual clock (tests/unit/test_dispatch_loop.cpp).
//
// Every token it takes is either used by the step it returns or given back by claim_ended()
// (or, for an outcome commit's claim, by the shell for what the commit did not claim).
#include "scheduling/call_gate.hpp"
#include "scheduling/dispatch_plan.hpp"
#include "scheduling/rate_limiter.hpp"

#include <chrono>
#include <cstddef>
#include <string_view>

namespace kpsd {

// What the shell knows at the start of a turn.
struct DispatchView {
  SlotCount slots;
  std::size_t concurrency = 0;
  std::size_t ready_polls = 0;       // claimed ahead, waiting for their rate tokens
  std::size_t ready_deliveries = 0;  // ... deliveries (polls go first)
  bool stopping = false;             // (or the database is malformed): nothing new starts
  bool paused = false;
  bool store_failing = false;  // outcomes cannot be committed: claim nothing
};

struct DispatchStep {
  enum class Kind {
    sleep,       // wait `wait` (a wake() ends it sooner)
    send_ready,  // start `send_polls` then `send_deliveries` from the fronts of the ready queues
    claim,       // claim `size` (polls first) with `tokens` taken; `probe`: one probe call
  };
  Kind kind = Kind::sleep;
  // Non-empty: first give back every call claimed ahead (unsent), for this reason.
  std::string_view release;
  std::chrono::milliseconds wait{0};
  std::size_t send_polls = 0, send_deliveries = 0;
  ClaimSize size;
  std::size_t tokens = 0;
  bool probe = false;
  RateLimiter::Clock::time_point sent_at{};  // the tokens' time: the calls' send time
};

class Dispatcher {
 public:
  // Longest sleep: rows inserted by other processes are noticed within this.
  static constexpr std::chrono::milliseconds idle_check{1000};

  Dispatcher(RateLimiter& limiter, CallGate& gate) noexcept : limiter_(limiter), gate_(gate) {}

  // The next step at `now` (the limiter's and the gate's clock: steady). Stopping, pausing, a
  // gate holding calls (a 401, a block) and a rate controller holding them (a Retry-After, a
  // quota window) release the calls claimed ahead, unsent; a failing store claims nothing.
  // Calls claimed ahead go out (polls first) before any new claim; a claim waits for
  // claim_batch free slots while calls are in flight; while the gate holds, one probe at a time.
  DispatchStep next(const DispatchView& view, RateLimiter::Clock::time_point now);

  // Slots reserved by claims in progress: a claim step's from next() to claim_ended(), an
  // outcome commit's from commit_claim() to commit_claim_ended(). The shell counts them in
  // DispatchView::slots, so a commit claiming while the loop's claim runs (or the other way
  // round) never sees them as free: jobs `running` never exceed concurrency.
  std::size_t reserved() const noexcept { return reserved_; }

  // `calls` that the running claim step returned now hold slots of their own (started, or
  // claimed ahead): they leave its reservation.
  void claimed(std::size_t calls) noexcept;

  // After a claim step (committed or not): `started` calls went out now. Ends its reservation
  // and gives back the tokens not used and, for a probe that found nothing to send, the probe.
  // Returns whether the loop goes on at once; false: nothing started and nothing waits ahead,
  // so it sleeps until the next due job (at most idle_check).
  bool claim_ended(const DispatchStep& claim, std::size_t started, std::size_t claimed_ahead);

  // Of what a claim step returned (`polls`, then `deliveries`), which start now with its
  // tokens (polls first); the rest wait claimed ahead for theirs. Nothing starts when the gate
  // closed while the claim ran (a 401, a TLS failure): the next turn gives it all back. A probe
  // goes all the same: it is the call the gate waits for.
  Placement place(const DispatchStep& claim, std::size_t polls, std::size_t deliveries) const;

  // Whether what an outcome commit claimed must go back unsent: kpsd is stopping, dispatch is
  // paused, or the gate holds calls (it closed while the commit ran).
  bool hold_committed_claim(const DispatchView& view) const noexcept;

  // The claim an outcome commit makes for the slots its `outcomes` free: tokens taken now for
  // that many calls (0: none). Only while calls flow unpaced and nothing holds them; paced, the
  // loop claims at the pace.
  std::size_t commit_claim(const DispatchView& view, std::size_t outcomes,
                           RateLimiter::Clock::time_point now);
  // The commit that claimed `asked` (commit_claim's result) ended: its reservation ends. Of
  // what it asked, the shell gives back the tokens for the calls it did not get.
  void commit_claim_ended(std::size_t asked) noexcept;

  // Whether a commit of `waiting` outcomes should wait a moment for more: only while calls are
  // paced (so they trickle in), never while stopping, and only when the slots they hold are not
  // needed.
  bool gather_outcomes(const DispatchView& view, std::size_t waiting,
                       RateLimiter::Clock::time_point now) const;

 private:
  static std::chrono::milliseconds capped(RateLimiter::Clock::duration d);
  DispatchStep send_ready(const DispatchView& view, RateLimiter::Clock::time_point now);

  RateLimiter& limiter_;
  CallGate& gate_;
  std::size_t reserved_ = 0;
  std::size_t loop_claim_left_ = 0;  // the loop claim's reservation its calls did not take yet
};

}  // namespace kpsd
