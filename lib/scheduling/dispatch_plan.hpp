#pragma once
// The dispatch loop's arithmetic as plain code (no I/O, no clock): which slots are taken, how
// many calls one claim asks for (with a rate token now, and ahead of their tokens), and which
// of the claimed calls start now. The scheduler's coroutine shell does what these say; the
// unit tests drive them with the real RateLimiter and CallGate on a virtual clock.
//
// A slot is taken by a call in flight, an outcome not yet committed, a call claimed ahead of
// its rate token, and a claim in progress: it frees only once the call's outcome is committed,
// so jobs `running` in the database never exceed queue.concurrency, and neither do the calls a
// crash can repeat.
#include <cstddef>

namespace kpsd {

struct SlotCount {
  std::size_t in_flight = 0;         // calls and polls started, not yet ended
  std::size_t outcomes_waiting = 0;  // ended, outcome not yet committed
  std::size_t claimed_ahead = 0;     // claimed, waiting for their rate token
  std::size_t reserved = 0;          // a claim in progress may fill these
  std::size_t busy() const noexcept {
    return in_flight + outcomes_waiting + claimed_ahead + reserved;
  }
};

// Slots free under `concurrency` (0 when busy reaches it, as after a SIGHUP lowered it).
std::size_t free_slots(const SlotCount& slots, std::size_t concurrency) noexcept;

// Free slots worth a claim transaction while calls are in flight: an eighth of concurrency (at
// least 1). One transaction (one fsync) then claims many jobs.
std::size_t claim_batch(std::size_t concurrency) noexcept;

// Whether the loop should wait for more free slots before claiming (calls are in flight and
// fewer than claim_batch slots are free). Never while probing: a probe needs one slot.
bool wait_for_slots(const SlotCount& slots, std::size_t concurrency, bool probing) noexcept;

// How many calls one claim asks for: `now` with the rate tokens taken (at most the free slots,
// 1 while probing), and `ahead`: the next 100 ms of calls at `pace` (calls/s; 0 = unpaced),
// claimed in the same transaction to wait for their tokens. Nothing ahead while probing, while
// the rate controller holds, or when no token was taken.
struct ClaimSize {
  std::size_t now = 0;
  std::size_t ahead = 0;
  std::size_t total() const noexcept { return now + ahead; }
};
ClaimSize claim_size(std::size_t free, std::size_t tokens, double pace, bool probing,
                     bool limiter_holding) noexcept;

// Of what one claim returned (polls first, then deliveries), how many start now with the
// claim's tokens: polls before deliveries. The rest wait for their tokens (polls first again).
// `held`: the gate closed while the claim ran (a 401, a TLS failure): nothing starts.
struct Placement {
  std::size_t polls_now = 0, deliveries_now = 0;
  std::size_t started() const noexcept { return polls_now + deliveries_now; }
};
Placement place_claimed(const ClaimSize& size, std::size_t polls, std::size_t deliveries,
                        bool held) noexcept;

// The claim an outcome commit makes for the slots its outcomes free (unpaced flow only): the
// free slots once `outcomes` of the busy ones are committed, or 0 when fewer than claim_batch.
std::size_t commit_claim_slots(const SlotCount& slots, std::size_t outcomes,
                               std::size_t concurrency) noexcept;

}  // namespace kpsd
