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
void print_job_table(const Options& opt, const std::vector<Job>& jobs) {
  if (opt.headers && opt.wide) {
    std::printf("%-8s %-10s %-4s %-38s %-38s %-16s %-20s %-5s %-8s %-20s %s\n", "ID", "STATE",
                "TRY", "SERVER", "TASK_ID", "TASK_STATUS", "NEXT_ATTEMPT", "PORT", "AUTH",
                "UPDATED", "ERROR");
  } else if (opt.headers) {
    std::printf("%-8s %-10s %-4s %-38s %-16s %s\n", "ID", "STATE", "TRY", "SERVER", "TASK_STATUS",
                "ERROR");
  }
  for (const Job& j : jobs) {
    std::string state(to_string(j.state));
    if (opt.wide) {
      bool waiting = j.state == JobState::queued || j.state == JobState::retrying;
      std::string next = !waiting ? "-"
                         : j.held ? "held (batch paused)"
                                  : format_time(j.next_attempt_at);
      std::printf("%-8lld %-10s %-4lld %-38s %-38s %-16s %-20s %-5s %-8s %-20s %s\n",
                  static_cast<long long>(j.id), state.c_str(), static_cast<long long>(j.attempts),
                  printable(j.server_id).c_str(), dash(text_of(j.task_id)).c_str(),
                  dash(text_of(j.task_status)).c_str(), next.c_str(), dash(text_of(j.port)).c_str(),
                  dash(text_of(j.auth_type)).c_str(), format_time(j.updated_at).c_str(),
                  reason_of(j).c_str());
      continue;
    }
    std::printf("%-8lld %-10s %-4lld %-38s %-16s %s\n", static_cast<long long>(j.id), state.c_str(),
                static_cast<long long>(j.attempts), printable(j.server_id).c_str(),
                text_of(j.task_status).c_str(), reason_of(j).c_str());
  }
}

// One CSV row per job: what `report` and `list --output csv` print.
constexpr const char* job_csv_header =
    "id,server_id,state,attempts,task_id,task_status,reason,created_at,updated_at,maybe_done\n";
void print_job_csv(const std::vector<Job>& jobs) {
  for (const Job& j : jobs) {
    std::cout << j.id << "," << csv_field(printable(j.server_id)) << "," << to_string(j.state)
              << "," << j.attempts << "," << csv_field(text_of(j.task_id)) << ","
              << csv_field(text_of(j.task_status)) << "," << csv_field(reason_of(j)) << ","
              << format_time(j.created_at) << "," << format_time(j.updated_at) << ","
              << (j.maybe_done ? 1 : 0) << "\n";
  }
}

json::value or_null(const std::optional<std::string>& v) {
  return v ? json::value(*v) : json::value(nullptr);
}

// One job of `report --output json`: the CSV's columns, the reason as one text.
json::object report_json(const Job& j) {
  return json::object{{"id", j.id},
                      {"server_id", j.server_id},
                      {"state", to_string(j.state)},
                      {"attempts", j.attempts},
                      {"task_id", or_null(j.task_id)},
                      {"task_status", or_null(j.task_status)},
                      {"reason", reason_of(j)},
                      {"maybe_done", j.maybe_done},
                      {"created_at", j.created_at},
                      {"updated_at", j.updated_at}};
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
  json::object raw;
  auto reply = ask_for<ListReply>(opt, client, to_json(req), &raw);
  if (!reply) return exit_failed;
  if (opt.format == Format::json) {
    print_json(raw);
  } else if (opt.format == Format::csv) {
    if (opt.headers) std::cout << job_csv_header;
    print_job_csv(reply->jobs);
  } else if (reply->jobs.empty()) {
    std::cerr << "No jobs match.\n";  // not a bare header on stdout, for pipelines too
  } else {
    print_job_table(opt, reply->jobs);
    // A hint for the person, on stderr: stdout stays the table a pipeline reads.
    if (reply->next_after_id) std::cerr << "(more: --after " << *reply->next_after_id << ")\n";
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
    auto reply = ask_for<ListReply>(opt, client, to_json(req));
    if (!reply) {
      if (opt.json() && !first) std::cout << "]}\n";  // a partial report stays one document
      return exit_failed;
    }
    const std::vector<Job>& jobs = reply->jobs;
    if (opt.json()) {
      if (first) std::cout << "{\"ok\":true,\"jobs\":[";
      for (const Job& j : jobs) {
        std::cout << (first ? "" : ",") << to_json_text(report_json(j));
        first = false;
      }
      first = false;
    } else {
      if (first && opt.headers) std::cout << job_csv_header;
      first = false;
      print_job_csv(jobs);
    }
    if (!reply->next_after_id) break;
    after = *reply->next_after_id;
  }
  if (opt.json()) std::cout << "]}\n";
  return exit_ok;
}

