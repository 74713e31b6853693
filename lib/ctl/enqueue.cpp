// kpsctl enqueue: check every input, then queue it into one batch, in chunks.
#include "ctl/commands.hpp"
#include "ctl/job_file.hpp"
#include "protocol/control_protocol.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <iostream>
#include <unistd.h>
#include <unordered_map>

namespace kpsd::ctl {

namespace json = boost::json;

namespace {

// Jobs per enqueue request: one transaction (one fsync) each in kpsd, so big chunks, but the
// request line stays well under kpsd's 1 MiB limit (keys make jobs large).
constexpr std::size_t enqueue_chunk = 4000;
constexpr std::size_t enqueue_chunk_bytes = 512 * 1024;

int report_bad_lines(const Options& opt, const JobFile& file, const JobFileCheck& check) {
  if (!check.error.empty()) return fail(opt, exit_cli_usage, check.error);
  std::string summary = file.name() + ": " + std::to_string(check.bad_line_count) + " bad line" +
                        (check.bad_line_count == 1 ? "" : "s") + "; nothing queued";
  if (opt.json()) {
    json::array lines;
    for (const auto& b : check.bad_lines) {
      lines.push_back(json::object{{"line", b.line}, {"error", b.error}});
    }
    print_json(json::object{{"ok", false},
                            {"error", summary},
                            {"bad_line_count", check.bad_line_count},
                            {"bad_lines", std::move(lines)},
                            {"exit_code", exit_cli_usage}});
    return exit_cli_usage;
  }
  for (const auto& b : check.bad_lines) {
    print_error(file.name() + ":" + std::to_string(b.line) + ": " + b.error);
  }
  if (check.bad_line_count > check.bad_lines.size()) {
    print_error("... and " + std::to_string(check.bad_line_count - check.bad_lines.size()) +
                " more");
  }
  print_error(summary);
  return exit_cli_usage;
}

// The servers given as arguments that an earlier argument already named ("line" is the
// argument's position).
JobFileCheck repeated_arguments(const std::vector<std::string>& ids) {
  JobFileCheck check;
  std::unordered_map<std::string_view, std::size_t> first;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto [it, added] = first.emplace(ids[i], i + 1);
    if (added) continue;
    ++check.repeated_count;
    if (check.repeated.size() < JobFile::max_reported_bad_lines) {
      check.repeated.push_back({i + 1, it->second, ids[i]});
    }
  }
  return check;
}

// Repeated servers, on stderr: kpsd queues each server once, so a repeat's port or key would be
// dropped without a word. Not an error: a list merged from two sources repeats ids harmlessly.
void warn_repeats(const Options& opt, const std::string& file, const JobFileCheck& check) {
  if (opt.json()) return;  // the JSON document carries them
  for (const auto& r : check.repeated) {
    std::cerr << "kpsctl: warning: "
              << (file.empty() ? "argument " + std::to_string(r.line) + ": `" + r.server_id +
                                     "` repeats argument " + std::to_string(r.first_line)
                               : file + ":" + std::to_string(r.line) + ": `" + r.server_id +
                                     "` repeats line " + std::to_string(r.first_line))
              << " (queued once)\n";
  }
  if (check.repeated_count > check.repeated.size()) {
    std::cerr << "kpsctl: warning: ... and " << check.repeated_count - check.repeated.size()
              << " more repeats\n";
  }
}

json::array repeats_json(const JobFileCheck& check) {
  json::array out;
  for (const auto& r : check.repeated) {
    out.push_back(
        json::object{{"line", r.line}, {"first_line", r.first_line}, {"server_id", r.server_id}});
  }
  return out;
}

// The checks of the command line alone, before any file is read: fine, or the problem.
Result<> usage_checked(const Options& opt, const EnqueueArgs& a) {
  if (a.server_ids.empty() && a.file.empty())
    return kpsd::fail("enqueue: give server ids or --file FILE");
  if (!a.server_ids.empty() && !a.file.empty()) {
    return kpsd::fail("enqueue: give server ids or --file FILE, not both");
  }
  if (!a.auth_type.empty() && a.key_file.empty())
    return kpsd::fail("enqueue: --auth-type needs --key-file");
  if (a.auth_type.empty() && !a.key_file.empty()) {
    // Without a type the key would be dropped and the job sent in reset form: refuse.
    return kpsd::fail("enqueue: --key-file needs --auth-type (password or keypair)");
  }
  if (!a.batch.empty()) {
    if (auto valid = validate_batch_name(a.batch); !valid) {
      return kpsd::fail("enqueue: --batch `" + a.batch + "`: " + valid.error().message);
    }
  }
  if (opt.format == Format::csv)
    return kpsd::fail("enqueue: --output csv is not offered (table or json)");
  if (!a.max_failures.empty()) {
    if (auto budget = parse_max_failures(a.max_failures, Brakes{}); !budget) {
      return kpsd::fail("enqueue: --max-failures " + budget.error().message);
    }
  }
  return {};
}

// A --batch name kpsd already has: the request would be refused, after every line was read.
// Fine when the name is free, or when kpsd cannot be asked (a dry run says it did not check).
Result<> batch_name_free(const Options& opt, const EnqueueArgs& a) {
  if (a.batch.empty()) return {};
  try {
    ControlClient client(opt.socket);
    StatsRequest req;
    req.batch = a.batch;
    // A refusal ("no batch ...") has no batch: the name is free.
    auto reply = parse_reply<StatsReply>(client.request(to_json(req)));
    if (!reply || !reply->batch) return {};
    return kpsd::fail("enqueue: --batch `" + a.batch + "` is taken (batch " +
                      std::to_string(reply->batch->id) + "); choose another name");
  } catch (const NotPermitted&) {
    throw;  // said by the caller, as for every command
  } catch (const Unreachable&) {
    if (a.dry_run && !opt.json()) {
      std::cerr << "kpsctl: warning: kpsd is not reachable: whether the batch name `" << a.batch
                << "` is free was not checked\n";
    }
    return {};
  }
}

Brakes brakes_of(const EnqueueArgs& a) {
  Brakes b;
  b.canary = a.canary;
  // Checked before (usage_problem): value() throws only on a bug.
  if (!a.max_failures.empty()) b = parse_max_failures(a.max_failures, b).value();
  return b;
}

// Sends chunks of jobs into one batch (the first chunk makes it, the others join it) and prints
// each job's line as its reply comes, so a file of a million ids needs no more memory than one
// chunk (also in --json mode: one streamed document).
struct BatchSender {
  BatchSender(const Options& o, const EnqueueArgs& a, const std::optional<JobAuth>& auth)
      : opt(o), args(a), common_auth(auth), client(o.socket) {}

