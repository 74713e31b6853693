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

bool flag_of(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v && v->is_bool() && v->as_bool();
}

const json::object* object_of(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v && v->is_object() ? &v->as_object() : nullptr;
}

// Every field of the reply as one CSV row (with --no-headers, rows appended by a cron job or
// --watch make a time series): a scraper sees BLOCKED, the paused batches and the store too.
void print_stats_csv(const Options& opt, const json::object& r) {
  const json::object& states = r.at("states").as_object();
  const json::object* blocked = object_of(r, "blocked");
  const json::object* store = object_of(r, "store");
  const json::object* quota = object_of(r, "quota");
  std::string paused_batches;
  if (auto* pb = r.if_contains("paused_batches"); pb && pb->is_array()) {
    for (const auto& b : pb->as_array()) {
      paused_batches += (paused_batches.empty() ? "" : " ") + text_of(b.as_object(), "id") + ":" +
                        text_of(b.as_object(), "reason");
    }
  }
  if (opt.headers) {
    for (JobState s : all_job_states) std::cout << to_string(s) << ",";
    std::cout << "at,total,in_flight,calls_started_per_second,pace_per_second,"
                 "configured_rate_per_second,throttled_share,oldest_queued_ms,paused,"
                 "paused_batches,blocked,blocked_reason,blocked_for_ms,quota_holding,"
                 "store_writable,outcomes_waiting\n";
  }
  for (JobState s : all_job_states) std::cout << int_of(states, to_string(s)) << ",";
  std::cout << format_time(int_of(r, "now_ms")) << "," << int_of(r, "total") << ","
            << int_of(r, "in_flight") << "," << number_of(r, "send_rate_per_second") << ","
            << number_of(r, "rate_per_second") << "," << number_of(r, "configured_rate_per_second")
            << "," << number_of(r, "throttled_share") << "," << text_of(r, "oldest_queued_ms")
            << "," << (flag_of(r, "paused") ? 1 : 0) << "," << csv_field(paused_batches) << ","
            << (blocked ? 1 : 0) << "," << csv_field(blocked ? text_of(*blocked, "reason") : "")
            << "," << (blocked ? text_of(*blocked, "for_ms") : "") << ","
            << (quota && flag_of(*quota, "holding") ? 1 : 0) << ","
            << (store && !flag_of(*store, "writable") ? 0 : 1) << ","
            << (store ? int_of(*store, "outcomes_waiting") : 0) << "\n";
}

void print_paused(const json::object& r) {
  if (flag_of(r, "paused")) std::printf("PAUSED (kpsctl resume to continue)\n");
  auto* batches = r.if_contains("paused_batches");
  if (!batches || !batches->is_array()) return;
  for (const auto& v : batches->as_array()) {
    const json::object& b = v.as_object();
    std::string name = text_of(b, "name"), detail = text_of(b, "detail");
    std::string reason = text_of(b, "reason");
    if (detail.empty()) {
      detail = reason == "canary" ? "canary running: its first jobs run, the others wait"
                                  : "paused by the operator";
    }
    // A detail that already says how to go on (a canary's, a budget's) is not told twice.
    std::string hint = detail.find("kpsctl resume --batch") == std::string::npos
                           ? "; kpsctl resume --batch " + text_of(b, "id")
                           : "";
    std::printf("BATCH %lld%s PAUSED (%s): %s%s\n", static_cast<long long>(int_of(b, "id")),
                name.empty() ? "" : (" (" + name + ")").c_str(), reason.c_str(),
                printable(detail).c_str(), hint.c_str());
  }
}

// Calls started per second is what happened; the pace is what kpsd allows itself (learned
// from 429s, at most the configured rate): an idle kpsd has a pace and starts no calls.
void print_calls(const Options& opt, const json::object& r) {
  double started = number_of(r, "send_rate_per_second");
  double pace = number_of(r, "rate_per_second");
  double configured = number_of(r, "configured_rate_per_second");
  std::printf("calls      %s started; pace %s (%s); 429s %.1f%% of answers in the last minute\n",
              fmt_rate(started).c_str(), pace > 0 ? fmt_rate(pace).c_str() : "none",
              configured > 0 ? ("at most " + fmt_rate(configured)).c_str() : "auto",
              100 * number_of(r, "throttled_share"));
  const json::object* q = object_of(r, "quota");
  if (!q) return;
  std::int64_t window_ms = int_of(*q, "window_ms");
  bool holding = flag_of(*q, "holding");
  if (window_ms > 0) {
    std::printf("quota      about %lld calls per %s window%s\n",
                static_cast<long long>(int_of(*q, "calls")), format_duration_ms(window_ms).c_str(),
                holding ? "; used up: waiting for the window to turn" : "");
  } else if (holding) {
    std::printf("quota      the gateway refuses every call: waiting, one probe at a time\n");
  } else if (opt.wide) {
    std::printf("quota      none seen\n");
  }
}

void print_store(const Options& opt, const json::object& r) {
  if (const json::object* b = object_of(r, "blocked")) {
    std::printf("BLOCKED for %s: %s; calls paused, one probe at a time\n",
                format_duration_ms(int_of(*b, "for_ms")).c_str(), text_of(*b, "reason").c_str());
  }
  const json::object* st = object_of(r, "store");
  if (!st) return;
  if (auto* w = st->if_contains("writable"); w && w->is_bool() && !w->as_bool()) {
    std::printf("STORE UNAVAILABLE for %s: %s; no new calls, %lld outcomes waiting\n",
                format_duration_ms(int_of(*st, "down_ms")).c_str(), text_of(*st, "problem").c_str(),
                static_cast<long long>(int_of(*st, "outcomes_waiting")));
  } else if (opt.wide) {
    std::printf("store      writable; %lld outcomes waiting\n",
                static_cast<long long>(int_of(*st, "outcomes_waiting")));
  }
  if (auto* read = st->if_contains("read_problem"); read && read->is_string()) {
    std::printf("job counts unavailable: %s\n", read->as_string().c_str());
  }
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
  if (opt.format == Format::csv) {
    print_stats_csv(opt, *reply);
    return exit_ok;
  }
  if (const json::object* b = object_of(*reply, "batch")) {
    std::string name = text_of(*b, "name");
    std::printf("batch %lld%s, created %s\n", static_cast<long long>(int_of(*b, "id")),
                name.empty() ? "" : (" (" + name + ")").c_str(),
                format_time(int_of(*b, "created_at")).c_str());
  }
  const json::object& states = reply->at("states").as_object();
  for (JobState s : all_job_states) {
    std::printf("%-10s %lld%s\n", std::string(to_string(s)).c_str(),
                static_cast<long long>(int_of(states, to_string(s))),
                s == JobState::running ? " (claimed: on the wire, or its task followed)" : "");
  }
  std::printf("%-10s %lld\n", "total", static_cast<long long>(int_of(*reply, "total")));
  std::printf("in flight  %lld (HTTP calls on the wire now)\n",
              static_cast<long long>(int_of(*reply, "in_flight")));
  if (auto* oldest = reply->if_contains("oldest_queued_ms"); oldest && !oldest->is_null()) {
    std::printf("oldest queued  %s\n",
                format_duration_ms(int_of(*reply, "oldest_queued_ms")).c_str());
  }
  print_paused(*reply);
  print_calls(opt, *reply);
  print_store(opt, *reply);
  if (opt.wide && flag_of(*reply, "stopping")) std::printf("STOPPING: draining calls in flight\n");
  return exit_ok;
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
    print_error(daemon_error);
  }
  return rc;
}

}  // namespace kpsd::ctl
