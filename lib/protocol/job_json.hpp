#pragma once
// Jobs, attempts, batches and pages of jobs as JSON: kpsctl's replies and the status page's
// API show them alike, and kpsctl reads them back. Fields are only ever added: scripts read
// them. No I/O.
#include "model/job.hpp"
#include "model/job_records.hpp"

#include <boost/json/object.hpp>

#include <cstdint>

namespace kpsd {

class JsonFields;

boost::json::object job_to_json(const Job& job);
boost::json::object batch_to_json(const Batch& batch);  // id, name, created_at, states, total
boost::json::object attempt_to_json(const Attempt& attempt);
// {"job": ..., "attempts": [...]}: kpsctl show and the status page's job view.
boost::json::object job_detail_to_json(const JobDetail& detail);
// {"jobs": [...], "next_after_id": N when the page is full (`limit` jobs)}; each job carries
// last_request_id when the page was read with them.
boost::json::object job_page_to_json(const JobPage& page, std::int64_t limit);

// The same shapes read back (kpsctl): x_from_json(x_to_json(v)) == v. A missing field or one of
// the wrong type throws BadReply naming it (protocol/json_fields.hpp).
Job job_from_json(const JsonFields& f);
Attempt attempt_from_json(const JsonFields& f);  // job_id is not in the JSON: 0
Batch batch_from_json(const JsonFields& f);      // "total" is derived from "states": not read

}  // namespace kpsd
