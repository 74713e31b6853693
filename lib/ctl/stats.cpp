// kpsctl stats, wait and version: what kpsd is doing, and waiting for it to finish.
#include "commands.hpp"
#include "control_protocol.hpp"
#include "job.hpp"

#include <boost/json.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

namespace kpsd::ctl {

namespace json = boost::json;

namespace {

std::string fmt_rate(double r) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3g/s", r);
  return buf;
}

}  // namespace

int cmd_stats(const Options& opt, const std::string& batch) {
  ControlClient client(opt.socket);
  StatsRequest req;
  if (!batch.empty()) req.batch = batch;
  auto reply = ask(opt, client, to_json(req));
  if (!reply) return exit_failed;
  if (opt.json()) {
    print_json(*reply);
    return exit_ok;
  }
  const json::object& states = reply->at("states").as_object();
  if (opt.format == Format::csv) {
    std::cout << "state,jobs\n";
    for (JobState s : all_job_states) {
      std::cout << to_string(s) << "," << int_of(states, to_string(s)) << "\n";
    }
    return exit_ok;
  }
  if (auto* b = reply->if_contains("batch"); b && b->is_object()) {
    std::string name = text_of(b->as_object(), "name");
    std::printf("batch %lld%s, created %s\n", static_cast<long long>(int_of(b->as_object(), "id")),
                name.empty() ? "" : (" (" + name + ")").c_str(),
                format_time(int_of(b->as_object(), "created_at")).c_str());
  }
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
  if (auto* batches = reply->if_contains("paused_batches"); batches && batches->is_array()) {
    for (const auto& v : batches->as_array()) {
      const json::object& b = v.as_object();
      std::string name = text_of(b, "name"), detail = text_of(b, "detail");
      std::string reason = text_of(b, "reason");
      if (detail.empty()) {
        detail = reason == "canary" ? "canary running: its first jobs run, the others wait"
                                    : "paused by the operator";
      }
      std::printf("BATCH %lld%s PAUSED (%s): %s; kpsctl resume --batch %lld\n",
                  static_cast<long long>(int_of(b, "id")),
                  name.empty() ? "" : (" (" + name + ")").c_str(), reason.c_str(), detail.c_str(),
                  static_cast<long long>(int_of(b, "id")));
    }
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

namespace {

using Clock = std::chrono::steady_clock;

// What one look at the waited-for jobs found.
struct WaitLook {
  bool done = true;
  bool all_succeeded = true;
  json::object summary;  // "states" or "jobs", as printed at the end
};

// A connection that comes back: kpsd may restart while an operator waits for a batch.
class Reconnecting {
 public:
  explicit Reconnecting(const Options& opt) : opt_(opt) {}
  // The reply, or nullopt once the deadline passes with kpsd away (or a refusal, reported).
  // Throws NotPermitted: waiting does not fix permissions.
  std::optional<json::object> ask_until(const json::object& req, Clock::time_point deadline,
                                        bool& refused) {
    for (;;) {
      try {
        if (!client_) client_.emplace(opt_.socket);
        json::object reply = client_->request(req);
        if (away_) std::cerr << "kpsctl wait: kpsd is back\n";
        away_ = false;
        auto* ok = reply.if_contains("ok");
        if (!ok || !ok->is_bool() || !ok->as_bool()) {
          refused = true;
          fail(opt_, exit_failed, "kpsd refused the request: " + text_of(reply, "error"));
          return std::nullopt;
        }
        return reply;
      } catch (const Unreachable& e) {
        client_.reset();
        if (!away_) {
          std::cerr << "kpsctl wait: " << e.what() << "; waiting for kpsd to come back\n";
        }
        away_ = true;
        if (Clock::now() + std::chrono::seconds(1) >= deadline) {
          last_error_ = e.what();
          return std::nullopt;
        }
        std::this_thread::sleep_for(std::chrono::seconds(1));
      }
    }
  }
  const std::string& last_error() const { return last_error_; }

 private:
  const Options& opt_;
  std::optional<ControlClient> client_;
  bool away_ = false;
  std::string last_error_;
};

// A job that ended this way fails the wait: failed always, cancelled only with --strict (a
// cancel is the operator's own choice, and a batch with one would otherwise never exit 0).
bool fails_wait(JobState s, bool strict) {
  return s == JobState::failed || (strict && s == JobState::cancelled);
}

WaitLook look_at_states(const json::object& states, bool strict) {
  WaitLook look;
  for (JobState s : all_job_states) {
    std::int64_t n = int_of(states, to_string(s));
    if (!is_terminal(s) && n > 0) look.done = false;
    if (fails_wait(s, strict) && n > 0) look.all_succeeded = false;
  }
  look.summary["states"] = states;
  return look;
}

void print_wait_summary(const Options& opt, const WaitLook& look) {
  if (opt.json()) {
    json::object out = look.summary;
    out["ok"] = true;
    out["all_succeeded"] = look.all_succeeded;
    print_json(out);
    return;
  }
  if (auto* jobs = look.summary.if_contains("jobs")) {
    if (opt.format == Format::csv) std::cout << "id,state,reason\n";
    for (const auto& v : jobs->as_array()) {
      const json::object& j = v.as_object();
      if (opt.format == Format::csv) {
        std::cout << int_of(j, "id") << "," << text_of(j, "state") << "," << csv_field(reason_of(j))
                  << "\n";
      } else {
        std::printf("job %lld %s%s\n", static_cast<long long>(int_of(j, "id")),
                    text_of(j, "state").c_str(),
                    reason_of(j).empty() ? "" : (": " + reason_of(j)).c_str());
      }
    }
    return;
  }
  const json::object& states = look.summary.at("states").as_object();
  if (opt.format == Format::csv) std::cout << "state,jobs\n";
  for (JobState s : all_job_states) {
    std::int64_t n = int_of(states, to_string(s));
    if (opt.format == Format::csv) {
      std::cout << to_string(s) << "," << n << "\n";
    } else if (n > 0 || is_terminal(s)) {
      std::printf("%-10s %lld\n", std::string(to_string(s)).c_str(), static_cast<long long>(n));
    }
  }
}

// After a wait that failed: the first 20 failed jobs by id, server and reason, on stderr (the
// counts above are the output; this says where to look).
void name_failures(const Options& opt, const WaitArgs& a,
                   const std::optional<StatsRequest::UnfinishedSince>& bare) {
  constexpr std::int64_t shown = 20;
  ListRequest req;
  req.query.state = JobState::failed;
  req.query.limit = shown;
  if (!a.batch.empty()) req.batch = a.batch;
  if (bare) req.query.after_id = bare->min_id - 1;
  try {
    ControlClient client(opt.socket);
    json::object reply = client.request(to_json(req));
    auto* jobs = reply.if_contains("jobs");
    if (!jobs || !jobs->is_array()) return;
    std::string lines;
    std::int64_t n = 0;
    for (const auto& v : jobs->as_array()) {
      const json::object& j = v.as_object();
      if (bare && int_of(j, "id") > bare->max_id) break;
      lines += "  job " + std::to_string(int_of(j, "id")) + " (" + text_of(j, "server_id") +
               "): " + reason_of(j) + "\n";
      ++n;
    }
    if (n == 0) return;
    std::cerr << "failed"
              << (n == shown ? " (the first 20; kpsctl list --state failed for all)" : "") << ":\n"
              << lines;
  } catch (const std::exception&) {
    // The counts were said; naming is a courtesy that a vanished kpsd may not allow.
  }
}

}  // namespace

int cmd_wait(const Options& opt, const WaitArgs& a) {
  if (!a.ids.empty() && !a.batch.empty()) {
    return fail(opt, exit_cli_usage, "wait: give job ids or --batch, not both");
  }
  Clock::time_point deadline =
      a.timeout_s > 0
          ? Clock::now() + std::chrono::milliseconds(static_cast<std::int64_t>(a.timeout_s * 1000))
          : Clock::time_point::max();
  Reconnecting kpsd(opt);
  bool refused = false;
  auto gone = [&]() {
    if (refused) return exit_failed;
    return fail(opt, exit_unavailable, "wait: " + kpsd.last_error());
  };
  // A bare wait follows the jobs that are unfinished now: failures from before it started are
  // history, and jobs queued after it are someone else's.
  std::optional<StatsRequest::UnfinishedSince> bare_filter;
  if (a.ids.empty() && a.batch.empty()) {
    auto start = kpsd.ask_until(to_json(StatsRequest{}), deadline, refused);
    if (!start) return gone();
    // Nothing unfinished: nothing to wait for (min_id past max_id counts no job).
    std::int64_t max_id = int_of(*start, "max_id");
    std::int64_t min_id =
        start->at("min_unfinished_id").is_null() ? max_id + 1 : int_of(*start, "min_unfinished_id");
    bare_filter = StatsRequest::UnfinishedSince{min_id, max_id, int_of(*start, "now_ms")};
  }
  auto interval = std::chrono::milliseconds(200);
  for (;;) {
    auto asked = Clock::now();
    WaitLook look;
    if (!a.ids.empty()) {
      json::array jobs;
      for (std::int64_t id : a.ids) {
        auto reply = kpsd.ask_until(to_json(ShowRequest{id}), deadline, refused);
        if (!reply) return gone();
        const json::object& j = reply->at("job").as_object();
        auto state = parse_job_state(text_of(j, "state"));
        if (!state || !is_terminal(*state)) look.done = false;
        if (state && fails_wait(*state, a.strict)) look.all_succeeded = false;
        jobs.push_back(j);
      }
      look.summary["jobs"] = std::move(jobs);
    } else {
      // "wait": kpsd only checks whether any is unfinished, and counts once they have all ended.
      StatsRequest req;
      req.wait = true;
      if (!a.batch.empty()) req.batch = a.batch;
      req.unfinished_since = bare_filter;
      auto reply = kpsd.ask_until(to_json(req), deadline, refused);
      if (!reply) return gone();
      auto* waiting = reply->if_contains("waiting");
      if (waiting && waiting->is_bool() && waiting->as_bool()) {
        look.done = false;
      } else {
        look = look_at_states(reply->at("states").as_object(), a.strict);
      }
      if (auto* b = reply->if_contains("batch")) look.summary["batch"] = *b;
    }
    if (look.done) {
      print_wait_summary(opt, look);
      if (!look.all_succeeded && !opt.json() && a.ids.empty()) name_failures(opt, a, bare_filter);
      return look.all_succeeded ? exit_ok : exit_failed;
    }
    if (Clock::now() >= deadline) {
      return fail(opt, exit_failed, "wait: timed out with jobs still running");
    }
    // Counting a big batch takes the daemon a while: look less often the longer it takes.
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - asked);
    interval = std::clamp<std::chrono::milliseconds>(4 * took, std::chrono::milliseconds(200),
                                                     std::chrono::seconds(5));
    std::this_thread::sleep_for(interval);
  }
}

int cmd_version(const Options& opt) {
  json::object out{{"kpsctl", KPSD_VERSION}};
  std::string daemon_error;
  int rc = exit_ok;
  try {
    ControlClient client(opt.socket);
    json::object reply = client.request(to_json(VersionRequest{}));
    if (auto* ok = reply.if_contains("ok"); ok && ok->is_bool() && ok->as_bool()) {
      out["kpsd"] = json::object{{"version", reply.at("version")},
                                 {"schema_version", reply.at("schema_version")},
                                 {"pid", reply.at("pid")}};
    } else {
      // A kpsd older than the version request.
      daemon_error = "kpsd did not say its version: " + text_of(reply, "error");
      rc = exit_failed;
    }
  } catch (const NotPermitted& e) {
    daemon_error = e.what();
    rc = exit_no_perm;
  } catch (const Unreachable& e) {
    daemon_error = e.what();
    rc = exit_unavailable;
  }
  if (opt.json()) {
    out["ok"] = rc == exit_ok;
    if (!daemon_error.empty()) {
      out["error"] = daemon_error;
      out["exit_code"] = rc;
    }
    print_json(out);
    return rc;
  }
  std::cout << "kpsctl " << KPSD_VERSION << "\n";
  if (auto* d = out.if_contains("kpsd")) {
    const json::object& k = d->as_object();
    std::cout << "kpsd   " << text_of(k, "version") << " (database schema "
              << int_of(k, "schema_version") << ", pid " << int_of(k, "pid") << ")\n";
  } else {
    std::cerr << "kpsctl: " << daemon_error << "\n";
  }
  return rc;
}

}  // namespace kpsd::ctl
