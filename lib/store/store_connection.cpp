#include "store/store_connection.hpp"

#include "core/clock.hpp"

namespace kpsd {

StoreConnection::StoreConnection(std::unique_ptr<sql::Database> db, SecretBox box)
    : box_(std::move(box)),
      endings_(std::make_shared<JobEndings>()),
      db_(std::move(db)),
      delete_secret_(*db_, "DELETE FROM job_secrets WHERE job_id = ?1"),
      // A batch's own jobs lie between these ids (a rowid range; see 0006).
      batch_range_(*db_,
                   "SELECT coalesce(first_job_id, 1), coalesce(last_job_id, 0) FROM batches "
                   "WHERE id = ?1") {
  // Every statement that ends jobs tells note_ended() how many rows it changed; the tally
  // counts once its transaction commits (job_endings.hpp), and is dropped when it rolls back.
  db_->on_transaction_end([this](bool committed) {
    if (committed && ending_now_ != JobEndings::Tally{})
      endings_->committed(ending_now_, unix_ms());
    ending_now_ = {};
  });
}

StoreConnection::~StoreConnection() = default;

void StoreConnection::note_ended(JobState state, std::int64_t jobs) {
  std::size_t i = JobEndings::index(state);
  if (i < ending_now_.size() && jobs > 0) ending_now_[i] += static_cast<std::uint64_t>(jobs);
}

int StoreConnection::delete_secret(std::int64_t job_id) {
  delete_secret_.bind(1, job_id).run();
  return db_->changes();
}

std::pair<std::int64_t, std::int64_t> StoreConnection::batch_range(std::int64_t batch_id) {
  auto& s = batch_range_;
  s.bind(1, batch_id);
  std::pair<std::int64_t, std::int64_t> range{1, 0};  // empty
  if (s.step()) range = {s.column_int(0), s.column_int(1)};
  s.reset();
  return range;
}

void StoreConnection::scrub_wal() {
  // The WAL still holds the frames that wrote the secret in; a TRUNCATE checkpoint copies the
  // scrubbed pages (secure_delete zeroed the row) into the database and empties the WAL file.
  // Best effort: a reader holding an old snapshot (an open sqlite3 shell) can make it partial.
  try {
    db_->exec("PRAGMA wal_checkpoint(TRUNCATE)");
  } catch (const sql::Error&) {
  }
}

}  // namespace kpsd
