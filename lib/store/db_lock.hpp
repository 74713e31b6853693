#pragma once
// One daemon per database: an exclusive flock(2) on `<database>.lock`, taken before anything
// opens the database. The lock file holds the owner's pid, so a second kpsd can name it. The
// lock ends with the process (also on SIGKILL); the file stays, empty of meaning until locked.
// Plain sqlite3 shells never look at it: readers and writers of the database are unaffected.
#include "core/result.hpp"

#include <string>

namespace kpsd {

// Why the lock was not taken: one line naming the lock file (and the holder's pid when it is
// known). `held_by_other` tells the two failures apart (exit 75 or 73): another kpsd holds it,
// or the lock file cannot be made at all (a missing or unwritable folder).
struct LockRefusal : Failure {
  bool held_by_other = false;
};

class DatabaseLock {
 public:
  // Takes the lock for `database_path` without waiting.
  static Result<DatabaseLock, LockRefusal> acquire(const std::string& database_path);
  DatabaseLock(DatabaseLock&& other) noexcept;
  DatabaseLock& operator=(DatabaseLock&& other) noexcept;
  DatabaseLock(const DatabaseLock&) = delete;
  ~DatabaseLock();

  const std::string& path() const noexcept { return path_; }

 private:
  DatabaseLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;
};

}  // namespace kpsd
