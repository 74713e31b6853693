#pragma once
// One daemon per database: an exclusive flock(2) on `<database>.lock`, taken before anything
// opens the database. The lock file holds the owner's pid, so a second kpsd can name it. The
// lock ends with the process (also on SIGKILL); the file stays, empty of meaning until locked.
// Plain sqlite3 shells never look at it: readers and writers of the database are unaffected.
#include <optional>
#include <string>

namespace kpsd {

class DatabaseLock {
 public:
  // Takes the lock for `database_path` without waiting. On failure returns nullopt and sets
  // `error` to one line naming the lock file (and the holder's pid when it is known).
  // `held_by_other` tells the two failures apart: another kpsd holds it, or the lock file
  // cannot be made at all (a missing or unwritable folder).
  static std::optional<DatabaseLock> acquire(const std::string& database_path, std::string& error,
                                             bool& held_by_other);
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
