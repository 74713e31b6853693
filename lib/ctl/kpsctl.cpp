#include "ctl/kpsctl.hpp"

#include "ctl/cli_checks.hpp"
#include "ctl/commands.hpp"
#include "protocol/control_protocol.hpp"

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
        ((arg == "--output" || arg == "-o") && i + 1 < argc &&
         std::string_view(argv[i + 1]) == "json")) {
      f = Format::json;
    }
  }
  return f;
}

// Every command's arguments and its CLI11 subcommand (set once parsed).
struct Commands {
  EnqueueArgs enq;
  CLI::App* enqueue = nullptr;
  ListArgs lst;
  CLI::App* list = nullptr;
  std::int64_t show_id = 0;
  CLI::App* show = nullptr;
  std::string report_batch;
  bool report_maybe_done = false;
  CLI::App* report = nullptr;
  int batches_limit = 20;
  CLI::App* batches = nullptr;
  std::string stats_batch;
  CLI::App* stats = nullptr;
  BulkArgs rt;
  CLI::App* retry = nullptr;
  BulkArgs cn;
  CLI::App* cancel = nullptr;
  std::string pause_batch, resume_batch;
  CLI::App* pause = nullptr;
  CLI::App* resume = nullptr;
  CLI::App* reload = nullptr;
  PruneArgs pr;
  CLI::App* prune = nullptr;
  WaitArgs wt;
  CLI::App* wait = nullptr;
  CLI::App* version = nullptr;
  std::string watch;                        // --watch [interval] of stats, list, batches
  std::vector<CLI::Option*> watch_options;  // given (with or without a value) when count() > 0
};

// --watch [INTERVAL] on a command that prints a snapshot.
void add_watch(CLI::App* sub, Commands& c) {
  c.watch_options.push_back(
      sub->add_option("--watch", c.watch,
                      "print again every INTERVAL (default 2s; a duration, a bare number is "
                      "seconds) until Ctrl-C; on a terminal the screen is redrawn")
          ->expected(0, 1)
          ->check(duration(BareNumber::seconds)));
}

