// kpsctl list, show, report, batches, prune and reload (retry, cancel, pause: batch_ops.cpp).
#include "ctl/commands.hpp"
#include "ctl/durations.hpp"
#include "model/job.hpp"
#include "protocol/control_protocol.hpp"

#include <boost/json.hpp>

#include <cstdio>
#include <iostream>
#include <unistd.h>

namespace kpsd::ctl {

namespace json = boost::json;

namespace {

// An empty cell of a table reads "-".
std::string dash(std::string text) { return text.empty() ? std::string("-") : text; }

// -o wide adds the task, the next attempt's time (a retry's backoff), port, auth and times.
void print_job_table(const Options& opt, const json::array& jobs) {
  if (opt.headers && opt.wide) {
    std::printf("%-8s %-10s %-4s %-38s %-38s %-16s %-20s %-5s %-8s %-20s %s\n", "ID", "STATE",
                "TRY", "SERVER", "TASK_ID", "TASK_STATUS", "NEXT_ATTEMPT", "PORT", "AUTH",
                "UPDATED", "ERROR");
  } else if (opt.headers) {
    std::printf("%-8s %-10s %-4s %-38s %-16s %s\n", "ID", "STATE", "TRY", "SERVER", "TASK_STATUS",
                "ERROR");
  }
  for (const auto& v : jobs) {
    const json::object& j = v.as_object();
    if (opt.wide) {
      std::string state = text_of(j, "state");
      bool waiting = state == "queued" || state == "retrying";
      std::string next = !waiting             ? "-"
                         : j.contains("held") ? "held (batch paused)"
                                              : format_time(int_of(j, "next_attempt_at"));
      std::printf("%-8lld %-10s %-4lld %-38s %-38s %-16s %-20s %-5s %-8s %-20s %s\n",
                  static_cast<long long>(int_of(j, "id")), state.c_str(),
                  static_cast<long long>(int_of(j, "attempts")), text_of(j, "server_id").c_str(),
                  dash(text_of(j, "task_id")).c_str(), dash(text_of(j, "task_status")).c_str(),
                  next.c_str(), dash(text_of(j, "port")).c_str(),
                  dash(text_of(j, "auth_type")).c_str(),
                  format_time(int_of(j, "updated_at")).c_str(), reason_of(j).c_str());
      continue;
    }
    std::printf("%-8lld %-10s %-4lld %-38s %-16s %s\n", static_cast<long long>(int_of(j, "id")),
                text_of(j, "state").c_str(), static_cast<long long>(int_of(j, "attempts")),
                text_of(j, "server_id").c_str(), text_of(j, "task_status").c_str(),
                reason_of(j).c_str());
  }
}

// One CSV row per job: what `report` and `list --output csv` print.
constexpr const char* job_csv_header =
    "id,server_id,state,attempts,task_id,task_status,reason,created_at,updated_at,maybe_done\n";
void print_job_csv(const json::array& jobs) {
  for (const auto& v : jobs) {
    const json::object& j = v.as_object();
    std::cout << int_of(j, "id") << "," << csv_field(text_of(j, "server_id")) << ","
              << text_of(j, "state") << "," << int_of(j, "attempts") << ","
              << csv_field(text_of(j, "task_id")) << "," << csv_field(text_of(j, "task_status"))
              << "," << csv_field(reason_of(j)) << "," << format_time(int_of(j, "created_at"))
              << "," << format_time(int_of(j, "updated_at")) << ","
              << (text_of(j, "maybe_done") == "true" ? 1 : 0) << "\n";
  }
}

}  // namespace

int cmd_list(const Options& opt, const ListArgs& a) {
  ControlClient client(opt.socket);
  ListRequest req;
  req.query.limit = a.limit;
  req.query.after_id = a.after;
  if (!a.state.empty()) req.query.state = parse_job_state(a.state);  // checked by the CLI
  if (!a.server.empty()) req.query.server_id = a.server;
  if (!a.batch.empty()) req.batch = a.batch;
  req.query.maybe_done = a.maybe_done;
  auto reply = ask(opt, client, to_json(req));
  if (!reply) return exit_failed;
  if (opt.format == Format::json) {
    print_json(*reply);
  } else if (opt.format == Format::csv) {
    if (opt.headers) std::cout << job_csv_header;
    print_job_csv(reply->at("jobs").as_array());
  } else if (reply->at("jobs").as_array().empty()) {
    std::cerr << "No jobs match.\n";  // not a bare header on stdout, for pipelines too
  } else {
    print_job_table(opt, reply->at("jobs").as_array());
    // A hint for the person, on stderr: stdout stays the table a pipeline reads.
    if (reply->contains("next_after_id")) {
      std::cerr << "(more: --after " << int_of(*reply, "next_after_id") << ")\n";
    }
  }
  return exit_ok;
}

int cmd_report(const Options& opt, const std::string& batch, bool maybe_done) {
  ControlClient client(opt.socket);
  // Every job of the batch, a page at a time, streamed: a million jobs need one page of memory.
  std::int64_t after = 0;
  bool first = true;
  for (;;) {
    ListRequest req;
    req.query.limit = 10000;
    req.query.after_id = after;
    if (!batch.empty()) req.batch = batch;
    req.query.maybe_done = maybe_done;
    auto reply = ask(opt, client, to_json(req));
    if (!reply) {
      if (opt.json() && !first) std::cout << "]}\n";  // a partial report stays one document
      return exit_failed;
    }
    const json::array& jobs = reply->at("jobs").as_array();
    if (opt.json()) {
      if (first) std::cout << "{\"ok\":true,\"jobs\":[";
      for (const auto& v : jobs) {
        const json::object& j = v.as_object();
        std::cout << (first ? "" : ",")
                  << to_json_text(json::object{{"id", j.at("id")},
                                               {"server_id", j.at("server_id")},
                                               {"state", j.at("state")},
                                               {"attempts", j.at("attempts")},
                                               {"task_id", j.at("task_id")},
                                               {"task_status", j.at("task_status")},
                                               {"reason", reason_of(j)},
                                               {"maybe_done", j.at("maybe_done")},
                                               {"created_at", j.at("created_at")},
                                               {"updated_at", j.at("updated_at")}});
        first = false;
      }
      first = false;
    } else {
      if (first && opt.headers) std::cout << job_csv_header;
      first = false;
      print_job_csv(jobs);
    }
    if (!reply->contains("next_after_id")) break;
    after = int_of(*reply, "next_after_id");
  }
  if (opt.json()) std::cout << "]}\n";
  return exit_ok;
}

namespace {

void print_batch_row(const Options& opt, const json::object& b) {
  const json::object& st = b.at("states").as_object();
  std::int64_t unfinished = int_of(st, "queued") + int_of(st, "running") + int_of(st, "retrying") +
                            int_of(st, "delivered");
  if (opt.format == Format::csv) {
    std::cout << int_of(b, "id") << "," << csv_field(text_of(b, "name")) << ","
              << format_time(int_of(b, "created_at")) << "," << int_of(b, "total") << ","
              << unfinished << "," << int_of(st, "succeeded") << "," << int_of(st, "failed") << ","
              << int_of(st, "cancelled") << "," << text_of(b, "paused") << ","
              << (b.contains("paused_at") ? format_time(int_of(b, "paused_at")) : "") << ","
              << csv_field(text_of(b, "paused_detail")) << "," << text_of(b, "canary") << ","
              << text_of(b, "max_failures") << "\n";
    return;
  }
  std::string paused = dash(text_of(b, "paused"));
  if (opt.wide) {
    char extra[96];
    std::snprintf(extra, sizeof(extra), "%-7s %-7s %-13s ", paused.c_str(),
                  dash(text_of(b, "canary")).c_str(), dash(text_of(b, "max_failures")).c_str());
    paused = extra + dash(text_of(b, "paused_detail"));
  }
  std::printf("%-6lld %-24s %-20s %8lld %10lld %9lld %6lld %9lld %s\n",
              static_cast<long long>(int_of(b, "id")), dash(text_of(b, "name")).c_str(),
              format_time(int_of(b, "created_at")).c_str(),
              static_cast<long long>(int_of(b, "total")), static_cast<long long>(unfinished),
              static_cast<long long>(int_of(st, "succeeded")),
              static_cast<long long>(int_of(st, "failed")),
              static_cast<long long>(int_of(st, "cancelled")), paused.c_str());
}

}  // namespace

int cmd_batches(const Options& opt, int limit) {
  ControlClient client(opt.socket);
  auto reply = ask(opt, client, to_json(BatchesRequest{limit}));
  if (!reply) return exit_failed;
  if (opt.json()) {
    print_json(*reply);
    return exit_ok;
  }
  const json::array& batches = reply->at("batches").as_array();
  if (batches.empty() && opt.format != Format::csv) {
    std::cerr << "No batches yet.\n";
    return exit_ok;
  }
  if (opt.format == Format::csv) {
    if (opt.headers) {
      std::cout << "id,name,created_at,total,unfinished,succeeded,failed,cancelled,paused,"
                   "paused_at,paused_detail,canary,max_failures\n";
    }
  } else if (opt.headers) {
    std::printf("%-6s %-24s %-20s %8s %10s %9s %6s %9s %s\n", "ID", "NAME", "CREATED", "JOBS",
                "UNFINISHED", "SUCCEEDED", "FAILED", "CANCELLED",
                opt.wide ? "PAUSED  CANARY  MAX_FAILURES  WHY" : "PAUSED");
  }
  for (const auto& v : batches) print_batch_row(opt, v.as_object());
  return exit_ok;
}

int cmd_show(const Options& opt, std::int64_t id) {
  if (opt.format == Format::csv) {
    return fail(opt, exit_cli_usage, "show: --output csv is not offered (table or json)");
  }
  ControlClient client(opt.socket);
  auto reply = ask(opt, client, to_json(ShowRequest{id}));
  if (!reply) return exit_failed;
  if (opt.json()) {
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
  // The rows below, all of them; the budget (max_attempts) counts those since the last retry.
  const json::array& attempts = reply->at("attempts").as_array();
  std::string counted = std::to_string(attempts.size());
  if (static_cast<std::int64_t>(attempts.size()) != int_of(j, "attempts")) {
    counted += " (" + text_of(j, "attempts") + " since its last retry)";
  }
  row("attempts", counted);
  if (j.contains("held")) row("held", "yes: its batch is paused (kpsctl resume --batch)");
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
  std::printf("\nattempts:\n%-3s %-20s %-6s %-8s %-38s %s\n", "N", "STARTED", "HTTP", "LATENCY",
              "REQUEST_ID", "RESULT");
  for (const auto& v : attempts) {
    const json::object& at = v.as_object();
    std::string result = text_of(at, "delivery_status");
    if (!text_of(at, "task_id").empty()) result += " task " + text_of(at, "task_id");
    std::string err = text_of(at, "error_code") + " " + text_of(at, "error_msg");
    if (err != " ") result += (result.empty() ? "" : "; ") + err;
    if (!text_of(at, "look").empty()) result += (result.empty() ? "" : "; ") + text_of(at, "look");
    std::string latency = text_of(at, "latency_ms");
    std::printf("%-3s %-20s %-6s %-8s %-38s %s\n", text_of(at, "n").c_str(),
                format_time(int_of(at, "started_at")).c_str(), text_of(at, "http_status").c_str(),
                latency.empty() ? "-" : (latency + "ms").c_str(), text_of(at, "request_id").c_str(),
                result.c_str());
  }
  return exit_ok;
}

namespace {

// --dry-run: what would go, per batch and state, and in all.
int print_prune_preview(const Options& opt, const json::object& reply) {
  if (opt.json()) {
    print_json(reply);
    return exit_ok;
  }
  if (opt.headers) std::printf("%-8s %-10s %10s\n", "BATCH", "STATE", "JOBS");
  for (const auto& v : reply.at("counts").as_array()) {
    const json::object& c = v.as_object();
    std::int64_t batch = int_of(c, "batch_id");
    std::printf("%-8s %-10s %10lld\n", batch ? std::to_string(batch).c_str() : "-",
                text_of(c, "state").c_str(), static_cast<long long>(int_of(c, "jobs")));
  }
  std::cout << "would prune " << int_of(reply, "would_prune")
            << " finished jobs (and their attempts) that ended before "
            << format_time(int_of(reply, "before_ms")) << "; nothing deleted (--dry-run)\n";
  return exit_ok;
}

}  // namespace

int cmd_prune(const Options& opt, const PruneArgs& a) {
  auto ms = parse_duration_ms(a.older_than);
  if (!ms) {
    return fail(opt, exit_cli_usage,
                "prune: --older-than `" + a.older_than +
                    "` is not a duration (a whole number and s, m, h, d or w: 7d, 12h)");
  }
  // 30s is one keystroke from 30d: a young cut deletes what an operator may still report on.
  if (*ms < 3600 * 1000 && !a.force && !a.dry_run) {
    return fail(opt, exit_cli_usage,
                "prune: --older-than `" + a.older_than +
                    "` is under an hour: jobs that ended that recently may still be wanted (a "
                    "report, a retry); check with --dry-run, then add --force if you mean it");
  }
  ControlClient client(opt.socket);
  // kpsd prunes for a while per request and says whether more is left: ask until it is not,
  // with the cut the first request fixed.
  std::int64_t pruned = 0;
  std::int64_t before = 0;
  for (;;) {
    PruneRequest req;
    if (before > 0) {
      req.before_ms = before;
    } else {
      req.older_than_ms = *ms;
    }
    if (!a.state.empty()) req.state = parse_job_state(a.state);  // checked by the CLI
    if (!a.batch.empty()) req.batch = a.batch;
    req.dry_run = a.dry_run;
    req.force = a.force;
    auto reply = ask(opt, client, to_json(req));
    if (!reply) return exit_failed;
    if (a.dry_run) return print_prune_preview(opt, *reply);
    pruned += int_of(*reply, "pruned");
    before = int_of(*reply, "before_ms");
    auto* more = reply->if_contains("more");
    if (!more || !more->is_bool() || !more->as_bool()) break;
    if (::isatty(STDERR_FILENO)) std::cerr << "\rpruned " << pruned << " jobs..." << std::flush;
  }
  if (opt.json()) {
    print_json(json::object{{"ok", true}, {"pruned", pruned}, {"before_ms", before}});
  } else {
    std::cout << "pruned " << pruned << " finished jobs (and their attempts) that ended before "
              << format_time(before) << "\n";
  }
  return exit_ok;
}

int cmd_reload(const Options& opt) {
  ControlClient client(opt.socket);
  json::object reply = client.request(to_json(ReloadRequest{}));
  auto* ok = reply.if_contains("ok");
  bool applied_all = ok && ok->is_bool() && ok->as_bool();
  if (applied_all && opt.json()) {
    print_json(reply);
    return exit_ok;
  }
  auto list_of = [&reply](const char* key) {
    std::string out;
    if (auto* items = reply.if_contains(key); items && items->is_array()) {
      for (const auto& item : items->as_array()) {
        if (item.is_string()) out += (out.empty() ? "" : ", ") + std::string(item.as_string());
      }
    }
    return out;
  };
  if (!opt.json()) {
    std::string applied = list_of("applied"), need_restart = list_of("need_restart");
    if (!applied.empty()) std::cout << "applied: " << applied << "\n";
    if (!need_restart.empty()) {
      std::cout << "needs a restart (systemctl restart kpsd): " << need_restart << "\n";
    }
    if (applied_all) std::cout << "reloaded\n";
  }
  // Not applied (or not all of it): 78, EX_CONFIG, so that `systemctl reload` fails with it.
  if (!applied_all) return fail(opt, exit_config, "reload: " + text_of(reply, "error"));
  return exit_ok;
}

}  // namespace kpsd::ctl
