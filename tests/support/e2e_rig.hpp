#pragma once
// End-to-end rig: one kpsd (the built binary) with its own folder (config, token, database,
// socket, log) talking to an in-process fake KPS, and kpsctl to drive it.
#include "fake_kps.hpp"
#include "process.hpp"
#include "store/sqlite.hpp"
#include "temp_dir.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <string>

namespace kpsd::test {

inline const std::string project = "0123456789abcdef0123456789abcdef";
inline const std::string token = "e2e-token-0123";

struct RigOptions {
  // The fake KPS's options as they are (tests/fake_kps/fake_kps.hpp): task_duration, call_delay,
  // tls_cert_file/tls_key_file (it serves https), iam, ak/sk, projects, window_quota ... A
  // project_id or token left empty is the rig's `project` and `token`.
  fake::Options fake{};
  std::map<std::string, std::string> config{};  // "section.key" → value, over the defaults
  std::string endpoint_host{"127.0.0.1"};       // the host name kpsd is told to use
  std::vector<std::string> launcher{};          // runs kpsd under this (e.g. prlimit ...)
};

// [auth] method = iam_password against the fake's IAM as `iam` says; the password file is
// "iam-password" under $CREDENTIALS_DIRECTORY (start kpsd with it set to the rig's folder).
inline RigOptions iam_password_options(fake::IamOptions iam, std::string concurrency = "8") {
  RigOptions o;
  o.config = {{"auth.method", "iam_password"},
              {"auth.iam_endpoint", "http://{fake}"},
              {"auth.domain", iam.domain},
              {"auth.user", iam.user},
              {"auth.password_file", "iam-password"},
              {"auth.project", iam.project},
              {"queue.concurrency", std::move(concurrency)}};
  o.fake.iam = std::move(iam);
  return o;
}

// The fake's options with the rig's project and token where a test left them empty.
inline fake::Options fake_options(const RigOptions& o) {
  fake::Options f = o.fake;
  if (f.project_id.empty()) f.project_id = project;
  if (f.token.empty()) f.token = token;
  return f;
}

class Rig {
 public:
  explicit Rig(RigOptions options = {})
      : fake_(fake_options(options)), launcher_(options.launcher) {
    dir_.write("token", token + "\n");
    std::string scheme = options.fake.tls_cert_file.empty() ? "http" : "https";
    std::map<std::string, std::string> cfg{
        {"kps.endpoint",
         scheme + "://" + options.endpoint_host + ":" + std::to_string(fake_.port())},
        {"kps.project_id", project},
        {"kps.request_timeout_ms", "2000"},
        {"kps.poll_initial_delay_ms", "20"},
        {"kps.poll_interval_ms", "20"},
        {"kps.poll_timeout_ms", "20000"},
        {"auth.token_file", dir_.file("token")},
        {"queue.database", db_path()},
        {"queue.concurrency", "32"},
        {"queue.rate_per_second", "0"},
        {"queue.max_attempts", "5"},
        {"queue.backoff_initial_ms", "20"},
        {"queue.backoff_max_ms", "200"},
        {"queue.throttle_backoff_ms", "300"},
        {"queue.drain_grace_ms", "10000"},
        {"control.socket", socket_path()},
        // KPSD_TEST_LOG_LEVEL=debug: a post-mortem's log (with KPSD_TEST_KEEP to keep it).
        {"log.level",
         std::getenv("KPSD_TEST_LOG_LEVEL") ? std::getenv("KPSD_TEST_LOG_LEVEL") : "info"},
    };
    // "{fake}" in a value stands for the fake's 127.0.0.1:PORT (e.g. for auth.iam_endpoint).
    for (auto [k, v] : options.config) {
      if (auto at = v.find("{fake}"); at != std::string::npos) {
        v.replace(at, 6, "127.0.0.1:" + std::to_string(fake_.port()));
      }
      cfg[k] = v;
    }
    if (cfg.contains("auth.method")) cfg.erase("auth.token_file");
    std::string text, section;
    for (const auto& [key, value] : cfg) {  // std::map: keys of one section are adjacent
      std::string s = key.substr(0, key.find('.'));
      if (s != section) text += "[" + (section = s) + "]\n";
      text += key.substr(key.find('.') + 1) + " = " + value + "\n";
    }
    config_path_ = dir_.write("kpsd.conf", text);
  }
  ~Rig() {
    if (daemon_ && daemon_->running()) {
      daemon_->signal(SIGTERM);
      daemon_->signal(SIGTERM);
      daemon_->wait(std::chrono::seconds(20));
    }
    if (check_calls_ && std::uncaught_exceptions() == 0) expect_calls_on_record();
  }

