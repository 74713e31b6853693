#pragma once
// The SQLite job store: every state change of every job goes through here, each in a
// transaction committed before the caller acts on it. Used from one thread (the DB thread).
//
// JobStore opens (file checks, PRAGMAs, migrations) and owns the one connection, and hands it
// out in rooms, each with only what its user needs and its own prepared statements:
//   WorkQueue      the scheduler: claims, outcomes, next due time, recovery (work_queue.hpp)
//   JobCommands    the control socket's writes on jobs: enqueue, retry, cancel (job_commands.hpp)
//   JobQueries     the reads of the control socket and the status page (job_queries.hpp)
//   BatchControls  pause, resume, cancel, retry of a batch; kpsd's pause (batch_controls.hpp)
//   Pruning        deleting finished jobs (job_pruning.hpp)
// DbWorker::call hands each caller the rooms its lambda names as parameters.
#include "model/job_endings.hpp"
#include "store/batch_controls.hpp"
#include "store/job_commands.hpp"
#include "store/job_pruning.hpp"
#include "store/job_queries.hpp"
#include "store/work_queue.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

namespace kpsd {

// What a held job's next_attempt_at carries on top of its due time: 2^52 ms. A queued or
// retrying job of a paused batch is held (migration 0009): never due, so never claimed.
inline constexpr std::int64_t held_offset = std::int64_t{1} << 52;

class StoreConnection;
class BrakeRoom;

// Whether T is one of the store's rooms (what a DbWorker::call lambda may take).
template <class T>
inline constexpr bool is_store_room_v =
    std::is_same_v<T, WorkQueue> || std::is_same_v<T, JobCommands> ||
    std::is_same_v<T, JobQueries> || std::is_same_v<T, BatchControls> || std::is_same_v<T, Pruning>;

class JobStore {
 public:
  // Opens (creating 0600 if needed) and migrates. Throws sql::Error / std::runtime_error.
  explicit JobStore(const std::string& path);
  ~JobStore();
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  int schema_version() const noexcept { return schema_version_; }
  // The jobs this store has ended, counted as each transaction commits (job_endings.hpp).
  std::shared_ptr<const JobEndings> endings() const noexcept;

  // The WAL's bound (bytes), SQLite's own auto-checkpoint size (1,000 pages of 4 KiB): SQLite
  // truncates the WAL back to it when it restarts the log after a checkpoint
  // (journal_size_limit), and trim_wal() truncates it when idle. While a reader
  // holds an old snapshot (an open sqlite3 transaction) the WAL grows past it; it shrinks back
  // once the reader is gone.
  static constexpr std::int64_t wal_size_limit = 4 * 1024 * 1024;

  // When the WAL file is over wal_size_limit: checkpoints it in full and truncates it to 0,
  // without waiting for a reader (a reader still holding it leaves it as it is: tried again
  // later). Returns the WAL's size in bytes afterwards (0 for ":memory:" or no WAL file).
  // Throws sql::Error.
  std::int64_t trim_wal();

  // The rooms, for start-up (before the DB thread exists) and tests; on the DB thread each
  // caller gets its own through DbWorker::call.
  WorkQueue& work_queue() noexcept { return *work_queue_; }
  JobCommands& commands() noexcept { return *commands_; }
  JobQueries& queries() noexcept { return *queries_; }
  BatchControls& batch_controls() noexcept { return *batch_controls_; }
  Pruning& pruning() noexcept { return *pruning_; }
  // The room of type Room (one of is_store_room_v).
  template <class Room>
  requires is_store_room_v<Room> Room& room() noexcept {
    if constexpr (std::is_same_v<Room, WorkQueue>)
      return work_queue();
    else if constexpr (std::is_same_v<Room, JobCommands>)
      return commands();
    else if constexpr (std::is_same_v<Room, JobQueries>)
      return queries();
    else if constexpr (std::is_same_v<Room, BatchControls>)
      return batch_controls();
    else
      return pruning();
  }

 private:
  std::string path_;
  int schema_version_ = 0;
  // First: the rooms' statements are finalised before the connection closes.
  std::unique_ptr<StoreConnection> connection_;
  std::unique_ptr<BrakeRoom> brakes_;
  std::unique_ptr<WorkQueue> work_queue_;
  std::unique_ptr<JobCommands> commands_;
  std::unique_ptr<JobQueries> queries_;
  std::unique_ptr<BatchControls> batch_controls_;
  std::unique_ptr<Pruning> pruning_;
};

}  // namespace kpsd
