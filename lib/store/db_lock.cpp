#include "store/db_lock.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <string_view>
#include <sys/file.h>
#include <unistd.h>
#include <utility>

namespace kpsd {

namespace {

std::string read_holder_pid(int fd) {
  char buf[32] = {};
  ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return {};
  std::string_view text(buf, static_cast<std::size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  for (char c : text) {
    if (c < '0' || c > '9') return {};  // not ours to quote
  }
  return std::string(text);
}

}  // namespace

Result<DatabaseLock, LockRefusal> DatabaseLock::acquire(const std::string& database_path) {
  LockRefusal refusal;
  std::string path = database_path + ".lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    refusal.message = "cannot open lock file " + path + ": " + std::strerror(errno);
    return refusal;
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    if (err == EWOULDBLOCK) {
      refusal.held_by_other = true;
      std::string pid = read_holder_pid(fd);
      refusal.message = "database " + database_path + " is in use by another kpsd" +
                        (pid.empty() ? "" : " (pid " + pid + ")") + ": it holds the lock " + path +
                        "; one kpsd per database";
    } else {
      refusal.message = "cannot lock " + path + ": " + std::strerror(err);
    }
    ::close(fd);
    return refusal;
  }
  // The pid is informational (for the message above); failing to write it is not fatal.
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0) {
    [[maybe_unused]] ssize_t n = ::pwrite(fd, pid.data(), pid.size(), 0);
  }
  return DatabaseLock(fd, std::move(path));
}

DatabaseLock::DatabaseLock(DatabaseLock&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}

DatabaseLock& DatabaseLock::operator=(DatabaseLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
  }
  return *this;
}

DatabaseLock::~DatabaseLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

}  // namespace kpsd
