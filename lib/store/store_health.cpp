#include "store/store_health.hpp"

#include <algorithm>

namespace kpsd {

StoreHealth::Change StoreHealth::failed(Writer writer, std::string problem, std::int64_t now_ms) {
  bool was_writable = writable();
  (writer == Writer::claim ? claim_failing_ : outcomes_failing_) = true;
  ++consecutive_failures_;
  problem_ = std::move(problem);
  if (!was_writable) return Change::none;
  down_since_ = now_ms;
  ++outages_;
  return Change::went_down;
}

StoreHealth::Change StoreHealth::succeeded(Writer writer, std::int64_t now_ms) {
  if (writable()) return Change::none;
  (writer == Writer::claim ? claim_failing_ : outcomes_failing_) = false;
  if (!writable()) return Change::none;  // the other writer still fails
  consecutive_failures_ = 0;
  problem_.clear();
  last_outage_ms_ = now_ms - down_since_;
  return Change::recovered;
}

std::chrono::milliseconds StoreHealth::retry_delay() const noexcept {
  int doublings = std::clamp(consecutive_failures_ - 1, 0, 5);
  return std::min(std::chrono::milliseconds(100) * (1 << doublings),
                  std::chrono::milliseconds(2000));
}

bool is_malformed_database(int sqlite_code) noexcept {
  int primary = sqlite_code & 0xff;
  return primary == 11 /* SQLITE_CORRUPT */ || primary == 26 /* SQLITE_NOTADB */;
}

}  // namespace kpsd

namespace kpsd {

bool is_lock_conflict(int sqlite_code) noexcept {
  int primary = sqlite_code & 0xff;
  return primary == 5 /* SQLITE_BUSY */ || primary == 6 /* SQLITE_LOCKED */;
}

}  // namespace kpsd
