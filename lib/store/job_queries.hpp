#pragma once
// The store's reads, one method per use case, shared by the control socket and the status page:
// a page of jobs, a job with its attempts, batches, counts, and the cheap questions a waiting
// kpsctl asks. Reads only, never a transaction of their own (each statement reads one
// snapshot). Times are Unix ms; every read throws sql::Error when the database fails. Used on
// the DB thread only (DbWorker::call with a `JobQueries&` parameter).
#include "model/job.hpp"
#include "model/job_records.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kpsd {

class StoreConnection;

class JobQueries {
 public:
  explicit JobQueries(StoreConnection& connection);  // prepares its statements
  ~JobQueries();
  JobQueries(const JobQueries&) = delete;
  JobQueries& operator=(const JobQueries&) = delete;

  // A page of jobs in id order after q.after_id, at most q.limit, narrowed by q's filters.
  std::vector<Job> list(ListQuery q);
  // The use cases both front doors share, each one read: a page of jobs, narrowed to a batch
  // given by id ("42") or name when `batch` is set (it overrides q.batch_id; no such batch:
  // batch_missing); and a job with its attempts (nullopt: no such job).
  JobPage list_page(ListQuery q, const std::optional<std::string>& batch, bool with_request_ids);
  std::optional<JobDetail> job_with_attempts(std::int64_t id);
  std::optional<Job> find(std::int64_t id);               // nullopt: no such job
  std::vector<Attempt> attempts_of(std::int64_t job_id);  // oldest first
  // The X-Request-Id of the job's newest attempt that has one (what support asks for).
  std::optional<std::string> last_request_id(std::int64_t job_id);
  std::map<JobState, std::int64_t> count_by_state();  // kept by triggers: seven rows
  std::optional<std::int64_t> oldest_queued_due();    // min next_attempt_at of queued jobs

  // A batch by id ("42") or name, with its jobs counted per state; nullopt if there is none.
  // `count`: also count its jobs per state (a pass over the batch; list needs only the id).
  std::optional<Batch> find_batch(std::string_view id_or_name, bool count = true);
  std::map<JobState, std::int64_t> count_batch(std::int64_t batch_id);
  // The newest batches first, at most `limit`, each with its jobs counted per state.
  std::vector<Batch> list_batches(std::int64_t limit);
  std::vector<Batch> paused_batches();  // oldest first, without counts
  // What a bare `kpsctl wait` follows: jobs with ids from min_id to max_id that were
  // unfinished at `since` (still unfinished, or finished at or after it), per state.
  std::map<JobState, std::int64_t> count_unfinished_since(std::int64_t min_id, std::int64_t max_id,
                                                          std::int64_t since);
  std::int64_t max_job_id();  // 0: no job
  // Cheap questions for a waiting kpsctl (index seeks, not counts): is any job unfinished?
  bool any_unfinished_between(std::int64_t min_id, std::int64_t max_id);
  bool batch_unfinished(std::int64_t batch_id);
  std::optional<std::int64_t> min_unfinished_id();  // nullopt: every job has finished

 private:
  StoreConnection& connection_;
  struct Statements;  // job_queries.cpp
  std::unique_ptr<Statements> sql_;
};

}  // namespace kpsd
