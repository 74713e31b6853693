#include "model/job_endings.hpp"

namespace kpsd {

std::size_t JobEndings::index(JobState s) noexcept {
  for (std::size_t i = 0; i < final_states.size(); ++i)
    if (final_states[i] == s) return i;
  return final_states.size();
}

void JobEndings::committed(const Tally& ended, std::int64_t unix_ms) {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < ended.size(); ++i) {
    totals_[i] += ended[i];
    if (ended[i] > 0)
      history_.finished(final_states[i], unix_ms, static_cast<std::uint32_t>(ended[i]));
  }
}

JobEndings::Tally JobEndings::totals() const {
  std::lock_guard lock(mutex_);
  return totals_;
}

std::vector<MinuteHistory::Minute> JobEndings::last(std::int64_t now_unix_ms,
                                                    std::size_t span) const {
  std::lock_guard lock(mutex_);
  return history_.last(now_unix_ms, span);
}

}  // namespace kpsd
