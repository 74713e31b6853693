#pragma once
// Jobs that reached a final state (succeeded, failed, cancelled), counted in one place: the
// store (issue 30 item 9). Each of its statements that ends jobs (a call's or a poll's outcome,
// a look that decides without a call, a claim that finds a job's key gone, the recovery after a
// restart, a cancel) notes the rows it changed, and the tally counts only once its transaction
// commits. (A TEMP trigger did the same from SQL, at 12 us of CPU a job: tests/bench/raw.sh.)
// Written on the DB thread, read on the network thread (kpsd_jobs_finished_total, the status
// page's chart): a mutex guards it.
#include "model/job.hpp"
#include "model/metrics.hpp"

#include <array>
#include <cstdint>
#include <mutex>
#include <vector>

namespace kpsd {

class JobEndings {
 public:
  static constexpr std::array<JobState, 3> final_states{JobState::succeeded, JobState::failed,
                                                        JobState::cancelled};
  using Tally = std::array<std::uint64_t, final_states.size()>;  // in final_states' order
  static std::size_t index(JobState s) noexcept;  // its place in a Tally; 3 for any other

  // A transaction's endings, committed at `unix_ms` (kpsd's clock).
  void committed(const Tally& ended, std::int64_t unix_ms);
  Tally totals() const;  // since kpsd started
  // The minutes from `now` back over `span`, oldest first, with only the finished counts set
  // (MinuteHistory::last).
  std::vector<MinuteHistory::Minute> last(std::int64_t now_unix_ms, std::size_t span) const;

 private:
  mutable std::mutex mutex_;
  Tally totals_{};
  MinuteHistory history_;
};

}  // namespace kpsd
