#pragma once
// Child processes for end-to-end tests: the built kpsd and kpsctl, and the sqlite3 shell.
// Output goes to files (no pipes to drain, so no deadlock); every child is reaped.
#include <chrono>
#include <fcntl.h>
#include <fstream>
#include <optional>
#include <signal.h>
#include <spawn.h>
#include <sstream>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace kpsd::test {

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class Process {
 public:
  // Starts argv[0] (a path) with stdout/stderr appended to the given files and stdin from
  // `stdin_file` (or /dev/null).
  // `extra_env` entries ("NAME=value") are added to this process's environment.
  Process(const std::vector<std::string>& argv, const std::string& out_file,
          const std::string& err_file, const std::string& stdin_file = "/dev/null",
          const std::vector<std::string>& extra_env = {}) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, stdin_file.c_str(), O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    std::vector<std::string> env_strings(extra_env);
    for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
    std::vector<char*> env;
    for (auto& e : env_strings) env.push_back(e.data());
    env.push_back(nullptr);
    int rc = posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), env.data());
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) throw std::runtime_error("cannot start " + argv[0]);
  }
  ~Process() {
    if (pid_ > 0 && !exit_code_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int signo) { ::kill(pid_, signo); }

  // Exit code (128+signal when killed), or nullopt if still running after `timeout`.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!exit_code_) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return exit_code_;
  }
  bool running() { return !wait(std::chrono::milliseconds(0)).has_value(); }

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs a command to its end (at most `timeout`), capturing stdout and stderr.
inline CommandResult run_command(const std::vector<std::string>& argv,
                                 const std::string& scratch_dir,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(120),
                                 const std::string& stdin_file = "/dev/null") {
  static int counter = 0;
  std::string base =
      scratch_dir + "/cmd-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
  CommandResult r;
  {
    Process p(argv, base + ".out", base + ".err", stdin_file);
    auto code = p.wait(timeout);
    if (!code) throw std::runtime_error(argv[0] + " did not finish in time");
    r.exit_code = *code;
  }
  r.out = slurp(base + ".out");
  r.err = slurp(base + ".err");
  ::unlink((base + ".out").c_str());
  ::unlink((base + ".err").c_str());
  return r;
}

}  // namespace kpsd::test