  const Options& opt;
  const EnqueueArgs& args;
  const std::optional<JobAuth>& common_auth;
  ControlClient client;
  Brakes brakes;           // --canary, --max-failures (checked by usage_problem)
  bool progress = false;   // a progress line on a terminal
  bool job_lines = false;  // the server -> job lines
  std::size_t total = 0, existing = 0;
  std::size_t repeated = 0;  // inputs that repeat an earlier one's server
  std::int64_t batch_id = 0;
  std::string refusal;

  bool operator()(std::vector<NewJob>& chunk) {
    EnqueueRequest request;
    for (NewJob& j : chunk) {
      if (args.port > 0 && !j.port) j.port = args.port;
      if (common_auth && !j.auth) j.auth = common_auth;
    }
    request.jobs = chunk;
    if (batch_id > 0) {
      request.batch.id = batch_id;
    } else {  // the first chunk makes the batch, with its brakes
      if (!args.batch.empty()) request.batch.name = args.batch;
      request.batch.brakes = brakes;
    }
    auto reply = typed_reply(client.request(to_json(request)));
    if (!reply) return false;
    batch_id = reply->batch_id;
    const std::vector<EnqueueResult>& res = reply->jobs;
    for (std::size_t i = 0; i < res.size() && i < chunk.size(); ++i) {
      bool dup = res[i].existing;
      existing += dup ? 1 : 0;
      if (opt.json()) {
        std::cout << (total ? "," : "")
                  << to_json_text(json::object{
                         {"id", res[i].id}, {"server_id", chunk[i].server_id}, {"existing", dup}});
      } else if (job_lines) {
        std::cout << res[i].id << "\t" << chunk[i].server_id
                  << (dup ? "\talready queued" : "\tqueued") << "\n";
      }
      ++total;
    }
    if (progress) std::cerr << "\renqueued " << total << " jobs..." << std::flush;
    return true;
  }

  // An enqueue's reply, or nullopt with `refusal` saying why not (refused, or not readable).
  std::optional<EnqueueReply> typed_reply(const json::object& raw) {
    auto envelope = parse_reply<ReplyEnvelope>(raw);
    if (envelope && !envelope->ok) {
      refusal = "kpsd refused the request: " + printable(envelope->error);
      return std::nullopt;
    }
    auto reply = envelope ? parse_reply<EnqueueReply>(raw) : Result<EnqueueReply>(envelope.error());
    if (!reply) {
      refusal = bad_reply(reply.error().message);
      return std::nullopt;
    }
    return *reply;
  }

  // The ids given as arguments, in chunks.
  bool send_ids() {
    std::vector<NewJob> jobs;
    for (const auto& id : args.server_ids) {
      jobs.push_back(NewJob{id, std::nullopt, std::nullopt});
      if (jobs.size() >= enqueue_chunk) {
        if (!(*this)(jobs)) return false;
        jobs.clear();
      }
    }
    return jobs.empty() || (*this)(jobs);
  }

