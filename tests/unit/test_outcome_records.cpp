// The records written when a call or a poll ends, each built in one place.
#include "scheduling/outcome_records.hpp"

#include <doctest/doctest.h>

using namespace kpsd;
using namespace std::chrono_literals;

TEST_CASE("an attempt's record carries its answer and the decision's next state") {
  DeliveryWork w;
  w.job_id = 7;
  w.attempt_n = 3;
  AttemptOutcome o;
  o.http_status = 202;
  o.request_id = "req-1";
  o.task_id = "t-1";
  o.delivery_status = "SUCCESS";
  o.error_msg = "kept unless the decision says otherwise";
  Decision d;
  d.next = JobState::delivered;
  d.next_attempt_at = 5000;
  AttemptFinish f = attempt_finish(w, o, d, 1000, 42ms);
  CHECK(f.job_id == 7);
  CHECK(f.attempt_n == 3);
  CHECK(f.finished_at == 1000);
  CHECK(f.latency_ms == 42);
  CHECK(f.http_status == 202);
  CHECK(f.request_id == "req-1");
  CHECK(f.task_id == "t-1");
  CHECK(f.error_msg == o.error_msg);
  CHECK(f.next_state == JobState::delivered);
  CHECK(f.next_attempt_at == 5000);
  CHECK_FALSE(f.release_claim);
  d.error_msg = "gave up after 8 attempts: x";
  CHECK(attempt_finish(w, o, d, 1000).error_msg == d.error_msg);
}

TEST_CASE("released claims and leases send the job back due at once") {
  DeliveryWork w;
  w.job_id = 1;
  w.attempt_n = 2;
  AttemptFinish f = claim_released(w, 900);
  CHECK(f.release_claim);
  CHECK(f.next_state == JobState::queued);
  CHECK(f.next_attempt_at == 900);
  PollWork p;
  p.job_id = 4;
  p.lease_until = 77;
  p.poll_refusals = 2;
  PollFinish l = lease_released(p, 900);
  CHECK(l.next_state == JobState::delivered);
  CHECK(l.next_attempt_at == 900);
  CHECK(l.lease_until == 77);
  CHECK(l.poll_refusals == 2);
  CHECK_FALSE(l.task_status.has_value());
}

TEST_CASE("a poll's record keeps the task status only when answered and the failed task's reason") {
  PollWork w;
  w.job_id = 9;
  w.lease_until = 55;
  PollOutcome p;
  p.kind = PollOutcome::Kind::answered;
  p.task_status = "FAILED_UNBIND";
  p.task_error_code = "KPS.0003";
  p.task_error_msg = "ssh";
  PollDecision d;
  d.next = JobState::retrying;
  d.next_attempt_at = 3000;
  d.error_msg = "task ended FAILED_UNBIND: ssh";
  PollFinish f = poll_finish(w, p, d, 2000);
  CHECK(f.task_status == "FAILED_UNBIND");
  CHECK(f.task_error_code == "KPS.0003");
  CHECK(f.next_state == JobState::retrying);
  CHECK(f.lease_until == 55);
  p.kind = PollOutcome::Kind::no_answer;
  p.task_error_code.clear();
  PollFinish none = poll_finish(w, p, d, 2000);
  CHECK_FALSE(none.task_status.has_value());
  CHECK_FALSE(none.task_error_code.has_value());
}