namespace {

void print_batch_row(const Options& opt, const Batch& b) {
  auto n = [&b](JobState s) { return count_of(b.states, s); };
  std::int64_t total = 0;
  for (const auto& [state, count] : b.states) total += count;
  std::int64_t unfinished =
      n(JobState::queued) + n(JobState::running) + n(JobState::retrying) + n(JobState::delivered);
  std::string paused_reason = b.paused ? std::string(to_string(*b.paused)) : std::string();
  std::string budget = printable(describe_max_failures(b.brakes));
  if (opt.format == Format::csv) {
    std::cout << b.id << "," << csv_field(text_of(b.name)) << "," << format_time(b.created_at)
              << "," << total << "," << unfinished << "," << n(JobState::succeeded) << ","
              << n(JobState::failed) << "," << n(JobState::cancelled) << "," << paused_reason << ","
              << (b.paused ? format_time(b.paused_at) : "") << ","
              << csv_field(text_of(b.paused_detail)) << "," << text_of(b.brakes.canary) << ","
              << budget << "\n";
    return;
  }
  std::string paused = dash(paused_reason);
  if (opt.wide) {
    char extra[96];
    std::snprintf(extra, sizeof(extra), "%-7s %-7s %-13s ", paused.c_str(),
                  dash(text_of(b.brakes.canary)).c_str(), dash(budget).c_str());
    paused = extra + dash(text_of(b.paused_detail));
  }
  std::printf("%-6lld %-24s %-20s %8lld %10lld %9lld %6lld %9lld %s\n",
              static_cast<long long>(b.id), dash(text_of(b.name)).c_str(),
              format_time(b.created_at).c_str(), static_cast<long long>(total),
              static_cast<long long>(unfinished), static_cast<long long>(n(JobState::succeeded)),
              static_cast<long long>(n(JobState::failed)),
              static_cast<long long>(n(JobState::cancelled)), paused.c_str());
}

}  // namespace

int cmd_batches(const Options& opt, int limit) {
  ControlClient client(opt.socket);
  json::object raw;
  auto reply = ask_for<BatchesReply>(opt, client, to_json(BatchesRequest{limit}), &raw);
  if (!reply) return exit_failed;
  if (opt.json()) {
    print_json(raw);
    return exit_ok;
  }
  const std::vector<Batch>& batches = reply->batches;
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
  for (const Batch& b : batches) print_batch_row(opt, b);
  return exit_ok;
}

namespace {

void print_attempt_row(const Attempt& at) {
  std::string result = text_of(at.delivery_status);
  if (!text_of(at.task_id).empty()) result += " task " + text_of(at.task_id);
  std::string err = text_of(at.error_code) + " " + text_of(at.error_msg);
  if (err != " ") result += (result.empty() ? "" : "; ") + err;
  if (!text_of(at.look).empty()) result += (result.empty() ? "" : "; ") + text_of(at.look);
  std::string latency = text_of(at.latency_ms);
  std::printf("%-3s %-20s %-6s %-8s %-38s %s\n", std::to_string(at.n).c_str(),
              format_time(at.started_at).c_str(), text_of(at.http_status).c_str(),
              latency.empty() ? "-" : (latency + "ms").c_str(), text_of(at.request_id).c_str(),
              result.c_str());
}

}  // namespace