// The commands that queue and read jobs.
void add_job_commands(CLI::App& app, Commands& c) {
  c.enqueue = app.add_subcommand("enqueue",
                                 "queue unbinds as one batch: server ids as arguments, or --file");
  c.enqueue->add_option("server_ids", c.enq.server_ids, "server ids");
  c.enqueue
      ->add_option("--file", c.enq.file,
                   "one server id per line, or NDJSON objects "
                   "{\"server_id\",\"port\",\"auth\":{\"type\",\"key_file\"}}; - is stdin. "
                   "Every line is checked before any job is queued")
      ->check(non_empty("a file (- for stdin)"));
  c.enqueue->add_option("--auth-type", c.enq.auth_type, "replace form: password or keypair")
      ->check(one_of({"password", "keypair"}));
  c.enqueue->add_option("--key-file", c.enq.key_file, "file holding the password or private key")
      ->check(non_empty("a file"));
  c.enqueue->add_option("--port", c.enq.port, "SSH port sent with the request")
      ->check(whole_number(1, 65535));
  c.enqueue
      ->add_option("--batch", c.enq.batch,
                   "name the batch these jobs form (unique; default: unnamed). Its id is "
                   "printed either way")
      ->check(non_empty("a name for the batch"));
  c.enqueue->add_flag("--dry-run", c.enq.dry_run, "check every line and key file, queue nothing");
  c.enqueue
      ->add_option("--canary", c.enq.canary,
                   "run the batch's first N jobs, then hold the rest until kpsctl resume "
                   "--batch B (0: none, over a [queue] canary)")
      ->check(whole_number(0, 1'000'000'000));
  c.enqueue
      ->add_option("--max-failures", c.enq.max_failures,
                   "failure budget: the batch pauses itself when N of its jobs have failed, "
                   "or more than P% (e.g. 5%) once 20 have ended (0: none)")
      ->check(non_empty("a count (10), a percentage (5%) or 0"));

  c.list = app.add_subcommand("list", "list jobs, oldest first");
  c.list->add_option("--state", c.lst.state, "only jobs in this state")->check(one_of(job_states));
  c.list->add_option("--server", c.lst.server, "only jobs of this server id")
      ->check(non_empty("a server id"));
  c.list->add_option("--batch", c.lst.batch, "only jobs of this batch (id or name)")
      ->check(non_empty("a batch id or name"));
  c.list->add_option("--limit", c.lst.limit, "at most this many (default 100)")
      ->check(whole_number(1, 10000));
  c.list->add_option("--after", c.lst.after, "page: only job ids greater than this")
      ->check(whole_number(0, INT64_MAX));
  c.list->add_flag("--maybe-done", c.lst.maybe_done,
                   "only failed jobs whose earlier call's outcome was unknown: that call may "
                   "have unbound the key (check the server before enqueueing it again)");
  add_watch(c.list, c);

  c.show = app.add_subcommand("show", "one job with all its attempts");
  c.show->add_option("job_id", c.show_id, "job id")->required()->check(job_id());

  c.report = app.add_subcommand(
      "report", "every job's final state and reason, as CSV (default) or --json; streamed");
  c.report
      ->add_option("--batch", c.report_batch, "only this batch (id or name); default: every job")
      ->check(non_empty("a batch id or name"));
  c.report->add_flag("--maybe-done", c.report_maybe_done,
                     "only failed jobs that may have been done by an earlier call whose outcome "
                     "was unknown");

  c.batches = app.add_subcommand("batches", "the newest batches with their jobs per state");
  c.batches->add_option("--limit", c.batches_limit, "at most this many (default 20)")
      ->check(whole_number(1, 10000));
  add_watch(c.batches, c);

  c.stats = app.add_subcommand(
      "stats",
      "jobs per state and what kpsd is doing. running: jobs kpsd has claimed (a call on the "
      "wire, or its task being followed); in flight: HTTP calls on the wire right now; calls "
      "started/s: measured over the last seconds; pace: the rate kpsd allows itself (learned "
      "from the gateway's 429s, at most rate_per_second)");
  c.stats->add_option("--batch", c.stats_batch, "count only this batch's jobs (id or name)")
      ->check(non_empty("a batch id or name"));
  add_watch(c.stats, c);
}

// The commands that act on jobs or on kpsd, and wait and version.
void add_admin_commands(CLI::App& app, Commands& c) {
  c.retry = app.add_subcommand(
      "retry", "send failed or cancelled jobs again: job ids, every job in a --state, a --batch");
  c.retry->add_option("job_ids", c.rt.ids, "job ids")->check(job_id());
  c.retry->add_option("--state", c.rt.state, "every job in this state (with --batch: its jobs)")
      ->check(one_of({"failed", "cancelled"}));
  c.retry
      ->add_option("--batch", c.rt.batch,
                   "this batch's jobs (id or name) in --state (default failed)")
      ->check(non_empty("a batch id or name"));

  c.cancel = app.add_subcommand(
      "cancel", "cancel jobs that have not ended (no further calls): job ids, or a --batch");
  c.cancel->add_option("job_ids", c.cn.ids, "job ids")->check(job_id());
  c.cancel->add_option("--batch", c.cn.batch, "every unfinished job of this batch (id or name)")
      ->check(non_empty("a batch id or name"));
  c.pause = app.add_subcommand(
      "pause", "start no new calls until resume (kept across restarts); --batch: that batch only");
  c.pause
      ->add_option("--batch", c.pause_batch,
                   "hold this batch's queued jobs (id or name); other batches go on")
      ->check(non_empty("a batch id or name"));
  c.resume = app.add_subcommand("resume", "start calls again after pause");
  c.resume
      ->add_option("--batch", c.resume_batch,
                   "give back this batch's held jobs (after pause --batch, a canary, or a "
                   "spent failure budget)")
      ->check(non_empty("a batch id or name"));
  c.reload = app.add_subcommand(
      "reload",
      "re-read kpsd's configuration and credential files and wait until they are applied "
      "(what systemctl reload runs); exit 78 with kpsd's reason if not (a bad file changes "
      "nothing)");
  c.prune = app.add_subcommand(
      "prune", "delete finished jobs (succeeded, failed, cancelled) and their attempts");
  c.prune
      ->add_option("--older-than", c.pr.older_than,
                   "that ended longer ago than this: 90m, 12h, 7d, 2w (under 1h needs --force)")
      ->required()
      ->check(duration(BareNumber::refused));
  c.prune->add_option("--state", c.pr.state, "only jobs that ended in this state")
      ->check(one_of({"succeeded", "failed", "cancelled"}));
  c.prune->add_option("--batch", c.pr.batch, "only this batch's jobs (id or name)")
      ->check(non_empty("a batch id or name"));
  c.prune->add_flag("--dry-run", c.pr.dry_run,
                    "count what would go, per batch and state; delete nothing");
  c.prune->add_flag("--force", c.pr.force, "allow --older-than under an hour");

  c.wait = app.add_subcommand(
      "wait",
      "block until jobs are finished; exit 0 if none failed (--strict: and none was cancelled), "
      "else 1 and the failed jobs named on stderr. Survives a kpsd restart. In "
      "scripts, wait for what you enqueued: --batch B (enqueue prints B) or the job ids. With "
      "neither, wait takes the jobs unfinished when it starts: a job that already failed is not "
      "among them, and wait would exit 0");
  c.wait->add_option("job_ids", c.wt.ids, "job ids")->check(job_id());
  c.wait->add_option("--batch", c.wt.batch, "every job of this batch (id or name)")
      ->check(non_empty("a batch id or name"));
  c.wait
      ->add_option("--timeout", c.wt.timeout,
                   "give up after this long (exit 1): 90s, 5m, 2h; a bare number is seconds; "
                   "0 = never")
      ->check(duration(BareNumber::seconds));
  c.wait->add_flag("--strict", c.wt.strict,
                   "a cancelled job fails the wait too (by default only failed jobs do: a "
                   "cancel is the operator's choice)");

  c.version = app.add_subcommand("version", "kpsctl's version and the running kpsd's");
}

// Runs the command that was parsed, once.
int run_once(Options& opt, Commands& c) {
  try {
    if (*c.enqueue) return cmd_enqueue(opt, c.enq);
    if (*c.list) return cmd_list(opt, c.lst);
    if (*c.show) {
      if (c.show_id <= 0)
        return fail(opt, exit_cli_usage, "show: job id must be a positive number");
      return cmd_show(opt, c.show_id);
    }
    if (*c.report) {
      if (opt.table_asked || opt.wide) {
        return fail(opt, exit_cli_usage,
                    std::string("report: -o ") + (opt.wide ? "wide" : "table") +
                        " is not offered (csv, the default, or json)");
      }
      if (opt.format == Format::table) opt.format = Format::csv;  // a report is data
      return cmd_report(opt, c.report_batch, c.report_maybe_done);
    }
    if (*c.batches) return cmd_batches(opt, c.batches_limit);
    if (*c.stats) return cmd_stats(opt, c.stats_batch);
    if (*c.retry) return cmd_retry(opt, c.rt);
    if (*c.cancel) return cmd_cancel(opt, c.cn);
    if (*c.pause) return cmd_pause(opt, true, c.pause_batch);
    if (*c.resume) return cmd_pause(opt, false, c.resume_batch);
    if (*c.reload) return cmd_reload(opt);
    if (*c.prune) return cmd_prune(opt, c.pr);
    if (*c.wait) return cmd_wait(opt, c.wt);
    if (*c.version) return cmd_version(opt);
  } catch (const NotPermitted& e) {
    return fail(opt, exit_no_perm, e.what());
  } catch (const Unreachable& e) {
    return fail(opt, exit_unavailable, e.what());
  } catch (const std::exception& e) {
    return fail(opt, exit_failed, std::string("unexpected reply from kpsd: ") + e.what());
  }
  return exit_cli_usage;
}

// Runs the command that was parsed: once, or every --watch interval.
int dispatch(Options& opt, Commands& c, const std::string& title) {
  for (const CLI::Option* w : c.watch_options) {
    if (w->count() > 0)
      opt.watch_ms = parse_duration_ms(c.watch.empty() ? "2s" : c.watch, BareNumber::seconds);
  }
  if (!opt.watch_ms) return run_once(opt, c);
  if (*opt.watch_ms < 100)
    return fail(opt, exit_cli_usage, "--watch `" + c.watch + "`: under 100ms");
  // CSV rows from every turn make one table: its header comes once.
  return watch(opt, title, [&opt, &c] {
    int rc = run_once(opt, c);
    if (opt.format == Format::csv) opt.headers = false;
    return rc;
  });
}

// A CLI11 parse error as one "kpsctl: error: COMMAND: …" line; --help and --version as CLI11
// prints them.
int parse_failed(const CLI::App& app, const Options& opt, const CLI::ParseError& e,
                 const std::string& command) {
  if (e.get_exit_code() == 0) return app.exit(e) == 0 ? exit_ok : exit_cli_usage;
  std::string text = parse_error_text(e);
  if (!command.empty()) text = command + ": " + text;
  return fail(opt, exit_cli_usage, text);
}

}  // namespace

int run_kpsctl(int argc, char** argv) {
  CLI::App app{"kpsctl: control a running kpsd (enqueue key-pair unbinds, inspect jobs)"};
  app.set_version_flag("--version", "kpsctl " KPSD_VERSION);
  app.footer(
      "Exit codes: 0 ok; 1 the operation failed (or a waited-for job failed); 2 bad input (an\n"
      "argument, a job file's line, a key file: nothing was done); 69 kpsd not reachable;\n"
      "77 not allowed to use kpsd's control socket; 78 reload refused.\n"
      "Durations: 90s, 5m, 1h30m, 7d. `kpsctl COMMAND --help` describes each command; man\n"
      "kpsctl has examples.");
  Options opt;
  const char* env_socket = std::getenv("KPSD_SOCKET");
  opt.socket = env_socket && *env_socket ? env_socket : "/run/kpsd/kpsd.sock";
  app.add_option("--socket", opt.socket,
                 "kpsd's control socket (default: $KPSD_SOCKET, then /run/kpsd/kpsd.sock)")
      ->check(non_empty("a socket path"));
  std::string output = "table";
  bool json_flag = false, no_headers = false;
  app.add_option("--output,-o", output,
                 "table (default), wide (a table with more columns: list, batches, stats), json "
                 "(one document; errors too), or csv (list, report, stats, batches, wait)")
      ->check(one_of({"table", "wide", "json", "csv"}));
  app.add_flag("--json", json_flag, "the same as --output json");
  app.add_flag("--no-headers", no_headers, "tables and CSV without their header line");
  app.require_subcommand(1);
  app.fallthrough();  // `kpsctl list --json` works as well as `kpsctl --json list`

  Commands c;
  add_job_commands(app, c);
  add_admin_commands(app, c);

  opt.format = format_in(argc, argv);
  std::string command = command_word(app, argc, argv);
  if (auto fine = precheck(app, argc, argv); !fine) {
    return fail(opt, exit_cli_usage, fine.error().message);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return parse_failed(app, opt, e, command);
  }
  opt.format = json_flag          ? Format::json
               : output == "json" ? Format::json
               : output == "csv"  ? Format::csv
                                  : Format::table;
  opt.wide = output == "wide";
  opt.table_asked = output == "table" && app.get_option("--output")->count() > 0;
  opt.headers = !no_headers;
  std::string title = "kpsctl";
  for (int i = 1; i < argc; ++i) title += std::string(" ") + argv[i];
  return dispatch(opt, c, title);
}

}  // namespace kpsd
