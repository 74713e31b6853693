#pragma once
// Retrying one ended job, inside the caller's transaction (not a public header): what `kpsctl
// retry` does to each job, whether named, in a state, or in a batch. The commands and the batch
// controls each hold one (the same SQL, their own prepared statements).
#include "model/job_records.hpp"
#include "store/sqlite.hpp"

#include <cstdint>

namespace kpsd {

class JobRetry {
 public:
  explicit JobRetry(sql::Database& db);

  // Applies a retry to job `id` at `now` (Unix ms). `unfinished_job`: set to the server's
  // unfinished job when that refuses the retry (server_busy). Throws sql::Error.
  RetryOutcome retry_one(std::int64_t id, std::int64_t now, std::int64_t* unfinished_job);

 private:
  sql::Statement target_, requeue_, recheck_;
  struct TargetColumns {  // target_'s columns, by name
    explicit TargetColumns(const sql::Statement& s);
    int state, key_gone, task_pending, call_in_flight, other_unfinished;
  } cols_;
};

}  // namespace kpsd