int cmd_show(const Options& opt, std::int64_t id) {
  if (opt.format == Format::csv) {
    return fail(opt, exit_cli_usage, "show: --output csv is not offered (table or json)");
  }
  ControlClient client(opt.socket);
  json::object raw;
  auto reply = ask_for<ShowReply>(opt, client, to_json(ShowRequest{id}), &raw);
  if (!reply) return exit_failed;
  if (opt.json()) {
    print_json(raw);
    return exit_ok;
  }
  const Job& j = reply->job;
  auto row = [](const char* k, const std::string& v) {
    std::printf("%s: %s\n", k, v.empty() ? "-" : v.c_str());
  };
  row("id", std::to_string(j.id));
  row("server_id", printable(j.server_id));
  row("state", std::string(to_string(j.state)));
  // The rows below, all of them; the budget (max_attempts) counts those since the last retry.
  const std::vector<Attempt>& attempts = reply->attempts;
  std::string counted = std::to_string(attempts.size());
  if (static_cast<std::int64_t>(attempts.size()) != j.attempts) {
    counted += " (" + std::to_string(j.attempts) + " since its last retry)";
  }
  row("attempts", counted);
  if (j.held) row("held", "yes: its batch is paused (kpsctl resume --batch)");
  row("task_id", text_of(j.task_id));
  row("delivery_status", text_of(j.delivery_status));
  row("task_status", text_of(j.task_status));
  row("error_code", text_of(j.error_code));
  row("error_msg", text_of(j.error_msg));
  if (!text_of(j.task_error_code).empty() || !text_of(j.task_error_msg).empty()) {
    row("task_error_code", text_of(j.task_error_code));  // the server's reason for FAILED_*
    row("task_error_msg", text_of(j.task_error_msg));
  }
  row("port", text_of(j.port));
  std::string auth = text_of(j.auth_type);
  row("auth", auth.empty() ? "none (reset form)" : auth + " (redacted)");
  row("created_at", format_time(j.created_at));
  row("updated_at", format_time(j.updated_at));
  std::printf("\nattempts:\n%-3s %-20s %-6s %-8s %-38s %s\n", "N", "STARTED", "HTTP", "LATENCY",
              "REQUEST_ID", "RESULT");
  for (const Attempt& at : attempts) print_attempt_row(at);
  return exit_ok;
}

namespace {

// --dry-run: what would go, per batch and state, and in all.
int print_prune_preview(const Options& opt, const json::object& raw,
                        const PrunePreviewReply& reply) {
  if (opt.json()) {
    print_json(raw);
    return exit_ok;
  }
  if (opt.headers) std::printf("%-8s %-10s %10s\n", "BATCH", "STATE", "JOBS");
  for (const PruneCount& c : reply.counts) {
    std::printf("%-8s %-10s %10lld\n", c.batch_id ? std::to_string(c.batch_id).c_str() : "-",
                std::string(to_string(c.state)).c_str(), static_cast<long long>(c.jobs));
  }
  std::cout << "would prune " << reply.would_prune
            << " finished jobs (and their attempts) that ended before "
            << format_time(reply.before_ms) << "; nothing deleted (--dry-run)\n";
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
    if (a.dry_run) {
      json::object raw;
      auto preview = ask_for<PrunePreviewReply>(opt, client, to_json(req), &raw);
      return preview ? print_prune_preview(opt, raw, *preview) : exit_failed;
    }
    auto reply = ask_for<PruneReply>(opt, client, to_json(req));
    if (!reply) return exit_failed;
    pruned += reply->pruned;
    before = reply->before_ms;
    if (!reply->more) break;
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
  json::object raw = client.request(to_json(ReloadRequest{}));
  auto parsed_envelope = parse_reply<ReplyEnvelope>(raw);
  if (!parsed_envelope) return fail(opt, exit_failed, bad_reply(parsed_envelope.error().message));
  const ReplyEnvelope& envelope = *parsed_envelope;
  // A refusal before any reload ("not available here") has no lists: none are printed.
  ReloadReply reply;
  if (auto parsed = parse_reply<ReloadReply>(raw)) {
    reply = std::move(*parsed);
  } else if (envelope.ok) {
    return fail(opt, exit_failed, bad_reply(parsed.error().message));
  }
  if (envelope.ok && opt.json()) {
    print_json(raw);
    return exit_ok;
  }
  auto list_of = [](const std::vector<std::string>& items) {
    std::string out;
    for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
    return out;
  };
  if (!opt.json()) {
    std::string applied = list_of(reply.applied), need_restart = list_of(reply.need_restart);
    if (!applied.empty()) std::cout << "applied: " << applied << "\n";
    if (!need_restart.empty()) {
      std::cout << "needs a restart (systemctl restart kpsd): " << need_restart << "\n";
    }
    if (envelope.ok) std::cout << "reloaded\n";
  }
  // Not applied (or not all of it): 78, EX_CONFIG, so that `systemctl reload` fails with it.
  if (!envelope.ok) return fail(opt, exit_config, "reload: " + printable(envelope.error));
  return exit_ok;
}

}  // namespace kpsd::ctl
