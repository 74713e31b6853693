#include "scheduling/dispatch_plan.hpp"

#include <algorithm>

namespace kpsd {

std::size_t free_slots(const SlotCount& slots, std::size_t concurrency) noexcept {
  return concurrency - std::min(slots.busy(), concurrency);
}

std::size_t claim_batch(std::size_t concurrency) noexcept {
  return std::max<std::size_t>(1, concurrency / 8);
}

bool wait_for_slots(const SlotCount& slots, std::size_t concurrency, bool probing) noexcept {
  return !probing && slots.busy() > 0 && free_slots(slots, concurrency) < claim_batch(concurrency);
}

ClaimSize claim_size(std::size_t free, std::size_t tokens, double pace, bool probing,
                     bool limiter_holding) noexcept {
  ClaimSize size;
  std::size_t room = probing ? std::min<std::size_t>(free, 1) : free;
  size.now = std::min(tokens, room);
  if (!probing && !limiter_holding && pace > 0 && size.now > 0) {
    size.ahead = std::min(room - size.now, static_cast<std::size_t>(pace * 0.1));
  }
  return size;
}

Placement place_claimed(const ClaimSize& size, std::size_t polls, std::size_t deliveries,
                        bool held) noexcept {
  Placement p;
  if (held) return p;
  p.polls_now = std::min(polls, size.now);
  p.deliveries_now = std::min(deliveries, size.now - p.polls_now);
  return p;
}

std::size_t commit_claim_slots(const SlotCount& slots, std::size_t outcomes,
                               std::size_t concurrency) noexcept {
  std::size_t busy = slots.busy();
  busy -= std::min(busy, outcomes);  // these free their slots when the commit succeeds
  std::size_t free = concurrency - std::min(busy, concurrency);
  return free < claim_batch(concurrency) ? 0 : free;
}

}  // namespace kpsd
