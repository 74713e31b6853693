// kpsctl wait: block until jobs have ended, through kpsd restarts, with progress on a terminal.
#include "ctl/commands.hpp"
#include "ctl/durations.hpp"
#include "model/job.hpp"
#include "protocol/control_protocol.hpp"
#include "protocol/job_json.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>
#include <unistd.h>

namespace kpsd::ctl {

namespace json = boost::json;

namespace {

using Clock = std::chrono::steady_clock;

using StateCounts = std::map<JobState, std::int64_t>;

// What one look at the waited-for jobs found: the jobs (ids) or their counts (a batch, a bare
// wait), as printed at the end.
struct WaitLook {
  bool done = true;
  bool all_succeeded = true;
  std::optional<std::vector<Job>> jobs;
  StateCounts states;
  std::optional<Batch> batch;
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
        if (away_) std::cerr << "kpsctl: warning: wait: kpsd is back\n";
        away_ = false;
        reached_ = true;
        auto envelope = parse_reply<ReplyEnvelope>(reply);
        if (!envelope || !envelope->ok) {
          refused = true;
          fail(opt_, exit_failed,
               !envelope ? bad_reply(envelope.error().message)
                         : "kpsd refused the request: " + printable(envelope->error));
          return std::nullopt;
        }
        return reply;
      } catch (const Unreachable& e) {
        client_.reset();
        // Never reached: a wrong socket path is not a restart, and waiting would hang a script.
        if (!reached_) {
          last_error_ = e.what();
          return std::nullopt;
        }
        if (!away_) {
          std::cerr << "kpsctl: warning: wait: " << e.what() << "; waiting for kpsd to come back\n";
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
  // ask_until(), read as a Reply; one that does not parse is reported and counts as refused.
  template <class Reply>
  std::optional<Reply> ask_for(const json::object& req, Clock::time_point deadline, bool& refused) {
    auto reply = ask_until(req, deadline, refused);
    if (!reply) return std::nullopt;
    auto typed = read_as<Reply>(opt_, *reply);
    if (!typed) refused = true;
    return typed;
  }
  const std::string& last_error() const { return last_error_; }

 private:
  const Options& opt_;
  std::optional<ControlClient> client_;
  bool away_ = false;
  bool reached_ = false;
  std::string last_error_;
};

// The progress line on a terminal: "1200/5000 ended (3 failed), 40 running, 3760 queued, 1m03s".
// Rewritten in place on stderr; stdout keeps only the final counts.
class Progress {
 public:
  explicit Progress(const Options& opt)
      : on_(!opt.json() && ::isatty(STDERR_FILENO) == 1), start_(Clock::now()) {}
  bool on() const { return on_; }
  void show(const StateCounts& states) {
    if (!on_) return;
    std::int64_t ended = 0, total = 0;
    for (JobState s : all_job_states) {
      std::int64_t n = count_of(states, s);
      total += n;
      if (is_terminal(s)) ended += n;
    }
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start_);
    std::fprintf(stderr,
                 "\r\033[Kwaiting: %lld/%lld ended (%lld failed, %lld cancelled), %lld "
                 "running, %lld queued or retrying; %s",
                 static_cast<long long>(ended), static_cast<long long>(total),
                 static_cast<long long>(count_of(states, JobState::failed)),
                 static_cast<long long>(count_of(states, JobState::cancelled)),
                 static_cast<long long>(count_of(states, JobState::running) +
                                        count_of(states, JobState::delivered)),
                 static_cast<long long>(count_of(states, JobState::queued) +
                                        count_of(states, JobState::retrying)),
                 format_duration_ms(elapsed.count()).c_str());
    shown_ = true;
  }
  void clear() {
    if (shown_) std::fprintf(stderr, "\r\033[K");
    shown_ = false;
  }

 private:
  bool on_;
  bool shown_ = false;
  Clock::time_point start_;
};

// A job that ended this way fails the wait: failed always, cancelled only with --strict (a
// cancel is the operator's own choice, and a batch with one would otherwise never exit 0).
bool fails_wait(JobState s, bool strict) {
  return s == JobState::failed || (strict && s == JobState::cancelled);
}

WaitLook look_at_states(const StateCounts& states, bool strict) {
  WaitLook look;
  for (JobState s : all_job_states) {
    std::int64_t n = count_of(states, s);
    if (!is_terminal(s) && n > 0) look.done = false;
    if (fails_wait(s, strict) && n > 0) look.all_succeeded = false;
  }
  look.states = states;
  return look;
}

// The --json document's fields from the reply: the jobs, or the counts and the batch.
json::object summary_json(const WaitLook& look) {
  json::object out;
  if (look.jobs) {
    json::array jobs;
    for (const Job& j : *look.jobs) jobs.push_back(job_to_json(j));
    out["jobs"] = std::move(jobs);
    return out;
  }
  json::object states;
  for (const auto& [state, n] : look.states) states[to_string(state)] = n;
  out["states"] = std::move(states);
  if (look.batch) out["batch"] = batch_to_json(*look.batch);
  return out;
}

void print_wait_summary(const Options& opt, const WaitLook& look) {
  if (opt.json()) {
    json::object out = summary_json(look);
    // ok follows the exit code, as in every kpsctl document: a wait over a failure is not ok.
    out["ok"] = look.all_succeeded;
    out["all_succeeded"] = look.all_succeeded;
    if (!look.all_succeeded) out["exit_code"] = exit_failed;
    print_json(out);
    return;
  }
  if (look.jobs) {
    if (opt.format == Format::csv && opt.headers) std::cout << "id,state,reason\n";
    for (const Job& j : *look.jobs) {
      if (opt.format == Format::csv) {
        std::cout << j.id << "," << to_string(j.state) << "," << csv_field(reason_of(j)) << "\n";
      } else {
        std::printf("job %lld %s%s\n", static_cast<long long>(j.id),
                    std::string(to_string(j.state)).c_str(),
                    reason_of(j).empty() ? "" : (": " + reason_of(j)).c_str());
      }
    }
    return;
  }
  if (opt.format == Format::csv && opt.headers) std::cout << "state,jobs\n";
  for (JobState s : all_job_states) {
    std::int64_t n = count_of(look.states, s);
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
    auto parsed = parse_reply<ListReply>(client.request(to_json(req)));
    if (!parsed) return;
    const ListReply& reply = *parsed;
    std::string lines;
    std::int64_t n = 0;
    for (const Job& j : reply.jobs) {
      if (bare && j.id > bare->max_id) break;
      lines += "  job " + std::to_string(j.id) + " (" + printable(j.server_id) +
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

namespace {

// One wait: its jobs (ids, a batch, or those unfinished when it started), looked at until they
// have all ended or the deadline passes.
class Waiter {
 public:
  Waiter(const Options& opt, const WaitArgs& a, Clock::time_point deadline)
      : opt_(opt), a_(a), deadline_(deadline), kpsd_(opt), progress_(opt) {}

  int run() {
    if (a_.ids.empty() && a_.batch.empty() && !start_bare()) return gone();
    auto interval = std::chrono::milliseconds(200);
    for (;;) {
      auto asked = Clock::now();
      auto look = a_.ids.empty() ? look_at_batch() : look_at_ids();
      if (!look) return gone();
      if (look->done) {
        progress_.clear();
        print_wait_summary(opt_, *look);
        if (!look->all_succeeded && !opt_.json() && a_.ids.empty()) {
          name_failures(opt_, a_, bare_filter_);
        }
        return look->all_succeeded ? exit_ok : exit_failed;
      }
      if (Clock::now() >= deadline_) {
        progress_.clear();
        return fail(opt_, exit_failed,
                    "wait: timed out with jobs unfinished" +
                        (paused_.empty() ? std::string() : " (" + paused_ + ")"));
      }
      // Counting a big batch takes the daemon a while: look less often the longer it takes.
      auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - asked);
      interval = std::clamp<std::chrono::milliseconds>(4 * took, std::chrono::milliseconds(200),
                                                       std::chrono::seconds(5));
      std::this_thread::sleep_for(interval);
    }
  }

 private:
  int gone() {
    if (refused_) return exit_failed;
    return fail(opt_, exit_unavailable, "wait: " + kpsd_.last_error());
  }

  // A bare wait follows the jobs that are unfinished now: failures from before it started are
  // history, and jobs queued after it are someone else's.
  bool start_bare() {
    auto start = kpsd_.ask_for<StatsReply>(to_json(StatsRequest{}), deadline_, refused_);
    if (!start) return false;
    // Nothing unfinished: nothing to wait for (min_id past max_id counts no job).
    std::int64_t max_id = start->max_id;
    std::int64_t min_id = start->min_unfinished_id.value_or(max_id + 1);
    bare_filter_ = StatsRequest::UnfinishedSince{min_id, max_id, start->now_ms};
    return true;
  }

  std::optional<WaitLook> look_at_ids() {
    WaitLook look;
    look.jobs.emplace();
    StateCounts counts;
    bool held = false;
    for (std::int64_t id : a_.ids) {
      auto reply = kpsd_.ask_for<ShowReply>(to_json(ShowRequest{id}), deadline_, refused_);
      if (!reply) return std::nullopt;
      const Job& j = reply->job;
      if (!is_terminal(j.state)) look.done = false;
      if (fails_wait(j.state, a_.strict)) look.all_succeeded = false;
      held = held || j.held;
      look.jobs->push_back(j);
      ++counts[j.state];
    }
    progress_.show(counts);
    notice(held ? "a job is held: its batch is paused (kpsctl batches says which; kpsctl resume "
                  "--batch B sends it)"
                : "");
    return look;
  }

  std::optional<WaitLook> look_at_batch() {
    StatsRequest req;
    // Without a terminal to show progress on, kpsd only checks whether any is unfinished and
    // counts once they have all ended; with one, it counts each time (for the progress line).
    req.wait = !progress_.on();
    if (!a_.batch.empty()) req.batch = a_.batch;
    req.unfinished_since = bare_filter_;
    auto reply = kpsd_.ask_for<StatsReply>(to_json(req), deadline_, refused_);
    if (!reply) return std::nullopt;
    WaitLook look;
    if (reply->waiting.value_or(false)) {
      look.done = false;
    } else {
      look = look_at_states(reply->view.states, a_.strict);
      if (!look.done) progress_.show(reply->view.states);
    }
    look.batch = reply->batch;
    if (!look.done) notice(pause_of(*reply));
    return look;
  }

  // Why the jobs waited for cannot end: kpsd paused, or the batch paused. "" if neither.
  static std::string pause_of(const StatsReply& reply) {
    if (reply.batch && reply.batch->paused) {
      std::string reason(to_string(*reply.batch->paused));
      std::string id = std::to_string(reply.batch->id);
      return "batch " + id + " is paused (" + reason + "): its held jobs wait for kpsctl " +
             "resume --batch " + id;
    }
    if (reply.view.paused) return "kpsd is paused: no calls start until kpsctl resume";
    return "";
  }

  // Says a pause once (again when it changes): a wait on a held batch would otherwise look
  // like one that is slow.
  void notice(const std::string& pause) {
    if (pause != paused_ && !pause.empty() && !opt_.json()) {
      progress_.clear();
      std::cerr << "kpsctl: warning: wait: " << pause << "\n";
    }
    paused_ = pause;
  }

  const Options& opt_;
  const WaitArgs& a_;
  Clock::time_point deadline_;
  Reconnecting kpsd_;
  Progress progress_;
  bool refused_ = false;
  std::optional<StatsRequest::UnfinishedSince> bare_filter_;
  std::string paused_;  // the pause last said
};

}  // namespace

int cmd_wait(const Options& opt, const WaitArgs& a) {
  if (!a.ids.empty() && !a.batch.empty()) {
    return fail(opt, exit_cli_usage, "wait: give job ids or --batch, not both");
  }
  std::int64_t timeout_ms =
      a.timeout.empty() ? 0 : parse_duration_ms(a.timeout, BareNumber::seconds).value_or(0);
  Clock::time_point deadline = timeout_ms > 0 ? Clock::now() + std::chrono::milliseconds(timeout_ms)
                                              : Clock::time_point::max();
  return Waiter(opt, a, deadline).run();
}

}  // namespace kpsd::ctl
