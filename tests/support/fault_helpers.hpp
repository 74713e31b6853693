#pragma once
// What the fault tests share (tests/e2e/test_faults.cpp, test_process_faults.cpp): a real
// sqlite3 holding the write lock, a small tmpfs, and the checks that nothing was lost.
#include "e2e_rig.hpp"
#include "notify_listener.hpp"
#include "raw_client.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <poll.h>
#include <random>
#include <regex>
#include <sstream>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

namespace kpsd::test {

using namespace std::chrono_literals;

inline constexpr const char* outcome_lost = "outcome lost: daemon stopped";

// An sqlite3 shell that takes the write lock (BEGIN IMMEDIATE), inserts one job the way an
// operator would, holds the lock for `hold`, then commits. Returns once the lock is held.
class SqliteLockHolder {
 public:
  SqliteLockHolder(const TempDir& dir, const std::string& db, std::chrono::seconds hold,
                   const std::string& server_id)
      : marker_(dir.file("lock-held-" + server_id)) {
    std::string script =
        ".timeout 20000\nBEGIN IMMEDIATE;\nINSERT INTO jobs (server_id) VALUES ('" + server_id +
        "');\n.system touch " + marker_ + "\n.system sleep " + std::to_string(hold.count()) +
        "\nCOMMIT;\n";
    std::string script_file = dir.write("lock-" + server_id + ".sql", script);
    shell_ =
        std::make_unique<Process>(std::vector<std::string>{"/usr/bin/sqlite3", db},
                                  dir.file("sqlite3.out"), dir.file("sqlite3.err"), script_file);
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (!std::filesystem::exists(marker_)) {
      REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline,
                      "sqlite3 did not get the write lock: " << slurp(dir.file("sqlite3.err")));
      REQUIRE_MESSAGE(shell_->running(), "sqlite3 ended: " << slurp(dir.file("sqlite3.err")));
      std::this_thread::sleep_for(5ms);
    }
    held_until_ = std::chrono::steady_clock::now() + hold;  // the shell sleeps after the marker
  }
  // The earliest time the lock can be let go.
  std::chrono::steady_clock::time_point held_until() const { return held_until_; }
  // Waits for the commit; the shell's exit code (0: its insert went in).
  int finish() {
    auto code = shell_->wait(60s);
    REQUIRE(code.has_value());
    return *code;
  }

 private:
  std::string marker_;
  std::unique_ptr<Process> shell_;
  std::chrono::steady_clock::time_point held_until_;
};

// utime + stime of a process, in seconds.
inline double cpu_seconds(pid_t pid) {
  std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  std::istringstream in(stat.substr(close + 2));
  std::string field;
  long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stoll(field);
    if (i == 15) stime = std::stoll(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

inline boost::json::object store_of(Rig& rig) {
  auto stats = rig.ctl_json({"stats"});
  return stats.at("store").as_object();
}

// Waits until kpsd reports the store (un)writable; false on timeout.
inline bool wait_for_store(Rig& rig, bool writable, std::chrono::seconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (store_of(rig).at("writable").as_bool() == writable) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

inline void wait_for_calls(Rig& rig, std::int64_t n, std::chrono::seconds limit = 60s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (rig.fake().disassociate_calls() < n) {
    REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline,
                    "only " << rig.fake().disassociate_calls() << " calls of " << n);
    std::this_thread::sleep_for(2ms);
  }
}

inline std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

inline std::string enqueue_file(Rig& rig, const std::string& prefix, int count) {
  std::string ids;
  for (int i = 0; i < count; ++i) ids += prefix + std::to_string(i) + "\n";
  return rig.dir().write(prefix + "ids.txt", ids);
}

// Every job succeeded, and every server (from `rows`) was called exactly once.
inline void check_each_delivered_once(Rig& rig, const std::string& db = {}) {
  auto rows = read_jobs(db.empty() ? rig.db_path() : db);
  int twice = 0, not_succeeded = 0;
  for (const auto& [id, row] : rows) {
    if (rig.fake().accepted_for(id) != 1) ++twice;
    if (row.state != "succeeded" || row.attempt_rows != 1) {
      ++not_succeeded;
      MESSAGE(id << ": " << row.state << ", " << row.attempt_rows << " attempt rows, "
                 << rig.fake().accepted_for(id) << " deliveries, " << row.error_msg);
    }
  }
  MESSAGE(rows.size() << " jobs: " << twice << " not delivered exactly once, " << not_succeeded
                      << " not succeeded at the first attempt");
  CHECK(twice == 0);
  CHECK(not_succeeded == 0);
}

inline bool running_as_root() { return ::geteuid() == 0; }

// A small tmpfs of the test's own, unmounted at the end.
class TmpfsMount {
 public:
  TmpfsMount(const std::string& where, std::size_t bytes) : where_(where) {
    std::filesystem::create_directories(where);
    std::string opts = "size=" + std::to_string(bytes) + ",mode=0700";
    if (::mount("kpsd-test", where.c_str(), "tmpfs", 0, opts.c_str()) == 0) {
      mounted_ = true;
    } else {
      error_ = std::strerror(errno);
    }
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(where_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  std::string where_;
  bool mounted_ = false;
  std::string error_;
};

// Fills a file system: writes `path` until ENOSPC. Returns the bytes written.
inline std::size_t fill_up(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  std::string chunk(64 * 1024, 'x');
  std::size_t total = 0;
  for (std::size_t size = chunk.size(); size > 0;) {
    ssize_t n = ::write(fd, chunk.data(), size);
    if (n > 0) {
      total += static_cast<std::size_t>(n);
    } else {
      size /= 2;  // the last few kilobytes
    }
  }
  ::close(fd);
  return total;
}

// Calls made during `window` (no new ones while the store cannot be written).
inline std::int64_t calls_during(Rig& rig, std::chrono::milliseconds window) {
  std::int64_t before = rig.fake().disassociate_calls();
  std::this_thread::sleep_for(window);
  return rig.fake().disassociate_calls() - before;
}

}  // namespace kpsd::test