  // Every call on record (issue 30): each disassociate call the fake received (answered,
  // refused, dropped, or met by a silent close) has its attempt row, and each row that holds
  // an answer was received. Rows beyond the calls received are only calls that got no answer:
  // connect failures, an unreachable proxy, a call in flight at a SIGKILL or cut short by a
  // stop. Checked after every test that keeps its rows (the rig's destructor).
  void expect_calls_on_record() {
    if (!std::filesystem::exists(db_path())) return;
    std::int64_t rows = 0, answered = 0;
    try {
      sql::Database db(db_path(), sql::Database::Mode::read_only);
      sql::Statement s(db, "SELECT count(*), count(http_status) FROM attempts");
      if (!s.step()) return;
      rows = s.column_int(0);
      answered = s.column_int(1);
    } catch (const std::exception& e) {
      MESSAGE("calls-on-record check skipped: the database cannot be read: " << e.what());
      return;
    }
    std::int64_t received = fake_.disassociates_received();
    INFO("attempt rows " << rows << " (" << answered << " with an answer), disassociate calls "
                         << "received " << received);
    CHECK(received <= rows);
    CHECK(answered <= received);
  }
  // For a test whose attempt rows are deleted on purpose (prune), with the reason.
  void skip_calls_check(std::string_view why) {
    MESSAGE("calls-on-record check skipped: " << why);
    check_calls_ = false;
  }

  // Starts kpsd and returns at once (see start()).
  void launch(const std::vector<std::string>& extra_env = {}) {
    std::vector<std::string> argv = launcher_;
    argv.insert(argv.end(), {KPSD_BIN, "--config", config_path_});
    daemon_ =
        std::make_unique<Process>(argv, dir_.file("kpsd.out"), log_path(), "/dev/null", extra_env);
  }

