#include "net/http_slots.hpp"

namespace kpsd {

std::optional<std::size_t> slot_to_evict(std::span<const SlotState> slots) {
  std::optional<std::size_t> oldest;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    if (slots[i].phase != SlotState::Phase::waiting) continue;
    if (!oldest || slots[i].since < slots[*oldest].since) oldest = i;
  }
  return oldest;
}

bool FullHouse::closed_one() {
  ++closed_;
  if (episode_) return false;
  episode_ = true;
  return true;
}

std::optional<std::uint64_t> FullHouse::in_use(std::size_t n) {
  if (!episode_ || n > low_water_) return std::nullopt;
  episode_ = false;
  std::uint64_t closed = closed_;
  closed_ = 0;
  return closed;
}

}  // namespace kpsd
