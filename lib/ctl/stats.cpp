// kpsctl stats and version: what kpsd is doing, and which kpsd it is.
#include "ctl/commands.hpp"
#include "ctl/durations.hpp"
#include "model/job.hpp"
#include "protocol/control_protocol.hpp"

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

std::int64_t total_of(const std::map<JobState, std::int64_t>& states) {
  std::int64_t total = 0;
  for (const auto& [state, n] : states) total += n;
  return total;
}

// Every field of the reply as one CSV row (with --no-headers, rows appended by a cron job or
// --watch make a time series): a scraper sees BLOCKED, the paused batches and the store too.
void print_stats_csv(const Options& opt, const StatsReply& reply) {
  const StatsView& r = reply.view;
  std::string paused_batches;
  for (const PausedBatchView& b : r.paused_batches) {
    paused_batches +=
        (paused_batches.empty() ? "" : " ") + std::to_string(b.id) + ":" + printable(b.reason);
  }
  if (opt.headers) {
    for (JobState s : all_job_states) std::cout << to_string(s) << ",";
    std::cout << "at,total,in_flight,calls_started_per_second,pace_per_second,"
                 "configured_rate_per_second,throttled_share,oldest_queued_ms,paused,"
                 "paused_batches,blocked,blocked_reason,blocked_for_ms,quota_holding,"
                 "store_writable,outcomes_waiting\n";
  }
  for (JobState s : all_job_states) std::cout << count_of(r.states, s) << ",";
  const auto& blocked = r.blocked;
  std::cout << format_time(reply.now_ms) << "," << total_of(r.states) << "," << r.in_flight << ","
            << r.send_rate_per_second << "," << r.rate_per_second << ","
            << r.configured_rate_per_second << "," << r.throttled_share << ","
            << text_of(r.oldest_queued_ms) << "," << (r.paused ? 1 : 0) << ","
            << csv_field(paused_batches) << "," << (blocked ? 1 : 0) << ","
            << csv_field(blocked ? printable(blocked->reason) : "") << ","
            << (blocked ? std::to_string(blocked->for_ms) : "") << "," << (r.quota.holding ? 1 : 0)
            << "," << (r.store.writable ? 1 : 0) << "," << r.store.outcomes_waiting << "\n";
}

void print_paused(const StatsView& r) {
  if (r.paused) std::printf("PAUSED (kpsctl resume to continue)\n");
  for (const PausedBatchView& b : r.paused_batches) {
    std::string name = text_of(b.name), detail = text_of(b.detail);
    std::string reason = printable(b.reason);
    if (detail.empty()) {
      detail = reason == "canary" ? "canary running: its first jobs run, the others wait"
                                  : "paused by the operator";
    }
    // A detail that already says how to go on (a canary's, a budget's) is not told twice.
    std::string hint = detail.find("kpsctl resume --batch") == std::string::npos
                           ? "; kpsctl resume --batch " + std::to_string(b.id)
                           : "";
    std::printf("BATCH %lld%s PAUSED (%s): %s%s\n", static_cast<long long>(b.id),
                name.empty() ? "" : (" (" + name + ")").c_str(), reason.c_str(),
                printable(detail).c_str(), hint.c_str());
  }
}

// Calls started per second is what happened; the pace is what kpsd allows itself (learned
// from 429s, at most the configured rate): an idle kpsd has a pace and starts no calls.
void print_calls(const Options& opt, const StatsView& r) {
  double started = r.send_rate_per_second;
  double pace = r.rate_per_second;
  double configured = r.configured_rate_per_second;
  std::printf("calls      %s started; pace %s (%s); 429s %.1f%% of answers in the last minute\n",
              fmt_rate(started).c_str(), pace > 0 ? fmt_rate(pace).c_str() : "none",
              configured > 0 ? ("at most " + fmt_rate(configured)).c_str() : "auto",
              100 * r.throttled_share);
  const StatsView::Quota& q = r.quota;
  if (q.window_ms > 0) {
    std::printf("quota      about %lld calls per %s window%s\n", static_cast<long long>(q.calls),
                format_duration_ms(q.window_ms).c_str(),
                q.holding ? "; used up: waiting for the window to turn" : "");
  } else if (q.holding) {
    std::printf("quota      the gateway refuses every call: waiting, one probe at a time\n");
  } else if (opt.wide) {
    std::printf("quota      none seen\n");
  }
}

