#include "ctl.hpp"

#include "control_protocol.hpp"
#include "daemon.hpp"
#include "job.hpp"
#include "job_lines.hpp"
#include "zeroing_storage.hpp"

#include <boost/json.hpp>

#include <CLI/CLI.hpp>
#include <openssl/crypto.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

namespace kpsd {

namespace json = boost::json;

namespace {

constexpr int exit_failed = 1;
constexpr int exit_cli_usage = 2;
// Jobs per enqueue request: one transaction (one fsync) each in kpsd, so big chunks, but the
// request line stays well under kpsd's 1 MiB limit (keys make jobs large).
constexpr std::size_t enqueue_chunk = 4000;
constexpr std::size_t enqueue_chunk_bytes = 512 * 1024;

// What one job adds to a request line, roughly (JSON keys, quotes, escapes of a key).
std::size_t request_bytes(const NewJob& j) {
  return 64 + j.server_id.size() + (j.auth ? 2 * j.auth->key.reveal().size() : 0);
}

struct Unreachable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The socket is there but this user may not use it: a different fix from "start kpsd".
struct NotPermitted : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One blocking connection to the control socket; one request line, one reply line.
class ControlClient {
 public:
  explicit ControlClient(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw Unreachable(std::string("socket: ") + std::strerror(errno));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) throw Unreachable("socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      int err = errno;
      ::close(fd_);
      fd_ = -1;
      if (err == EACCES || err == EPERM) {
        throw NotPermitted("permission denied on kpsd's control socket " + path +
                           " (or a folder above it): run kpsctl as root or as a member of the "
                           "socket's group (ls -l " +
                           path + "; control.socket_mode in kpsd.conf)");
      }
      throw Unreachable("cannot reach kpsd at " + path + ": " + std::strerror(err) +
                        " (is kpsd running? set --socket or KPSD_SOCKET)");
    }
    timeval tv{60, 0};  // a reply that takes a minute means the daemon is stuck
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~ControlClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  json::object request(const json::object& req) {
    std::string line = json::serialize(req) + "\n";
    // The line may carry a job's key: clear it once sent.
    struct Wipe {
      std::string& s;
      ~Wipe() { OPENSSL_cleanse(s.data(), s.size()); }
    } wipe{line};
    std::size_t off = 0;
    while (off < line.size()) {
      ssize_t n = ::send(fd_, line.data() + off, line.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw Unreachable("lost connection to kpsd at " + path_);
      off += static_cast<std::size_t>(n);
    }
    std::string reply;
    for (;;) {
      if (auto nl = pending_.find('\n'); nl != std::string::npos) {
        reply = pending_.substr(0, nl);
        pending_.erase(0, nl + 1);
        break;
      }
      char buf[65536];
      ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        throw Unreachable("kpsd at " + path_ + " closed the connection or did not answer");
      pending_.append(buf, static_cast<std::size_t>(n));
    }
    boost::system::error_code ec;
    json::value v = json::parse(reply, ec);
    if (ec || !v.is_object()) throw Unreachable("kpsd sent a reply that is not JSON");
    return std::move(v.as_object());
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::string pending_;
};

struct Options {
  std::string socket;
  bool json_output = false;
};

std::string format_time(std::int64_t ms) {
  if (ms <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string text_of(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (!v || v->is_null()) return "";
  if (v->is_string()) return std::string(v->as_string());
  return json::serialize(*v);
}

std::int64_t int_of(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (v && v->is_int64()) return v->as_int64();
  if (v && v->is_uint64()) return static_cast<std::int64_t>(v->as_uint64());
  return 0;
}

// Any JSON number as a double (no throwing conversion); 0 when absent or not a number.
double number_of(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (!v) return 0;
  if (v->is_double()) return v->as_double();
  if (v->is_int64()) return static_cast<double>(v->as_int64());
  if (v->is_uint64()) return static_cast<double>(v->as_uint64());
  return 0;
}

// Sends a request; a refused request prints the daemon's reason and yields nullopt.
std::optional<json::object> ask(ControlClient& c, const json::object& req) {
  json::object reply = c.request(req);
  auto* ok = reply.if_contains("ok");
  if (!ok || !ok->is_bool() || !ok->as_bool()) {
    std::cerr << "kpsctl: kpsd refused the request: " << text_of(reply, "error") << "\n";
    return std::nullopt;
  }
  return reply;
}

void print_json(const json::value& v) { std::cout << json::serialize(v) << "\n"; }

// Reads a file (or stdin for "-"), one server id or one NDJSON object per line.
// Calls `sink` with each chunk of jobs; returns false (message printed) on a bad line.
bool read_job_file(
    const std::string& file, const std::function<bool(std::vector<NewJob>&)>& sink,
    const std::function<bool(const std::string&, NewJob&, const std::string&)>& auth_of) {
  std::ifstream f;
  std::istream* in = &std::cin;
  if (file != "-") {
    f.open(file);
    if (!f) {
      std::cerr << "kpsctl: cannot read " << file << ": " << std::strerror(errno) << "\n";
      return false;
    }
    in = &f;
  }
  std::vector<NewJob> chunk;
  std::size_t chunk_bytes = 0;
  std::string line;
  std::size_t line_no = 0;
  while (std::getline(*in, line)) {
    ++line_no;
    JobLine parsed;
    std::string error = parse_job_line(line, parsed);
    if (error.empty() && parsed.kind == JobLine::Kind::skip) continue;
    NewJob job = std::move(parsed.job);
    if (error.empty() && !parsed.key_file.empty() &&
        !auth_of(parsed.key_type, job, parsed.key_file)) {
      error = "auth: see above";
    }
    if (!error.empty()) {
      std::cerr << "kpsctl: " << file << ":" << line_no << ": " << error << "\n";
      return false;
    }
    chunk_bytes += request_bytes(job);
    chunk.push_back(std::move(job));
    if (chunk.size() >= enqueue_chunk || chunk_bytes >= enqueue_chunk_bytes) {
      if (!sink(chunk)) return false;
      chunk.clear();
      chunk_bytes = 0;
    }
  }
  if (!chunk.empty() && !sink(chunk)) return false;
  return true;
}

json::object job_request(const NewJob& j) {
  json::object o({{"server_id", j.server_id}}, zeroing_storage());  // may hold a key
  if (j.port) o["port"] = *j.port;
  if (j.auth) {
    json::object auth(zeroing_storage());
    auth["type"] = j.auth->type;
    auth["key"] = j.auth->key.reveal();
    o["auth"] = std::move(auth);
  }
  return o;
}

// Reads a password or private key file for the replace form. A password file's trailing
// newline is not part of the password; a private key is sent as it is.
std::optional<Secret> read_key_file(const std::string& type, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::cerr << "kpsctl: cannot read key file " << path << ": " << std::strerror(errno) << "\n";
    return std::nullopt;
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  std::string key = buf.str();
  if (type == "password") {
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
  }
  if (key.empty()) {
    std::cerr << "kpsctl: key file " << path << " is empty\n";
    return std::nullopt;
  }
  return Secret(std::move(key));
}

int cmd_enqueue(const Options& opt, const std::vector<std::string>& ids, const std::string& file,
                const std::string& auth_type, const std::string& key_file, int port) {
  if (ids.empty() == file.empty()) {
    std::cerr << "kpsctl enqueue: give server ids or --file FILE (not both)\n";
    return exit_cli_usage;
  }
  if (!auth_type.empty() && key_file.empty()) {
    std::cerr << "kpsctl enqueue: --auth-type needs --key-file\n";
    return exit_cli_usage;
  }
  if (auth_type.empty() && !key_file.empty()) {
    // Without a type the key would be dropped and the job sent in reset form: refuse.
    std::cerr << "kpsctl enqueue: --key-file needs --auth-type (password or keypair)\n";
    return exit_cli_usage;
  }
  std::optional<JobAuth> common_auth;
  if (!auth_type.empty()) {
    auto key = read_key_file(auth_type, key_file);
    if (!key) return exit_failed;
    common_auth = JobAuth{auth_type, std::move(*key)};
  }
  ControlClient client(opt.socket);
  // Results are printed as they come (also in --json mode, as one streamed document), so a
  // file of a million ids needs no more memory than one chunk.
  std::size_t total = 0, existing = 0;
  bool refused = false;
  bool progress = !file.empty() && ::isatty(STDERR_FILENO);
  // The server -> job lines are the output: written whenever stdout is a file or a pipe
  // (`enqueue --file f > map.tsv`); only on a terminal does the progress line stand in for them.
  bool job_lines = !progress || !::isatty(STDOUT_FILENO);
  if (opt.json_output) std::cout << "{\"jobs\":[";
  auto sink = [&](std::vector<NewJob>& chunk) {
    json::array jobs(zeroing_storage());
    for (NewJob& j : chunk) {
      if (port > 0 && !j.port) j.port = port;
      if (common_auth && !j.auth) j.auth = common_auth;
      jobs.push_back(job_request(j));
    }
    json::object request({{"op", "enqueue"}}, zeroing_storage());
    request["jobs"] = std::move(jobs);
    auto reply = ask(client, request);
    if (!reply) {
      refused = true;
      return false;
    }
    const json::array& res = reply->at("jobs").as_array();
    for (std::size_t i = 0; i < res.size() && i < chunk.size(); ++i) {
      const json::object& r = res[i].as_object();
      bool dup = r.at("existing").as_bool();
      existing += dup ? 1 : 0;
      if (opt.json_output) {
        std::cout << (total ? "," : "")
                  << json::serialize(json::object{
                         {"id", r.at("id")}, {"server_id", chunk[i].server_id}, {"existing", dup}});
      } else if (job_lines) {
        std::cout << int_of(r, "id") << "\t" << chunk[i].server_id
                  << (dup ? "\talready queued" : "\tqueued") << "\n";
      }
      ++total;
    }
    if (progress) std::cerr << "\renqueued " << total << " jobs..." << std::flush;
    return true;
  };
  bool ok;
  if (!file.empty()) {
    ok = read_job_file(file, sink,
                       [](const std::string& type, NewJob& job, const std::string& path) {
                         if (type != "password" && type != "keypair") {
                           std::cerr << "kpsctl: auth type must be password or keypair\n";
                           return false;
                         }
                         auto key = read_key_file(type, path);
                         if (!key) return false;
                         job.auth = JobAuth{type, std::move(*key)};
                         return true;
                       });
  } else {
    std::vector<NewJob> jobs;
    for (const auto& id : ids) {
      if (auto problem = validate_server_id(id); !problem.empty()) {
        std::cerr << "kpsctl enqueue: `" << id << "`: " << problem << "\n";
        return exit_cli_usage;
      }
      jobs.push_back(NewJob{id, std::nullopt, std::nullopt});
      if (jobs.size() >= enqueue_chunk) {
        if (!sink(jobs)) break;
        jobs.clear();
      }
    }
    ok = !refused && (jobs.empty() || sink(jobs));
  }
  if (progress) std::cerr << "\n";
  if (opt.json_output) {
    std::cout << "],\"ok\":" << (ok ? "true" : "false") << ",\"total\":" << total
              << ",\"existing\":" << existing << "}\n";
  } else if (total > 1) {
    std::cout << "enqueued " << total << " jobs (" << total - existing << " new, " << existing
              << " already queued)\n";
  }
  return ok ? exit_ok : exit_failed;
}

void print_job_table(const json::array& jobs) {
  std::printf("%-8s %-10s %-4s %-38s %-16s %s\n", "ID", "STATE", "TRY", "SERVER", "TASK_STATUS",
              "ERROR");
  for (const auto& v : jobs) {
    const json::object& j = v.as_object();
    std::string err = text_of(j, "error_code");
    std::string msg = text_of(j, "error_msg");
    if (!msg.empty()) err += (err.empty() ? "" : " ") + msg;
    std::printf("%-8lld %-10s %-4lld %-38s %-16s %s\n", static_cast<long long>(int_of(j, "id")),
                text_of(j, "state").c_str(), static_cast<long long>(int_of(j, "attempts")),
                text_of(j, "server_id").c_str(), text_of(j, "task_status").c_str(), err.c_str());
  }
}

int cmd_list(const Options& opt, const std::string& state, const std::string& server, int limit,
             std::int64_t after) {
  ControlClient client(opt.socket);
  json::object req{{"op", "list"}, {"limit", limit}, {"after_id", after}};
  if (!state.empty()) req["state"] = state;
  if (!server.empty()) req["server_id"] = server;
  auto reply = ask(client, req);
  if (!reply) return exit_failed;
  if (opt.json_output) {
    print_json(*reply);
  } else {
    print_job_table(reply->at("jobs").as_array());
    if (reply->contains("next_after_id")) {
      std::cout << "(more: --after " << int_of(*reply, "next_after_id") << ")\n";
    }
  }
  return exit_ok;
}

int cmd_show(const Options& opt, std::int64_t id) {
  ControlClient client(opt.socket);
  auto reply = ask(client, {{"op", "show"}, {"id", id}});
  if (!reply) return exit_failed;
  if (opt.json_output) {
    print_json(*reply);
    return exit_ok;
  }
  const json::object& j = reply->at("job").as_object();
  auto row = [](const char* k, const std::string& v) {
    std::printf("%s: %s\n", k, v.empty() ? "-" : v.c_str());
  };
  row("id", text_of(j, "id"));
  row("server_id", text_of(j, "server_id"));
  row("state", text_of(j, "state"));
  row("attempts", text_of(j, "attempts"));
  row("task_id", text_of(j, "task_id"));
  row("delivery_status", text_of(j, "delivery_status"));
  row("task_status", text_of(j, "task_status"));
  row("error_code", text_of(j, "error_code"));
  row("error_msg", text_of(j, "error_msg"));
  if (!text_of(j, "task_error_code").empty() || !text_of(j, "task_error_msg").empty()) {
    row("task_error_code", text_of(j, "task_error_code"));  // the server's reason for FAILED_*
    row("task_error_msg", text_of(j, "task_error_msg"));
  }
  row("port", text_of(j, "port"));
  std::string auth = text_of(j, "auth_type");
  row("auth", auth.empty() ? "none (reset form)" : auth + " (redacted)");
  row("created_at", format_time(int_of(j, "created_at")));
  row("updated_at", format_time(int_of(j, "updated_at")));
  const json::array& attempts = reply->at("attempts").as_array();
  std::printf("\nattempts:\n%-3s %-20s %-6s %-8s %-38s %s\n", "N", "STARTED", "HTTP", "LATENCY",
              "REQUEST_ID", "RESULT");
  for (const auto& v : attempts) {
    const json::object& a = v.as_object();
    std::string result = text_of(a, "delivery_status");
    if (!text_of(a, "task_id").empty()) result += " task " + text_of(a, "task_id");
    std::string err = text_of(a, "error_code") + " " + text_of(a, "error_msg");
    if (err != " ") result += (result.empty() ? "" : "; ") + err;
    std::string latency = text_of(a, "latency_ms");
    std::printf("%-3s %-20s %-6s %-8s %-38s %s\n", text_of(a, "n").c_str(),
                format_time(int_of(a, "started_at")).c_str(), text_of(a, "http_status").c_str(),
                latency.empty() ? "-" : (latency + "ms").c_str(), text_of(a, "request_id").c_str(),
                result.c_str());
  }
  return exit_ok;
}

std::string fmt_rate(double r) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3g/s", r);
  return buf;
}

int cmd_stats(const Options& opt) {
  ControlClient client(opt.socket);
  auto reply = ask(client, {{"op", "stats"}});
  if (!reply) return exit_failed;
  if (opt.json_output) {
    print_json(*reply);
    return exit_ok;
  }
  const json::object& states = reply->at("states").as_object();
  for (JobState s : all_job_states) {
    std::printf("%-10s %lld\n", std::string(to_string(s)).c_str(),
                static_cast<long long>(int_of(states, to_string(s))));
  }
  std::printf("%-10s %lld\n", "total", static_cast<long long>(int_of(*reply, "total")));
  std::printf("in flight  %lld\n", static_cast<long long>(int_of(*reply, "in_flight")));
  if (auto* oldest = reply->if_contains("oldest_queued_ms"); oldest && !oldest->is_null()) {
    std::printf("oldest queued  %.1f s\n",
                static_cast<double>(int_of(*reply, "oldest_queued_ms")) / 1000);
  }
  if (auto* paused = reply->if_contains("paused");
      paused && paused->is_bool() && paused->as_bool()) {
    std::printf("PAUSED (kpsctl resume to continue)\n");
  }
  double rate = number_of(*reply, "rate_per_second");
  double configured = number_of(*reply, "configured_rate_per_second");
  double share = number_of(*reply, "throttled_share");
  std::printf("rate       %s (%s)", rate > 0 ? fmt_rate(rate).c_str() : "not paced",
              configured > 0 ? ("at most " + fmt_rate(configured)).c_str() : "auto");
  std::printf("; 429s %.1f%% of answers in the last minute\n", 100 * share);
  if (auto* quota = reply->if_contains("quota"); quota && quota->is_object()) {
    const json::object& q = quota->as_object();
    std::int64_t window_ms = int_of(q, "window_ms");
    auto* holding = q.if_contains("holding");
    bool is_holding = holding && holding->is_bool() && holding->as_bool();
    if (window_ms > 0) {
      std::printf("quota      about %lld calls per %.1f s window%s\n",
                  static_cast<long long>(int_of(q, "calls")), static_cast<double>(window_ms) / 1000,
                  is_holding ? "; used up: waiting for the window to turn" : "");
    } else if (is_holding) {
      std::printf("quota      the gateway refuses every call: waiting, one probe at a time\n");
    }
  }
  if (auto* blocked = reply->if_contains("blocked"); blocked && blocked->is_object()) {
    const json::object& b = blocked->as_object();
    auto* reason = b.if_contains("reason");
    std::printf("BLOCKED for %.1f s: %s; calls paused, one probe at a time\n",
                static_cast<double>(int_of(b, "for_ms")) / 1000,
                reason && reason->is_string() ? reason->as_string().c_str() : "?");
  }
  if (auto* store = reply->if_contains("store"); store && store->is_object()) {
    const json::object& st = store->as_object();
    auto* writable = st.if_contains("writable");
    if (writable && writable->is_bool() && !writable->as_bool()) {
      auto* problem = st.if_contains("problem");
      std::printf("STORE UNAVAILABLE for %.1f s: %s; no new calls, %lld outcomes waiting\n",
                  static_cast<double>(int_of(st, "down_ms")) / 1000,
                  problem && problem->is_string() ? problem->as_string().c_str() : "?",
                  static_cast<long long>(int_of(st, "outcomes_waiting")));
    }
    if (auto* read = st.if_contains("read_problem"); read && read->is_string()) {
      std::printf("job counts unavailable: %s\n", read->as_string().c_str());
    }
  }
  return exit_ok;
}

int cmd_retry(const Options& opt, std::int64_t id, const std::string& state) {
  if ((id > 0) == !state.empty()) {
    std::cerr << "kpsctl retry: give a JOB_ID or --state failed|cancelled\n";
    return exit_cli_usage;
  }
  ControlClient client(opt.socket);
  json::object req{{"op", "retry"}};
  if (id > 0)
    req["id"] = id;
  else
    req["state"] = state;
  auto reply = ask(client, req);
  if (!reply) return exit_failed;
  if (opt.json_output) {
    print_json(*reply);
  } else if (id > 0) {
    std::cout << "job " << id << ": " << text_of(*reply, "result") << "\n";
  } else {
    std::cout << "requeued " << int_of(*reply, "requeued") << ", rechecking "
              << int_of(*reply, "rechecking") << " pending tasks";
    if (auto skipped = int_of(*reply, "skipped_key_gone")) {
      std::cout << "; skipped " << skipped
                << " replace-form jobs whose key is gone (enqueue them again with their key)";
    }
    if (auto skipped = int_of(*reply, "skipped_call_in_flight")) {
      std::cout << "; skipped " << skipped
                << " cancelled jobs whose call is still in flight (retry once it has ended)";
    }
    std::cout << "\n";
  }
  return exit_ok;
}

int cmd_simple(const Options& opt, const json::object& req, const std::string& done) {
  ControlClient client(opt.socket);
  auto reply = ask(client, req);
  if (!reply) return exit_failed;
  if (opt.json_output) {
    print_json(*reply);
  } else {
    std::cout << done << "\n";
  }
  return exit_ok;
}

int cmd_wait(const Options& opt, const std::vector<std::int64_t>& ids, double timeout_s) {
  ControlClient client(opt.socket);
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<std::int64_t>(timeout_s * 1000));
  for (;;) {
    bool done = true, all_succeeded = true;
    json::object summary;
    if (ids.empty()) {
      auto reply = ask(client, {{"op", "stats"}});
      if (!reply) return exit_failed;
      const json::object& st = reply->at("states").as_object();
      for (JobState s : all_job_states) {
        std::int64_t n = int_of(st, to_string(s));
        if (!is_terminal(s) && n > 0) done = false;
        if ((s == JobState::failed || s == JobState::cancelled) && n > 0) all_succeeded = false;
      }
      summary = st;
    } else {
      json::array jobs;
      for (std::int64_t id : ids) {
        auto reply = ask(client, {{"op", "show"}, {"id", id}});
        if (!reply) return exit_failed;
        const json::object& j = reply->at("job").as_object();
        auto state = parse_job_state(text_of(j, "state"));
        if (!state || !is_terminal(*state)) done = false;
        if (state != JobState::succeeded) all_succeeded = false;
        jobs.push_back(j);
      }
      summary["jobs"] = std::move(jobs);
    }
    if (done) {
      if (opt.json_output) {
        summary["ok"] = true;
        summary["all_succeeded"] = all_succeeded;
        print_json(summary);
      } else if (ids.empty()) {
        for (const auto& kv : summary) {
          std::printf("%-10s %lld\n", std::string(kv.key()).c_str(),
                      static_cast<long long>(int_of(summary, kv.key())));
        }
      } else {
        print_job_table(summary.at("jobs").as_array());
      }
      return all_succeeded ? exit_ok : exit_failed;
    }
    if (timeout_s > 0 && std::chrono::steady_clock::now() >= deadline) {
      std::cerr << "kpsctl wait: timed out with jobs still running\n";
      return exit_failed;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace

int run_kpsctl(int argc, char** argv) {
  CLI::App app{"kpsctl: control a running kpsd (enqueue key-pair unbinds, inspect jobs)"};
  app.set_version_flag("--version", "kpsctl " KPSD_VERSION);
  app.footer(
      "Exit codes: 0 ok; 1 the operation failed (or a waited-for job did not succeed); 2 usage;\n"
      "69 kpsd not reachable; 77 not allowed to use kpsd's control socket.\n"
      "`kpsctl COMMAND --help` describes each command.");
  Options opt;
  const char* env_socket = std::getenv("KPSD_SOCKET");
  opt.socket = env_socket && *env_socket ? env_socket : "/run/kpsd/kpsd.sock";
  app.add_option("--socket", opt.socket,
                 "kpsd's control socket (default: $KPSD_SOCKET, then /run/kpsd/kpsd.sock)");
  app.add_flag("--json", opt.json_output, "print one JSON document instead of a table");
  app.require_subcommand(1);
  app.fallthrough();  // `kpsctl list --json` works as well as `kpsctl --json list`

  std::vector<std::string> ids;
  std::string file, auth_type, key_file;
  int port = 0;
  auto* enqueue =
      app.add_subcommand("enqueue", "queue unbinds: server ids as arguments, or --file");
  enqueue->add_option("server_ids", ids, "server ids");
  enqueue->add_option("--file", file,
                      "one server id per line, or NDJSON objects "
                      "{\"server_id\",\"port\",\"auth\":{\"type\",\"key_file\"}}; - is stdin");
  enqueue->add_option("--auth-type", auth_type, "replace form: password or keypair")
      ->check(CLI::IsMember({"password", "keypair"}));
  enqueue->add_option("--key-file", key_file, "file holding the password or private key");
  enqueue->add_option("--port", port, "SSH port sent with the request")
      ->check(CLI::Range(1, 65535));

  std::string state, server;
  int limit = 100;
  std::int64_t after = 0;
  auto* list = app.add_subcommand("list", "list jobs, oldest first");
  list->add_option("--state", state, "only jobs in this state")
      ->check(CLI::IsMember(
          {"queued", "running", "retrying", "delivered", "succeeded", "failed", "cancelled"}));
  list->add_option("--server", server, "only jobs of this server id");
  list->add_option("--limit", limit, "at most this many (default 100)")
      ->check(CLI::Range(1, 10000));
  list->add_option("--after", after, "page: only job ids greater than this");

  std::int64_t show_id = 0;
  auto* show = app.add_subcommand("show", "one job with all its attempts");
  show->add_option("job_id", show_id, "job id")->required();

  app.add_subcommand("stats", "jobs per state, calls in flight, current rate");

  std::int64_t retry_id = 0;
  std::string retry_state;
  auto* retry =
      app.add_subcommand("retry", "send a failed or cancelled job (or all of them) again");
  retry->add_option("job_id", retry_id, "job id");
  retry->add_option("--state", retry_state, "every job in this state")
      ->check(CLI::IsMember({"failed", "cancelled"}));

  std::int64_t cancel_id = 0;
  auto* cancel = app.add_subcommand("cancel", "cancel a job that has not ended (no further calls)");
  cancel->add_option("job_id", cancel_id, "job id")->required();
  app.add_subcommand("pause", "start no new calls until resume (kept across restarts)");
  app.add_subcommand("resume", "start calls again after pause");

  std::vector<std::int64_t> wait_ids;
  double timeout_s = 0;
  auto* wait = app.add_subcommand(
      "wait", "block until the given jobs (or all jobs) are terminal; exit 0 if all succeeded");
  wait->add_option("job_ids", wait_ids, "job ids (default: every job)");
  wait->add_option("--timeout", timeout_s, "give up after this many seconds (exit 1); 0 = never");

  // The first word that is not an option must be a command: say so by name (CLI11 would say
  // "A subcommand is required").
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--socket") {
      ++i;
      continue;
    }
    if (arg.starts_with("-")) continue;
    std::string names;
    bool known = false;
    for (const auto* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      names += (names.empty() ? "" : ", ") + sub->get_name();
      known = known || sub->get_name() == arg;
    }
    if (!known) {
      std::cerr << "kpsctl: unknown command `" << arg << "` (commands: " << names << ")\n";
      return exit_cli_usage;
    }
    break;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? exit_ok : exit_cli_usage;
  }

  try {
    if (*enqueue) return cmd_enqueue(opt, ids, file, auth_type, key_file, port);
    if (*list) return cmd_list(opt, state, server, limit, after);
    if (*show) {
      if (show_id <= 0) {
        std::cerr << "kpsctl show: job id must be a positive number\n";
        return exit_cli_usage;
      }
      return cmd_show(opt, show_id);
    }
    if (app.got_subcommand("stats")) return cmd_stats(opt);
    if (*retry) return cmd_retry(opt, retry_id, retry_state);
    if (*cancel) {
      if (cancel_id <= 0) {
        std::cerr << "kpsctl cancel: job id must be a positive number\n";
        return exit_cli_usage;
      }
      return cmd_simple(opt, {{"op", "cancel"}, {"id", cancel_id}},
                        "job " + std::to_string(cancel_id) + " cancelled");
    }
    if (app.got_subcommand("pause")) {
      return cmd_simple(opt, {{"op", "pause"}}, "paused: no new calls until kpsctl resume");
    }
    if (app.got_subcommand("resume")) return cmd_simple(opt, {{"op", "resume"}}, "resumed");
    if (*wait) return cmd_wait(opt, wait_ids, timeout_s);
  } catch (const NotPermitted& e) {
    std::cerr << "kpsctl: " << e.what() << "\n";
    return exit_no_perm;
  } catch (const Unreachable& e) {
    std::cerr << "kpsctl: " << e.what() << "\n";
    return exit_unavailable;
  } catch (const std::exception& e) {
    std::cerr << "kpsctl: unexpected reply from kpsd: " << e.what() << "\n";
    return exit_failed;
  }
  return exit_cli_usage;
}

}  // namespace kpsd
