#include "kpsctl.hpp"

#include "commands.hpp"
#include "control_protocol.hpp"

#include <CLI/CLI.hpp>

#include <iostream>

namespace kpsd {

using namespace kpsd::ctl;

namespace {

const std::vector<std::string> job_states{"queued",    "running", "retrying", "delivered",
                                          "succeeded", "failed",  "cancelled"};

// The format asked for on the command line, found before CLI11 parses it, so that a usage
// error under --json is JSON too.
Format format_in(int argc, char** argv) {
  Format f = Format::table;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--json" || arg == "--output=json" ||
        (arg == "--output" && i + 1 < argc && std::string_view(argv[i + 1]) == "json")) {
      f = Format::json;
    }
  }
  return f;
}

}  // namespace

int run_kpsctl(int argc, char** argv) {
  CLI::App app{"kpsctl: control a running kpsd (enqueue key-pair unbinds, inspect jobs)"};
  app.set_version_flag("--version", "kpsctl " KPSD_VERSION);
  app.footer(
      "Exit codes: 0 ok; 1 the operation failed (or a waited-for job did not succeed); 2 usage;\n"
      "69 kpsd not reachable; 77 not allowed to use kpsd's control socket.\n"
      "`kpsctl COMMAND --help` describes each command; man kpsctl has examples.");
  Options opt;
  const char* env_socket = std::getenv("KPSD_SOCKET");
  opt.socket = env_socket && *env_socket ? env_socket : "/run/kpsd/kpsd.sock";
  app.add_option("--socket", opt.socket,
                 "kpsd's control socket (default: $KPSD_SOCKET, then /run/kpsd/kpsd.sock)");
  std::string output = "table";
  bool json_flag = false;
  app.add_option("--output,-o", output,
                 "table (default), json (one document; errors too), or csv (list, report, "
                 "stats, batches, wait)")
      ->check(CLI::IsMember({"table", "json", "csv"}));
  app.add_flag("--json", json_flag, "the same as --output json");
  app.require_subcommand(1);
  app.fallthrough();  // `kpsctl list --json` works as well as `kpsctl --json list`

  EnqueueArgs enq;
  auto* enqueue = app.add_subcommand(
      "enqueue", "queue unbinds as one batch: server ids as arguments, or --file");
  enqueue->add_option("server_ids", enq.server_ids, "server ids");
  enqueue->add_option("--file", enq.file,
                      "one server id per line, or NDJSON objects "
                      "{\"server_id\",\"port\",\"auth\":{\"type\",\"key_file\"}}; - is stdin. "
                      "Every line is checked before any job is queued");
  enqueue->add_option("--auth-type", enq.auth_type, "replace form: password or keypair")
      ->check(CLI::IsMember({"password", "keypair"}));
  enqueue->add_option("--key-file", enq.key_file, "file holding the password or private key");
  enqueue->add_option("--port", enq.port, "SSH port sent with the request")
      ->check(CLI::Range(1, 65535));
  enqueue->add_option("--batch", enq.batch,
                      "name the batch these jobs form (unique; default: unnamed). Its id is "
                      "printed either way");
  enqueue->add_flag("--dry-run", enq.dry_run, "check every line and key file, queue nothing");

  ListArgs lst;
  auto* list = app.add_subcommand("list", "list jobs, oldest first");
  list->add_option("--state", lst.state, "only jobs in this state")
      ->check(CLI::IsMember(job_states));
  list->add_option("--server", lst.server, "only jobs of this server id");
  list->add_option("--batch", lst.batch, "only jobs of this batch (id or name)");
  list->add_option("--limit", lst.limit, "at most this many (default 100)")
      ->check(CLI::Range(1, 10000));
  list->add_option("--after", lst.after, "page: only job ids greater than this");

  std::int64_t show_id = 0;
  auto* show = app.add_subcommand("show", "one job with all its attempts");
  show->add_option("job_id", show_id, "job id")->required();

  std::string report_batch;
  auto* report = app.add_subcommand(
      "report", "every job's final state and reason, as CSV (default) or --json; streamed");
  report->add_option("--batch", report_batch, "only this batch (id or name); default: every job");

  int batches_limit = 20;
  auto* batches = app.add_subcommand("batches", "the newest batches with their jobs per state");
  batches->add_option("--limit", batches_limit, "at most this many (default 20)")
      ->check(CLI::Range(1, 10000));

  std::string stats_batch;
  auto* stats = app.add_subcommand("stats", "jobs per state, calls in flight, current rate");
  stats->add_option("--batch", stats_batch, "count only this batch's jobs (id or name)");

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
  auto* pause =
      app.add_subcommand("pause", "start no new calls until resume (kept across restarts)");
  auto* resume = app.add_subcommand("resume", "start calls again after pause");

  std::string older_than;
  auto* prune = app.add_subcommand(
      "prune", "delete finished jobs (succeeded, failed, cancelled) and their attempts");
  prune->add_option("--older-than", older_than, "that ended longer ago than this: 90m, 12h, 7d, 2w")
      ->required();

  WaitArgs wt;
  auto* wait = app.add_subcommand(
      "wait",
      "block until jobs are finished; exit 0 if all succeeded. With no ids and no --batch: the "
      "jobs unfinished when wait starts (older failures do not count). Survives a kpsd restart");
  wait->add_option("job_ids", wt.ids, "job ids");
  wait->add_option("--batch", wt.batch, "every job of this batch (id or name)");
  wait->add_option("--timeout", wt.timeout_s,
                   "give up after this many seconds (exit 1); 0 = never");

  auto* version = app.add_subcommand("version", "kpsctl's version and the running kpsd's");

  opt.format = format_in(argc, argv);
  // The first word that is not an option must be a command: say so by name (CLI11 would say
  // "A subcommand is required").
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--socket" || arg == "--output" || arg == "-o") {
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
      return fail(opt, exit_cli_usage,
                  "unknown command `" + std::string(arg) + "` (commands: " + names + ")");
    }
    break;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (opt.json() && e.get_exit_code() != 0) return fail(opt, exit_cli_usage, e.what());
    int rc = app.exit(e);
    return rc == 0 ? exit_ok : exit_cli_usage;
  }
  opt.format = json_flag          ? Format::json
               : output == "json" ? Format::json
               : output == "csv"  ? Format::csv
                                  : Format::table;

  try {
    if (*enqueue) return cmd_enqueue(opt, enq);
    if (*list) return cmd_list(opt, lst);
    if (*show) {
      if (show_id <= 0) return fail(opt, exit_cli_usage, "show: job id must be a positive number");
      return cmd_show(opt, show_id);
    }
    if (*report) {
      if (opt.format == Format::table) opt.format = Format::csv;  // a report is data
      return cmd_report(opt, report_batch);
    }
    if (*batches) return cmd_batches(opt, batches_limit);
    if (*stats) return cmd_stats(opt, stats_batch);
    if (*retry) return cmd_retry(opt, retry_id, retry_state);
    if (*cancel) {
      if (cancel_id <= 0) {
        return fail(opt, exit_cli_usage, "cancel: job id must be a positive number");
      }
      return cmd_simple(opt, to_json(CancelRequest{cancel_id}),
                        "job " + std::to_string(cancel_id) + " cancelled");
    }
    if (*pause) {
      return cmd_simple(opt, to_json(PauseRequest{true}),
                        "paused: no new calls until kpsctl resume");
    }
    if (*resume) return cmd_simple(opt, to_json(PauseRequest{false}), "resumed");
    if (*prune) return cmd_prune(opt, older_than);
    if (*wait) return cmd_wait(opt, wt);
    if (*version) return cmd_version(opt);
  } catch (const NotPermitted& e) {
    return fail(opt, exit_no_perm, e.what());
  } catch (const Unreachable& e) {
    return fail(opt, exit_unavailable, e.what());
  } catch (const std::exception& e) {
    return fail(opt, exit_failed, std::string("unexpected reply from kpsd: ") + e.what());
  }
  return exit_cli_usage;
}

}  // namespace kpsd
