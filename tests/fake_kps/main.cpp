// fake_kps: the fake KPS endpoint as a program, for the demo and manual tests.
#include "fake_kps.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <CLI/CLI.hpp>

#include <fstream>
#include <iostream>
#include <sstream>

namespace {
std::string read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}
std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

// The command line: what the options say, files not read yet.
struct Args {
  std::string project_id, token_file, behaviors_file, port_file, ak_file, sk_file;
  int task_ms = 0;
  std::int64_t window_quota = 0, quota_window_ms = 10000;
  std::size_t set_cookie_bytes = 0;
  unsigned interim = 0;
  int close_after = 0;
  bool close_announced = false;
  std::int64_t running_tasks_cap = 1000;
  std::string failed_tasks_order = "oldest";
  int seeded_failed_tasks = 0;
};

void add_options(CLI::App& app, Args& a) {
  app.add_option("--project-id", a.project_id, "project id expected in paths")->required();
  app.add_option("--token-file", a.token_file, "file with the X-Auth-Token expected")->required();
  app.add_option("--ak-file", a.ak_file,
                 "require AK/SK signatures instead of the token: the access key's file")
      ->needs(app.add_option("--sk-file", a.sk_file, "the secret key's file (with --ak-file)"));
  app.add_option("--behaviors", a.behaviors_file, "JSON file: per server id faults");
  app.add_option("--port-file", a.port_file, "write the chosen port here");
  app.add_option("--task-ms", a.task_ms,
                 "how long a task runs before SUCCESS_UNBIND (FAILED_UNBIND with a behavior's "
                 "task_failed_times)");
  app.add_option("--window-quota", a.window_quota,
                 "gateway quota: this many calls per window, then 429 until it turns");
  app.add_option("--quota-window-ms", a.quota_window_ms, "the quota window (default 10000)")
      ->check(CLI::PositiveNumber);
  app.add_option("--set-cookie-bytes", a.set_cookie_bytes,
                 "a Set-Cookie header of this many bytes on every answer, as load balancers add");
  app.add_option("--interim", a.interim,
                 "send this interim answer (100, 102, 103) before every answer")
      ->check(CLI::IsMember({100, 102, 103}));
  app.add_option("--close-after", a.close_after,
                 "close each connection after this many answers, without saying so")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--close-announced", a.close_announced,
               "with --close-after: say Connection: close on the last answer");
  // The task lists as docs/vendor-api.md describes them.
  app.add_option("--running-tasks-cap", a.running_tasks_cap,
                 "GET running-tasks lists and counts at most this many running tasks, the "
                 "oldest (default 1000, the vendor's cap on total)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--failed-tasks-order", a.failed_tasks_order,
                 "GET failed-tasks order: oldest (default) or newest first; the vendor does not "
                 "document it")
      ->check(CLI::IsMember({"oldest", "newest"}));
  app.add_option("--seeded-failed-tasks", a.seeded_failed_tasks,
                 "list this many failed tasks of other servers from the start (seeded-N on "
                 "seeded-server-N, KPS.6004), before kpsd's own")
      ->check(CLI::NonNegativeNumber);
}

// The fake's Options from the command line (reads the token and key files).
kpsd::fake::Options fake_options(const Args& a) {
  kpsd::fake::Options o;
  o.project_id = a.project_id;
  o.token = trimmed(read_file(a.token_file));
  if (!a.ak_file.empty()) {  // AK/SK signatures instead of the token
    o.ak = trimmed(read_file(a.ak_file));
    o.sk = trimmed(read_file(a.sk_file));
  }
  o.task_duration = std::chrono::milliseconds(a.task_ms);
  o.window_quota = a.window_quota;
  o.quota_window = std::chrono::milliseconds(a.quota_window_ms);
  o.set_cookie_bytes = a.set_cookie_bytes;
  o.interim_status = a.interim;
  o.close_after = a.close_after;
  o.close_announced = a.close_announced;
  o.running_tasks_cap = a.running_tasks_cap;
  o.failed_tasks_order = a.failed_tasks_order == "newest"
                             ? kpsd::fake::FailedTasksOrder::newest_first
                             : kpsd::fake::FailedTasksOrder::oldest_first;
  o.seeded_failed_tasks = a.seeded_failed_tasks;
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fake_kps: a fake KPS v3 endpoint on 127.0.0.1 for tests and the demo"};
  Args args;
  add_options(app, args);
  CLI11_PARSE(app, argc, argv);
  try {
    kpsd::fake::FakeKps fake(fake_options(args));
    if (!args.behaviors_file.empty()) {
      for (auto& [id, b] : kpsd::fake::parse_behaviors(read_file(args.behaviors_file))) {
        fake.set_behavior(id, b);
      }
    }
    if (!args.port_file.empty()) std::ofstream(args.port_file) << fake.port() << "\n";
    std::cout << "fake_kps listening on 127.0.0.1:" << fake.port() << std::endl;
    boost::asio::io_context io;
    boost::asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](auto, int) { io.stop(); });
    io.run();
    std::cout << fake.stats_json() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "fake_kps: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
