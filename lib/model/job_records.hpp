#pragma once
// What the job store takes and gives back to its readers and to the control protocol: values
// only, so kpsctl and the protocol use them without seeing the store (store/job_store.hpp).
#include "model/batch_brakes.hpp"
#include "model/job.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kpsd {

struct EnqueueResult {
  std::int64_t id = 0;
  bool existing = false;  // the server already had a non-terminal job: this is its id
  bool operator==(const EnqueueResult&) const = default;
};

// Which batch an enqueue adds its jobs to: an existing one (a later chunk of the same
// `kpsctl enqueue`), or a new one, named or not.
struct BatchTarget {
  std::optional<std::int64_t> id;
  std::optional<std::string> name;  // for a new batch; unique
  Brakes brakes{};                  // for a new batch: canary, failure budget
  bool operator==(const BatchTarget&) const = default;
};

struct EnqueueBatchResult {
  std::string error;  // the batch name is taken, or the batch id is unknown: nothing queued
  std::int64_t batch_id = 0;
  std::vector<EnqueueResult> jobs;
};

struct Batch {
  std::int64_t id = 0;
  std::optional<std::string> name;
  std::int64_t created_at = 0;
  std::map<JobState, std::int64_t> states;   // its jobs per state (filled by count queries)
  std::optional<PauseReason> paused;         // why its jobs are held, when they are
  std::int64_t paused_at = 0;                // Unix ms
  std::optional<std::string> paused_detail;  // what kpsd said when it paused itself
  Brakes brakes;
  std::int64_t ended = 0, failed = 0;  // its own jobs that ended, and failed (migration 0009)
  bool operator==(const Batch&) const = default;
};

// A batch that paused itself, or whose canary ended, in a transaction of outcomes: the
// scheduler says it once (log, STATUS=).
struct BatchStop {
  std::int64_t batch_id = 0;
  std::optional<std::string> name;
  PauseReason reason = PauseReason::failures;
  std::string line;  // "12 of 40 ended jobs failed (budget: 10)", "canary done: ..."
};
// The line kpsd logs once for it: "batch 7 (night) paused itself: 12 of 40 ended jobs failed
// (budget: 10); its queued jobs wait for kpsctl resume --batch 7".
std::string describe(const BatchStop& stop);

// What a bulk control did to a batch.
struct BatchChange {
  bool found = true;      // false: no such batch
  std::int64_t jobs = 0;  // jobs held, given back or cancelled
  bool changed = true;    // false: it was already so (paused, not paused, nothing to cancel)
};

struct ListQuery {
  std::optional<JobState> state;
  std::optional<std::string> server_id;
  std::optional<std::int64_t> batch_id;
  std::int64_t limit = 100;
  std::int64_t after_id = 0;  // paging: ids greater than this
  bool maybe_done = false;    // only failed jobs whose earlier call may have done the unbind
  bool operator==(const ListQuery&) const = default;
};

// A page of jobs as both front doors show it (kpsctl list, the status page's /api/jobs).
struct JobPage {
  bool batch_missing = false;  // the batch asked for does not exist: no jobs
  std::vector<Job> jobs;
  // With with_request_ids: each job's newest X-Request-Id, in the order of `jobs`.
  std::vector<std::optional<std::string>> request_ids;
};

// A job and its attempts, oldest first (kpsctl show, /api/jobs/{id}).
struct JobDetail {
  Job job;
  std::vector<Attempt> attempts;
  bool operator==(const JobDetail&) const = default;
};

// Which finished jobs a prune takes (besides their age): one final state, one batch's own jobs.
struct PruneFilter {
  std::optional<JobState> state;         // succeeded, failed or cancelled
  std::optional<std::int64_t> batch_id;  // the jobs the batch created
  bool operator==(const PruneFilter&) const = default;
};

// What `retry` did to one job.
enum class RetryOutcome {
  requeued,    // back to `queued` with its attempts reset
  rechecking,  // its task was still pending at the poll timeout: polling it again
  not_found,
  not_ended,       // only failed or cancelled jobs are retried
  succeeded,       // nothing to retry
  key_gone,        // replace form, and its key was deleted when it ended: enqueue it again
  call_in_flight,  // cancelled while its call was in flight: retry once the call has ended
  server_busy,     // its server already has an unfinished job (one per server, migration 0007)
};
std::string_view describe(RetryOutcome o) noexcept;

enum class CancelOutcome { cancelled, not_found, already_ended };

}  // namespace kpsd
