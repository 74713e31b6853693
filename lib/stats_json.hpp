#pragma once
// What kpsctl stats and the status page's overview both report, as one JSON object: jobs per
// state and their total, the oldest queued job, and the scheduler's state (rates, quota, pause,
// store, blocked). Each caller adds its own fields. Fields are only ever added: scripts read them.
#include "job.hpp"
#include "scheduler.hpp"

#include <boost/json/object.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace kpsd {

// `read_problem`: why the counts could not be read (empty when they were).
boost::json::object stats_json(const std::map<JobState, std::int64_t>& counts,
                               std::optional<std::int64_t> oldest_queued_due,
                               const std::string& read_problem, const Scheduler::Stats& st,
                               std::int64_t now_ms);

}  // namespace kpsd