void print_store(const Options& opt, const StatsView& r) {
  if (const auto& b = r.blocked) {
    std::printf("BLOCKED for %s: %s; calls paused, one probe at a time\n",
                format_duration_ms(b->for_ms).c_str(), printable(b->reason).c_str());
  }
  const StatsView::Store& st = r.store;
  if (!st.writable) {
    std::printf("STORE UNAVAILABLE for %s: %s; no new calls, %lld outcomes waiting\n",
                format_duration_ms(st.down_ms.value_or(0)).c_str(), text_of(st.problem).c_str(),
                static_cast<long long>(st.outcomes_waiting));
  } else if (opt.wide) {
    std::printf("store      writable; %lld outcomes waiting\n",
                static_cast<long long>(st.outcomes_waiting));
  }
  if (st.read_problem) std::printf("job counts unavailable: %s\n", st.read_problem->c_str());
}

}  // namespace

int cmd_stats(const Options& opt, const std::string& batch) {
  ControlClient client(opt.socket);
  StatsRequest req;
  if (!batch.empty()) req.batch = batch;
  json::object raw;
  auto reply = ask_for<StatsReply>(opt, client, to_json(req), &raw);
  if (!reply) return exit_failed;
  if (opt.json()) {
    print_json(raw);
    return exit_ok;
  }
  if (opt.format == Format::csv) {
    print_stats_csv(opt, *reply);
    return exit_ok;
  }
  const StatsView& r = reply->view;
  if (const auto& b = reply->batch) {
    std::string name = text_of(b->name);
    std::printf("batch %lld%s, created %s\n", static_cast<long long>(b->id),
                name.empty() ? "" : (" (" + name + ")").c_str(),
                format_time(b->created_at).c_str());
  }
  for (JobState s : all_job_states) {
    std::printf("%-10s %lld%s\n", std::string(to_string(s)).c_str(),
                static_cast<long long>(count_of(r.states, s)),
                s == JobState::running ? " (claimed: on the wire, or its task followed)" : "");
  }
  std::printf("%-10s %lld\n", "total", static_cast<long long>(total_of(r.states)));
  std::printf("in flight  %lld (HTTP calls on the wire now)\n",
              static_cast<long long>(r.in_flight));
  if (r.oldest_queued_ms) {
    std::printf("oldest queued  %s\n", format_duration_ms(*r.oldest_queued_ms).c_str());
  }
  print_paused(r);
  print_calls(opt, r);
  print_store(opt, r);
  if (opt.wide && r.stopping) std::printf("STOPPING: draining calls in flight\n");
  return exit_ok;
}

int cmd_version(const Options& opt) {
  json::object out{{"kpsctl", KPSD_VERSION}};
  std::optional<VersionReply> daemon;
  std::string daemon_error;
  int rc = exit_ok;
  try {
    ControlClient client(opt.socket);
    json::object reply = client.request(to_json(VersionRequest{}));
    auto envelope = parse_reply<ReplyEnvelope>(reply);
    VersionReply version;
    std::string why = envelope ? "" : envelope.error().message;
    if (envelope && envelope->ok) {
      if (auto parsed = parse_reply<VersionReply>(reply)) {
        version = *parsed;
      } else {
        why = parsed.error().message;
      }
    }
    if (!why.empty()) {
      daemon_error = bad_reply(why);
      rc = exit_failed;
    } else if (envelope->ok) {
      out["kpsd"] = json::object{{"version", version.version},
                                 {"schema_version", version.schema_version},
                                 {"pid", version.pid}};
      daemon = version;
    } else {
      // A kpsd older than the version request.
      daemon_error = "kpsd did not say its version: " + printable(envelope->error);
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
  if (daemon) {
    std::cout << "kpsd   " << printable(daemon->version) << " (database schema "
              << daemon->schema_version << ", pid " << daemon->pid << ")\n";
  } else {
    print_error(daemon_error);
  }
  return rc;
}

}  // namespace kpsd::ctl
