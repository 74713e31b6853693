#pragma once
// Counters kpsd keeps for Prometheus, and their text exposition format. Updated and read on
// the network thread only, so plain integers suffice (the job endings, counted by the store on
// the DB thread, are behind a mutex of their own).
#include "model/job.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kpsd {

class JobEndings;

// Why calls are paused while nothing can reach KPS: the label values of kpsd_blocked, in the
// order they are written (kps/kps_api.hpp blocked_cause maps a transport failure to one).
inline constexpr std::string_view blocked_causes[] = {"credentials", "tls", "descriptors", "proxy"};

struct Histogram {
  // Upper bounds in seconds; the last bucket (+Inf) is implicit.
  static constexpr std::array<double, 10> bounds{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  std::array<std::uint64_t, bounds.size()> counts{};  // non-cumulative; rendered cumulative
  std::uint64_t total = 0;
  double sum = 0;
  void observe(std::chrono::milliseconds latency);
};

// What happened minute by minute over the last hours, for the status page's chart: jobs that
// ended and API answers (all, and 429s). A ring of minutes by Unix minute number.
struct MinuteHistory {
  static constexpr std::size_t minutes = 360;  // six hours
  struct Minute {
    std::int64_t minute = -1;  // Unix ms / 60,000; -1: empty
    std::uint32_t succeeded = 0, failed = 0, cancelled = 0, answers = 0, throttled = 0;
  };
  std::array<Minute, minutes> ring{};
  Minute& at(std::int64_t unix_ms);  // the bucket of that minute, emptied if it held an older one
  void finished(JobState state, std::int64_t unix_ms, std::uint32_t n = 1);
  void answered(bool throttled, std::int64_t unix_ms);
  // The minutes from `now` back over `span` minutes, oldest first, empty ones included.
  std::vector<Minute> last(std::int64_t now_unix_ms, std::size_t span) const;
};

struct Metrics {
  std::map<std::string, std::uint64_t> calls;       // by outcome (classifier verdict, "cancelled")
  std::map<std::string, std::uint64_t> task_polls;  // by outcome (succeeded, failed, pending ...)
  std::map<std::string, Histogram> latency;  // by operation (disassociate, task, failed_tasks,
                                             // running_tasks)
  // Looks before sending again, by decision (adopted, task_failed, sent_again, waited).
  std::map<std::string, std::uint64_t> looks;
  std::map<std::string, std::uint64_t> task_list_requests;  // by list (running, failed)
  std::uint64_t retries = 0;                                // jobs sent back to `retrying`
  std::uint64_t throttled_rate_cuts = 0;       // congestion episodes: times a 429 cut the rate
  std::uint64_t store_outages = 0;             // times the job store stopped being writable
  std::uint64_t control_clients_refused = 0;   // control connections closed over the cap
  std::uint64_t http_clients_refused = 0;      // metrics/status port connections over the cap
  std::uint64_t jobs_pruned = 0;               // finished jobs deleted (prune, retention)
  std::uint64_t answers_unreadable = 0;        // requests sent whose answer could not be read
  std::uint64_t stale_connection_resends = 0;  // requests sent again past a closed keep-alive
  // Jobs that reached a final state, as the store committed them (job_endings.hpp); null: none
  // counted (a test's Metrics without a store).
  std::shared_ptr<const JobEndings> endings;
  MinuteHistory history;  // answers; the endings' minutes are in `endings`

  struct Gauges {
    std::map<JobState, std::int64_t> jobs;
    std::int64_t in_flight = 0;
    double rate_per_second = 0;  // current pace; 0 = not paced
    double configured_rate_per_second = 0;
    double throttled_share = 0;  // 429s among answers in the last minute
    bool holding_for_quota = false;
    bool paused = false;
    // Paused batches by reason (operator, canary, failures): kpsd_batches_paused{reason}.
    std::map<std::string, std::int64_t> batches_paused;
    bool store_writable = true;
    bool blocked = false;             // calls paused: credentials, TLS or descriptors
    std::string blocked_cause;        // "credentials", "tls", "descriptors", "proxy"
    double send_rate_per_second = 0;  // calls started per second, measured
    double oldest_queued_age_s = 0;   // how long the oldest due queued job has waited
    std::int64_t outcomes_waiting = 0;
    bool jobs_known = true;  // false: the store could not be read for this scrape
  };
  // Prometheus text format 0.0.4. Every known label value is written from the start (at 0),
  // so rate() and absent() work before the first event.
  std::string render(const Gauges& gauges) const;
};

}  // namespace kpsd