  void start(const std::vector<std::string>& extra_env = {},
             std::chrono::seconds ready_within = std::chrono::seconds(15)) {
    launch(extra_env);
    // Ready when the control socket answers.
    auto deadline = std::chrono::steady_clock::now() + ready_within;
    while (std::chrono::steady_clock::now() < deadline) {
      REQUIRE_MESSAGE(daemon_->running(), "kpsd exited early:\n" << log());
      if (ctl({"stats"}).exit_code == 0) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL("kpsd did not become ready:\n" << log());
  }

  // SIGTERM, then the exit code (fails the test if kpsd does not exit within `limit`).
  int stop(std::chrono::milliseconds limit = std::chrono::seconds(30)) {
    daemon_->signal(SIGTERM);
    auto code = daemon_->wait(limit);
    REQUIRE_MESSAGE(code.has_value(), "kpsd did not stop on SIGTERM");
    return *code;
  }
  Process& daemon() { return *daemon_; }

  CommandResult ctl(std::vector<std::string> args, const std::string& stdin_file = "/dev/null") {
    std::vector<std::string> argv{KPSCTL_BIN, "--socket", socket_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, dir_.path().string(), std::chrono::seconds(180), stdin_file);
  }

  // The port of the metrics listener (and status page), as kpsd logged it at start (for
  // metrics.listen = 127.0.0.1:0).
  std::uint16_t metrics_port() const {
    std::smatch m;
    std::string text = log();
    REQUIRE_MESSAGE(
        std::regex_search(text, m, std::regex("metrics on http://127.0.0.1:([0-9]+)/metrics")),
        text);
    return static_cast<std::uint16_t>(std::stoi(m[1]));
  }

  // The batch an enqueue made: "batch_id" of its --json document, or "batch N" on stderr.
  static std::string batch_of(const CommandResult& enqueue) {
    std::smatch m;
    if (std::regex_search(enqueue.out, m, std::regex("\"batch_id\":([0-9]+)"))) return m[1];
    if (std::regex_search(enqueue.err, m, std::regex("batch ([0-9]+)"))) return m[1];
    FAIL("no batch id in the enqueue output: " << enqueue.out << enqueue.err);
    return "";
  }

  boost::json::object ctl_json(std::vector<std::string> args) {
    args.insert(args.begin(), "--json");
    auto r = ctl(args);
    REQUIRE_MESSAGE(r.exit_code != 69, r.err);
    return boost::json::parse(r.out).as_object();
  }

  std::string log() const { return slurp(log_path()); }
  std::string db_path() const { return dir_.file("jobs.db"); }
  std::string socket_path() const { return dir_.file("kpsd.sock"); }
  std::string log_path() const { return dir_.file("kpsd.log"); }
  const TempDir& dir() const { return dir_; }
  fake::FakeKps& fake() { return fake_; }
  const std::string& config_path() const { return config_path_; }

 private:
  TempDir dir_;
  fake::FakeKps fake_;
  std::vector<std::string> launcher_;
  std::string config_path_;
  std::unique_ptr<Process> daemon_;
  bool check_calls_ = true;
};

// Polls `done` every 10 ms; fails the test after `limit`.
inline void wait_until(const std::function<bool()>& done, std::chrono::seconds limit,
                       const std::string& what) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline, "timed out waiting for " << what);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// One unlabelled sample of a /metrics page.
inline double metric(const std::string& page, const std::string& name) {
  auto at = page.find("\n" + name + " ");
  REQUIRE_MESSAGE(at != std::string::npos, name << " not in /metrics");
  return std::stod(page.substr(at + name.size() + 2));
}

struct JobRow {
  std::int64_t id = 0;
  std::string server_id, state, task_id, task_status, error_code, error_msg, task_error_code,
      task_error_msg;
  std::int64_t attempts = 0, attempt_rows = 0;
};

// Reads the jobs table the way an operator would: straight from the file.
inline std::map<std::string, JobRow> read_jobs(const std::string& db_path) {
  sql::Database db(db_path, sql::Database::Mode::read_only);
  sql::Statement s(db,
                   "SELECT id, server_id, state, coalesce(task_id,''), coalesce(task_status,''), "
                   "coalesce(error_code,''), coalesce(error_msg,''), "
                   "coalesce(task_error_code,''), coalesce(task_error_msg,''), attempts, "
                   "(SELECT count(*) FROM attempts a WHERE a.job_id = jobs.id) FROM jobs");
  std::map<std::string, JobRow> rows;
  while (s.step()) {
    JobRow r{s.column_int(0),  s.column_text(1), s.column_text(2), s.column_text(3),
             s.column_text(4), s.column_text(5), s.column_text(6), s.column_text(7),
             s.column_text(8), s.column_int(9),  s.column_int(10)};
    rows[r.server_id] = r;
  }
  return rows;
}

struct AttemptRow {
  std::int64_t n = 0, started_at = 0, finished_at = 0, http_status = 0;
  std::string error_msg, request_id, look;
};

inline std::vector<AttemptRow> read_attempts(const std::string& db_path, std::int64_t job_id) {
  sql::Database db(db_path, sql::Database::Mode::read_only);
  sql::Statement s(db,
                   "SELECT n, started_at, coalesce(finished_at, 0), coalesce(http_status, 0), "
                   "coalesce(error_msg, ''), coalesce(request_id, ''), coalesce(look, '') "
                   "FROM attempts "
                   "WHERE job_id = ?1 ORDER BY n");
  s.bind(1, job_id);
  std::vector<AttemptRow> rows;
  while (s.step()) {
    rows.push_back({s.column_int(0), s.column_int(1), s.column_int(2), s.column_int(3),
                    s.column_text(4), s.column_text(5), s.column_text(6)});
  }
  return rows;
}

}  // namespace kpsd::test
