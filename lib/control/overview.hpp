#pragma once
// What kpsd says about itself, built in one place for its three readers from one Overview (the
// store's counts and the scheduler's Stats): the stats JSON (kpsctl stats, the status page's
// /api/overview), the gauges of /metrics, and systemd's STATUS= line. No I/O.
#include "model/job.hpp"
#include "model/metrics.hpp"
#include "protocol/control_reply.hpp"
#include "scheduling/scheduler.hpp"
#include "store/job_store.hpp"

#include <boost/json/object.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace kpsd {

struct Overview {
  std::map<JobState, std::int64_t> counts;  // jobs per state (a batch's for kpsctl stats --batch)
  std::optional<std::int64_t> oldest_queued_due;  // Unix ms; nullopt: nothing queued
  std::string read_problem;                       // why the store could not be read (empty: it was)
  Scheduler::Stats scheduler;
  std::vector<Batch> paused_batches;  // batches whose jobs are held (JobQueries::paused_batches)
};

// Jobs per state, the oldest queued job's wait, and the scheduler's state (rates, quota, pause,
// store, blocked), as the stats reply's view (protocol/control_reply.hpp). `now_ms`: Unix ms.
StatsView stats_view(const Overview& overview, std::int64_t now_ms);
// The view as JSON, with the jobs' total. Each caller adds its own fields. Fields are only ever
// added: scripts read them.
boost::json::object stats_json(const Overview& overview, std::int64_t now_ms);

// The gauges /metrics renders (Metrics::render); jobs_known is false when the store could not
// be read.
Metrics::Gauges metrics_gauges(const Overview& overview, std::int64_t now_ms);

// systemd's "STATUS=..." line (sd_notify): what is wrong first (store, blocked, paused,
// stopping), then a paused batch, then the job counts and the calls in flight.
std::string status_line(const Overview& overview, bool stopping);

}  // namespace kpsd
