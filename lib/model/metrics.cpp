#include "model/metrics.hpp"

#include "model/job_endings.hpp"

#include <spdlog/fmt/fmt.h>

#include <array>

namespace kpsd {

void Histogram::observe(std::chrono::milliseconds latency) {
  double seconds = static_cast<double>(latency.count()) / 1000.0;
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (seconds <= bounds[i]) {
      ++counts[i];
      break;
    }
  }
  ++total;
  sum += seconds;
}

MinuteHistory::Minute& MinuteHistory::at(std::int64_t unix_ms) {
  std::int64_t minute = unix_ms / 60000;
  Minute& m = ring[static_cast<std::size_t>(minute % static_cast<std::int64_t>(minutes))];
  if (m.minute != minute) m = Minute{minute};
  return m;
}

void MinuteHistory::finished(JobState state, std::int64_t unix_ms, std::uint32_t n) {
  Minute& m = at(unix_ms);
  if (state == JobState::succeeded) m.succeeded += n;
  if (state == JobState::failed) m.failed += n;
  if (state == JobState::cancelled) m.cancelled += n;
}

void MinuteHistory::answered(bool throttled, std::int64_t unix_ms) {
  Minute& m = at(unix_ms);
  ++m.answers;
  if (throttled) ++m.throttled;
}

std::vector<MinuteHistory::Minute> MinuteHistory::last(std::int64_t now_unix_ms,
                                                       std::size_t span) const {
  span = std::min(span, minutes);
  std::int64_t newest = now_unix_ms / 60000;
  std::vector<Minute> out;
  out.reserve(span);
  for (std::int64_t minute = newest - static_cast<std::int64_t>(span) + 1; minute <= newest;
       ++minute) {
    const Minute& m = ring[static_cast<std::size_t>(minute % static_cast<std::int64_t>(minutes))];
    out.push_back(m.minute == minute ? m : Minute{minute});
  }
  return out;
}

namespace {
// Label values kpsd knows of; others that appear are written too, after them.
constexpr std::array<const char*, 8> call_outcomes{"delivered", "retryable",      "permanent",
                                                   "throttled", "reauthenticate", "blocked",
                                                   "cancelled", "unknown"};
constexpr std::array<const char*, 5> poll_outcomes{"succeeded", "failed", "pending", "rejected",
                                                   "no_answer"};
constexpr std::array<const char*, 4> operations{"disassociate", "task", "failed_tasks",
                                                "running_tasks"};
constexpr std::array<const char*, 4> look_decisions{"adopted", "task_failed", "sent_again",
                                                    "waited"};
constexpr std::array<const char*, 2> task_lists{"running", "failed"};

// The map's counts, with every known key present (0 when it never happened).
template <class Known>
std::map<std::string, std::uint64_t> with_known(const std::map<std::string, std::uint64_t>& seen,
                                                const Known& known) {
  std::map<std::string, std::uint64_t> all(seen);
  for (const char* k : known) all.emplace(k, 0);
  return all;
}
}  // namespace

