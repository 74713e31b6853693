// Jobs, attempts and batches read back from the JSON job_json.cpp writes: what kpsctl shows
// comes from these values, so a field renamed on one side fails to parse, not to compile late.
#include "protocol/job_json.hpp"
#include "protocol/json_fields.hpp"

#include <boost/json.hpp>

namespace kpsd {

namespace {

// A state's name, or a BadReply naming the field.
JobState state_of(const JsonFields& f, std::string_view key) {
  auto state = parse_job_state(f.string(key));
  if (!state) f.fail(key, "is not a job state");
  return *state;
}

}  // namespace

Job job_from_json(const JsonFields& f) {
  Job j;
  j.id = f.int64("id");
  j.server_id = f.string("server_id");
  j.state = state_of(f, "state");
  j.attempts = f.int64("attempts");
  j.next_attempt_at = f.int64("next_attempt_at");
  j.task_id = f.opt_string("task_id");
  j.delivery_status = f.opt_string("delivery_status");
  j.task_status = f.opt_string("task_status");
  j.error_code = f.opt_string("error_code");
  j.error_msg = f.opt_string("error_msg");
  j.created_at = f.int64("created_at");
  j.updated_at = f.int64("updated_at");
  j.port = f.opt_int64("port");
  j.auth_type = f.opt_string("auth_type");
  j.task_error_code = f.opt_string("task_error_code");
  j.task_error_msg = f.opt_string("task_error_msg");
  j.task_failures = f.int64("task_failures");
  j.held = f.opt_boolean("held").value_or(false);  // written only when true
  j.maybe_done = f.boolean("maybe_done");
  return j;
}

Attempt attempt_from_json(const JsonFields& f) {
  Attempt a;
  a.n = f.int64("n");
  a.started_at = f.int64("started_at");
  a.finished_at = f.opt_int64("finished_at");
  a.http_status = f.opt_int64("http_status");
  a.task_id = f.opt_string("task_id");
  a.delivery_status = f.opt_string("delivery_status");
  a.error_code = f.opt_string("error_code");
  a.error_msg = f.opt_string("error_msg");
  a.request_id = f.opt_string("request_id");
  a.latency_ms = f.opt_int64("latency_ms");
  a.look = f.opt_string("look");
  return a;
}

Batch batch_from_json(const JsonFields& f) {
  Batch b;
  b.id = f.int64("id");
  b.name = f.opt_string("name");
  b.created_at = f.int64("created_at");
  JsonFields states = f.object("states");
  for (JobState s : all_job_states) {
    if (auto n = states.opt_int64(to_string(s))) b.states[s] = *n;
  }
  if (auto paused = f.opt_string("paused")) {
    b.paused = parse_pause_reason(*paused);
    if (!b.paused) f.fail("paused", "is not a pause reason");
    b.paused_at = f.int64("paused_at");  // written with a pause only
  }
  b.paused_detail = f.opt_string("paused_detail");
  b.brakes.canary = f.opt_int64("canary");
  if (auto budget = f.opt_string("max_failures")) {
    auto with_budget = parse_max_failures(*budget, b.brakes);
    if (!with_budget) f.fail("max_failures", with_budget.error().message);
    b.brakes = *with_budget;
  }
  b.ended = f.int64("ended");
  b.failed = f.int64("failed");
  return b;
}

}  // namespace kpsd