  // The end of the output: the JSON document's tail, or the summary (on stderr: stdout holds
  // only the server -> job lines, for scripts).
  int finish(bool ok, const std::string& error) {
    if (progress) std::cerr << "\n";
    if (opt.json()) {
      std::cout << "],\"ok\":" << (ok ? "true" : "false") << ",\"batch_id\":" << batch_id
                << ",\"total\":" << total << ",\"existing\":" << existing
                << ",\"repeated\":" << repeated;
      if (!ok) std::cout << ",\"error\":" << to_json_text(json::string(error));
      std::cout << "}\n";
      return ok ? exit_ok : exit_failed;
    }
    if (batch_id > 0) {
      // A repeated line names a server an earlier line queued: it adds no job.
      std::size_t jobs = total - std::min(repeated, total);
      std::size_t already = existing - std::min(repeated, existing);
      std::cerr << "batch " << batch_id << (args.batch.empty() ? "" : " (" + args.batch + ")")
                << ": enqueued " << jobs << " job" << (jobs == 1 ? "" : "s") << " ("
                << jobs - already << " new, " << already << " already queued)";
      if (repeated) {
        std::cerr << "; " << repeated << " repeated " << (args.file.empty() ? "id" : "line")
                  << (repeated == 1 ? "" : "s") << " added none";
      }
      std::cerr << "; follow it with: kpsctl wait --batch " << batch_id << "\n";
    }
    if (!ok) {
      print_error(error + (total > 0 ? " (the " + std::to_string(total) + " jobs above are queued)"
                                     : std::string()));
    }
    return ok ? exit_ok : exit_failed;
  }
};

int print_dry_run(const Options& opt, const EnqueueArgs& a, std::size_t checked,
                  const JobFileCheck& repeats) {
  std::string what = a.file.empty() ? "arguments" : a.file;
  std::size_t jobs = checked - std::min(checked, repeats.repeated_count);
  if (opt.json()) {
    print_json(json::object{{"ok", true},
                            {"dry_run", true},
                            {"jobs", jobs},
                            {"lines", checked},
                            {"repeated", repeats.repeated_count},
                            {"repeated_lines", repeats_json(repeats)}});
    return exit_ok;
  }
  std::string unit = a.file.empty() ? "id" : "line";
  std::cout << what << ": " << jobs << " job" << (jobs == 1 ? "" : "s");
  if (repeats.repeated_count > 0) std::cout << " from " << checked << " " << unit << "s";
  std::cout << ", every " << unit << " valid";
  if (repeats.repeated_count > 0) {
    std::cout << "; " << repeats.repeated_count << " repeat"
              << (repeats.repeated_count == 1 ? "s" : "")
              << " an earlier server (each server is queued once)";
  }
  std::cout << " (dry run: nothing queued)\n";
  return exit_ok;
}

}  // namespace

int cmd_enqueue(const Options& opt, const EnqueueArgs& a) {
  if (auto checked = usage_checked(opt, a); !checked) {
    return fail(opt, exit_cli_usage, checked.error().message);
  }
  std::optional<JobAuth> common_auth;
  if (!a.auth_type.empty()) {
    auto key = read_key_file(a.auth_type, a.key_file);
    if (!key) return fail(opt, exit_cli_usage, key.error().message);
    common_auth = JobAuth{a.auth_type, std::move(*key)};
  }

  // Check everything before anything is queued.
  std::optional<JobFile> file;
  std::size_t checked = a.server_ids.size();
  JobFileCheck check;
  if (!a.file.empty()) {
    file.emplace(a.file);
    check = file->check();
    if (!check.ok()) return report_bad_lines(opt, *file, check);
    checked = check.jobs;
  } else {
    check = repeated_arguments(a.server_ids);
    for (const auto& id : a.server_ids) {
      if (auto valid = validate_server_id(id); !valid) {
        return fail(opt, exit_cli_usage, "enqueue: `" + id + "`: " + valid.error().message);
      }
    }
  }
  if (checked == 0) return fail(opt, exit_cli_usage, "enqueue: " + a.file + " holds no jobs");
  if (auto free = batch_name_free(opt, a); !free) {
    return fail(opt, exit_cli_usage, free.error().message);
  }
  warn_repeats(opt, a.file, check);
  if (a.dry_run) return print_dry_run(opt, a, checked, check);

  BatchSender sender(opt, a, common_auth);
  sender.repeated = check.repeated_count;
  sender.brakes = brakes_of(a);
  sender.progress = file && ::isatty(STDERR_FILENO);
  // The server -> job lines are the output: written whenever stdout is a file or a pipe
  // (`enqueue --file f > map.tsv`); only on a terminal does the progress line stand in for them.
  sender.job_lines = !sender.progress || !::isatty(STDOUT_FILENO);
  if (opt.json()) std::cout << "{\"jobs\":[";
  Result<bool> sent = file ? file->send(enqueue_chunk, enqueue_chunk_bytes, std::ref(sender))
                           : Result<bool>(sender.send_ids());
  if (!sent) return sender.finish(false, sent.error().message);
  return sender.finish(*sent, sender.refusal);
}

}  // namespace kpsd::ctl