namespace {

// Prometheus text format 0.0.4, one metric family after another.
struct Exposition {
  std::string out;
  void header(const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  // A metric with one unlabelled sample.
  template <class V>
  void single(const char* name, const char* type, const char* help, V value) {
    header(name, type, help);
    out += fmt::format("{} {}\n", name, value);
  }
};

// Jobs, calls, polls, retries: what happened to the work.
void write_work(Exposition& e, const Metrics& m, const Metrics::Gauges& g) {
  std::string& out = e.out;
  auto header = [&e](auto... a) { e.header(a...); };
  auto single = [&e](auto... a) { e.single(a...); };
  header("kpsd_jobs", "gauge", "Jobs in the database by state.");
  if (g.jobs_known)
    for (const auto& [state, n] : g.jobs) {
      out += fmt::format("kpsd_jobs{{state=\"{}\"}} {}\n", to_string(state), n);
    }
  header("kpsd_jobs_finished_total", "counter",
         "Jobs that reached a terminal state since kpsd started, by state, counted when the "
         "store commits each ending (outcomes, claims, restarts, cancels).");
  for (JobState s : {JobState::succeeded, JobState::failed, JobState::cancelled}) {
    std::uint64_t n = m.endings ? m.endings->totals()[JobEndings::index(s)] : 0;
    out += fmt::format("kpsd_jobs_finished_total{{state=\"{}\"}} {}\n", to_string(s), n);
  }
  single("kpsd_oldest_queued_age_seconds", "gauge",
         "How long the oldest due queued job has waited for its call (0: none waiting).",
         g.oldest_queued_age_s);
  header("kpsd_calls_total", "counter",
         "Disassociate calls by outcome (delivered, retryable, permanent, throttled, "
         "reauthenticate, blocked: nothing sent, cancelled).");
  for (const auto& [outcome, n] : with_known(m.calls, call_outcomes)) {
    out += fmt::format("kpsd_calls_total{{outcome=\"{}\"}} {}\n", outcome, n);
  }
  header("kpsd_task_polls_total", "counter", "Task polls by outcome.");
  for (const auto& [outcome, n] : with_known(m.task_polls, poll_outcomes)) {
    out += fmt::format("kpsd_task_polls_total{{outcome=\"{}\"}} {}\n", outcome, n);
  }
  header("kpsd_looks_total", "counter",
         "Looks for a server's task before sending again after an unknown outcome, by decision "
         "(adopted: a running task followed, no new call; task_failed: its failed task found; "
         "sent_again: no task found; waited: running-task list full or unreadable).");
  for (const auto& [decision, n] : with_known(m.looks, look_decisions)) {
    out += fmt::format("kpsd_looks_total{{decision=\"{}\"}} {}\n", decision, n);
  }
  header("kpsd_task_list_requests_total", "counter",
         "GET running-tasks and failed-tasks requests (each page), by list.");
  for (const auto& [list, n] : with_known(m.task_list_requests, task_lists)) {
    out += fmt::format("kpsd_task_list_requests_total{{list=\"{}\"}} {}\n", list, n);
  }
  single("kpsd_retries_total", "counter", "Times a job was scheduled for another attempt.",
         m.retries);
  single("kpsd_rate_cuts_total", "counter",
         "Congestion episodes: times a 429 cut the request rate (once per episode).",
         m.throttled_rate_cuts);
}

void write_latency(Exposition& e, const Metrics& m) {
  std::string& out = e.out;
  auto header = [&e](auto... a) { e.header(a...); };
  header("kpsd_http_request_duration_seconds", "histogram",
         "Latency of KPS API calls that got an answer or failed, by operation.");
  std::map<std::string, Histogram> all_latency(m.latency);
  for (const char* op : operations) all_latency.emplace(op, Histogram{});
  for (const auto& [op, h] : all_latency) {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < Histogram::bounds.size(); ++i) {
      cumulative += h.counts[i];
      out += fmt::format(
          "kpsd_http_request_duration_seconds_bucket{{operation=\"{}\",le=\"{}\"}} {}\n", op,
          Histogram::bounds[i], cumulative);
    }
    out += fmt::format(
        "kpsd_http_request_duration_seconds_bucket{{operation=\"{}\",le=\"+Inf\"}} {}\n", op,
        h.total);
    out +=
        fmt::format("kpsd_http_request_duration_seconds_sum{{operation=\"{}\"}} {}\n", op, h.sum);
    out += fmt::format("kpsd_http_request_duration_seconds_count{{operation=\"{}\"}} {}\n", op,
                       h.total);
  }
}

// What kpsd is doing now (the gauges) and what went wrong around the calls.
void write_state(Exposition& e, const Metrics& m, const Metrics::Gauges& g) {
  std::string& out = e.out;
  auto header = [&e](auto... a) { e.header(a...); };
  auto single = [&e](auto... a) { e.single(a...); };
  single("kpsd_calls_in_flight", "gauge", "API calls in flight.", g.in_flight);
  single("kpsd_rate_limit_per_second", "gauge",
         "Current pace found from the gateway's 429s, under the ceiling (0 = not paced).",
         g.rate_per_second);
  single("kpsd_rate_limit_configured_per_second", "gauge",
         "Configured rate_per_second: the ceiling (0 = auto, none).", g.configured_rate_per_second);
  single("kpsd_throttled_share", "gauge",
         "Share of API answers in the last minute that were 429 (0 to 1).", g.throttled_share);
  single("kpsd_quota_holding", "gauge",
         "1 while the gateway refuses every call (a quota window) and kpsd waits for it to turn.",
         g.holding_for_quota ? 1 : 0);
  single("kpsd_paused", "gauge", "1 while kpsctl pause is in effect.", g.paused ? 1 : 0);
  header("kpsd_batches_paused", "gauge",
         "Batches whose queued jobs are held, by reason: operator (kpsctl pause --batch), canary "
         "(enqueue --canary), failures (enqueue --max-failures spent).");
  for (const char* reason : {"operator", "canary", "failures"}) {
    auto it = g.batches_paused.find(reason);
    out += fmt::format("kpsd_batches_paused{{reason=\"{}\"}} {}\n", reason,
                       it == g.batches_paused.end() ? 0 : it->second);
  }
  single("kpsd_store_writable", "gauge",
         "0 while the job store cannot be written (lock held, disk full, I/O error): no new calls.",
         g.store_writable ? 1 : 0);
  header("kpsd_blocked", "gauge",
         "1 while calls are paused because nothing can reach KPS, by reason (credentials, tls, "
         "descriptors).");
  for (std::string_view cause : blocked_causes) {
    bool this_one = g.blocked && (g.blocked_cause == cause ||
                                  (g.blocked_cause.empty() && cause == "credentials"));
    out += fmt::format("kpsd_blocked{{reason=\"{}\"}} {}\n", cause, this_one ? 1 : 0);
  }
  single("kpsd_calls_started_per_second", "gauge",
         "Calls started per second (disassociate, polls, lookups), measured over the last second.",
         g.send_rate_per_second);
  single("kpsd_answers_unreadable_total", "counter",
         "API requests sent in full whose answer could not be read (cut short, over a limit, "
         "badly framed): the outcome is unknown, the server may have acted.",
         m.answers_unreadable);
  single("kpsd_stale_connection_resends_total", "counter",
         "Requests sent again, at once and once, on a fresh connection because the reused "
         "keep-alive connection had been closed before any answer: GETs, and POSTs of which "
         "not one byte was written (no attempt used).",
         m.stale_connection_resends);
  single("kpsd_jobs_pruned_total", "counter",
         "Finished jobs deleted by kpsctl prune and [queue] retention_days.", m.jobs_pruned);
  header("kpsd_build_info", "gauge", "Always 1; the version kpsd was built as, as a label.");
  out += fmt::format("kpsd_build_info{{version=\"{}\"}} 1\n", KPSD_VERSION);
  single("kpsd_store_outages_total", "counter", "Times the job store stopped being writable.",
         m.store_outages);
  single("kpsd_outcomes_unrecorded", "gauge",
         "Call and poll outcomes waiting in memory for their commit.", g.outcomes_waiting);
  single("kpsd_control_clients_refused_total", "counter",
         "Control connections closed because too many clients were connected.",
         m.control_clients_refused);
  single("kpsd_http_clients_refused_total", "counter",
         "Metrics/status port connections closed because all 16 were in use: the one that had "
         "waited longest for a request, or the newcomer when every one was being answered.",
         m.http_clients_refused);
}

}  // namespace

std::string Metrics::render(const Gauges& g) const {
  Exposition e;
  write_work(e, *this, g);
  write_latency(e, *this);
  write_state(e, *this, g);
  return std::move(e.out);
}

}  // namespace kpsd
