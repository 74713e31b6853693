#pragma once
// What the store's rooms share (not a public header): the one SQLite connection, the box that
// seals jobs' keys, the tally of jobs ended in the open transaction, and the few statements
// more than one room runs. JobStore owns it; each room holds a reference.
#include "core/secret_box.hpp"
#include "model/job.hpp"
#include "model/job_endings.hpp"
#include "store/sqlite.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

namespace kpsd {

class StoreConnection {
 public:
  // Takes the opened, migrated database; sets the tally's commit hook on it. Throws sql::Error.
  StoreConnection(std::unique_ptr<sql::Database> db, SecretBox box);
  ~StoreConnection();
  StoreConnection(const StoreConnection&) = delete;
  StoreConnection& operator=(const StoreConnection&) = delete;

  sql::Database& db() noexcept { return *db_; }
  const SecretBox& box() const noexcept { return box_; }
  std::shared_ptr<const JobEndings> endings() const noexcept { return endings_; }

  // `jobs` rows just moved to final `state` in the open transaction (db changes, not intents: a
  // fenced outcome that changed nothing ends nothing); counted once it commits.
  void note_ended(JobState state, std::int64_t jobs);
  // Deletes a job's sealed key, inside the caller's transaction. Returns the rows deleted.
  // Throws sql::Error.
  int delete_secret(std::int64_t job_id);
  // A batch's first_job_id and last_job_id; {1, 0} (empty) when it created no job (or there is
  // no such batch). Throws sql::Error.
  std::pair<std::int64_t, std::int64_t> batch_range(std::int64_t batch_id);
  // After a transaction that deleted keys: empties the WAL that still holds them. Best effort.
  void scrub_wal();

 private:
  SecretBox box_;
  // Before db_: its transaction-end callback writes the tally while db_ lives.
  std::shared_ptr<JobEndings> endings_;
  JobEndings::Tally ending_now_{};  // this transaction's endings, so far
  std::unique_ptr<sql::Database> db_;
  // After db_: finalised before it closes.
  sql::Statement delete_secret_, batch_range_;
};

}  // namespace kpsd
