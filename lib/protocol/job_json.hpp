#pragma once
// Jobs, attempts, batches and pages of jobs as JSON: kpsctl's replies and the status page's
// API show them alike. Fields are only ever added: scripts read them. No I/O.
#include "model/job.hpp"
#include "model/job_records.hpp"

#include <boost/json/object.hpp>

#include <cstdint>

namespace kpsd {

boost::json::object job_to_json(const Job& job);
boost::json::object batch_to_json(const Batch& batch);  // id, name, created_at, states, total
boost::json::object attempt_to_json(const Attempt& attempt);
// {"job": ..., "attempts": [...]}: kpsctl show and the status page's job view.
boost::json::object job_detail_to_json(const JobDetail& detail);
// {"jobs": [...], "next_after_id": N when the page is full (`limit` jobs)}; each job carries
// last_request_id when the page was read with them.
boost::json::object job_page_to_json(const JobPage& page, std::int64_t limit);

}  // namespace kpsd
