// The typed control replies (protocol/control_reply.hpp): every reply survives to_json then
// parse_reply unchanged, with a value other than the default in every field, and a reply that
// lacks a field or has one of the wrong type is refused with a message that names it.
#include "protocol/control_protocol.hpp"
#include "protocol/control_reply.hpp"
#include "protocol/job_json.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

using namespace kpsd;

namespace {

// Through the text on the wire, as kpsctl reads it.
template <class Reply>
Reply round_trip(const Reply& r) {
  boost::json::value v = boost::json::parse(boost::json::serialize(to_json(r)));
  Result<Reply> back = parse_reply<Reply>(v);
  REQUIRE_MESSAGE(back.has_value(), (back ? "" : back.error().message));
  return *back;
}

// `text` parsed as a Reply: the reason it was refused ("" when it parsed).
template <class Reply>
std::string refusal_of(const boost::json::value& v) {
  Result<Reply> out = parse_reply<Reply>(v);
  return out ? "" : out.error().message;
}
template <class Reply>
std::string refusal(std::string_view text) {
  return refusal_of<Reply>(boost::json::parse(text));
}

Job full_job(std::int64_t id) {
  Job j;
  j.id = id;
  j.server_id = "srv-" + std::to_string(id);
  j.state = JobState::failed;
  j.attempts = 3;
  j.next_attempt_at = 1764000000100;
  j.task_id = "task-1";
  j.delivery_status = "DELIVERED";
  j.task_status = "FAILED_UNBIND";
  j.error_code = "KPS.0001";
  j.error_msg = "bad\x1b[31m";
  j.created_at = 1764000000000;
  j.updated_at = 1764000000200;
  j.port = 2222;
  j.auth_type = "keypair";
  j.task_error_code = "ECS.1";
  j.task_error_msg = "agent gone";
  j.task_failures = 2;
  j.maybe_done = true;
  j.held = true;
  return j;
}

Attempt full_attempt() {
  Attempt a;  // job_id is not in the JSON: the job's own id says it
  a.n = 2;
  a.started_at = 1764000000000;
  a.finished_at = 1764000000500;
  a.http_status = 202;
  a.latency_ms = 480;
  a.task_id = "task-1";
  a.delivery_status = "DELIVERED";
  a.error_code = "KPS.2";
  a.error_msg = "busy";
  a.request_id = "req-9";
  a.look = "not running";
  return a;
}

Batch full_batch() {
  Batch b;
  b.id = 7;
  b.name = "night";
  b.created_at = 1764000000000;
  b.states = {{JobState::queued, 4}, {JobState::failed, 2}};
  b.paused = PauseReason::failures;
  b.paused_at = 1764000000300;
  b.paused_detail = "2 of 6 ended jobs failed (budget: 2.5%)";
  b.brakes.canary = 5;
  b.brakes.max_failure_pct = 2.5;
  b.ended = 6;
  b.failed = 2;
  return b;
}

StatsReply full_stats() {
  StatsReply r;
  StatsView& v = r.view;
  v.states = {{JobState::queued, 10}, {JobState::running, 2}, {JobState::succeeded, 5}};
  v.in_flight = 2;
  v.rate_per_second = 12.5;
  v.send_rate_per_second = 3;
  v.configured_rate_per_second = 40;
  v.throttled_share = 0.25;
  v.quota = {true, 60000, 300};
  v.paused = true;
  v.stopping = true;
  v.oldest_queued_ms = 4500;
  v.store = {false, 17, "disk full", 9000, "database is locked"};
  v.blocked = StatsView::Blocked{"token expired", "credentials", 1200};
  v.paused_batches = {{7, "night", "canary", 1764000000300, "canary done"},
                      {8, std::nullopt, "operator", 1764000000400, std::nullopt}};
  r.now_ms = 1764000001000;
  r.max_id = 900;
  r.min_unfinished_id = 3;
  r.batch = full_batch();
  r.waiting = true;
  return r;
}

}  // namespace

TEST_CASE("every control reply survives to_json then parse unchanged") {
  EnqueueReply enqueue{{{5, false}, {6, true}}, 7};
  CHECK(round_trip(enqueue) == enqueue);

  ListReply list{{full_job(4), full_job(9)}, {}, 9};
  CHECK(round_trip(list) == list);
  ListReply with_ids{{full_job(4), full_job(9)}, {std::string("req-1"), std::nullopt}, 9};
  CHECK(round_trip(with_ids) == with_ids);
  CHECK(round_trip(ListReply{}) == ListReply{});

  ShowReply show{full_job(4), {full_attempt(), full_attempt()}};
  CHECK(round_trip(show) == show);

  StatsReply stats = full_stats();
  CHECK(round_trip(stats) == stats);
  CHECK(round_trip(stats.view) == stats.view);
  StatsReply plain;  // unset optionals, a store that is fine, nothing blocked
  plain.view.store.outcomes_waiting = 1;
  CHECK(round_trip(plain) == plain);

  Batch unpaused = full_batch();
  unpaused.paused.reset();
  unpaused.paused_at = 0;  // written with a pause only
  unpaused.brakes = Brakes{std::nullopt, 10, std::nullopt};
  BatchesReply batches{{full_batch(), unpaused}};
  CHECK(round_trip(batches) == batches);

  PrunePreviewReply preview{12, {{7, JobState::failed, 4}, {0, JobState::succeeded, 8}}, 1764};
  CHECK(round_trip(preview) == preview);
  PruneReply prune{500, true, 1764};
  CHECK(round_trip(prune) == prune);
  VersionReply version{"1.4.0", 9, 4242};
  CHECK(round_trip(version) == version);

  RetryCountsReply counts{1, 2, 3, 4, 5, 7};
  CHECK(round_trip(counts) == counts);
  CancelBatchReply cancel{7, 30};
  CHECK(round_trip(cancel) == cancel);
  PerJobReply one_done{{{5, "requeued", std::nullopt}}, std::nullopt};
  CHECK(round_trip(one_done) == one_done);
  PerJobReply one_refused{{}, "no job with id 5"};
  CHECK(round_trip(one_refused) == one_refused);
  PerJobReply several{
      {{5, "cancelled", std::nullopt}, {6, std::nullopt, "job 6 has already ended"}},
      "job 6 has already ended"};
  CHECK(round_trip(several) == several);

  PauseReply all{true, std::nullopt};
  CHECK(round_trip(all) == all);
  PauseReply held{true, PauseReply::OfBatch{7, 12, true}};
  CHECK(round_trip(held) == held);
  PauseReply released{false, PauseReply::OfBatch{7, 12, false}};
  CHECK(round_trip(released) == released);

  ReloadReply reload{{"queue.concurrency 64 -> 128"}, {"control.socket"}, "ca_file: unreadable"};
  CHECK(round_trip(reload) == reload);
  CHECK(round_trip(ErrorReply{"no batch night"}) == ErrorReply{"no batch night"});
  CHECK(round_trip(ReplyEnvelope{false, "no batch night"}) ==
        ReplyEnvelope{false, "no batch night"});
  CHECK(round_trip(ReplyEnvelope{true, ""}) == ReplyEnvelope{true, ""});
}

TEST_CASE("replies keep the wire's shapes: one job's retry - pause keys - stats total") {
  using boost::json::serialize;
  CHECK(serialize(to_json(PerJobReply{{{5, "requeued", std::nullopt}}, std::nullopt})) ==
        R"({"id":5,"result":"requeued"})");
  CHECK(error_reply("too many control clients") ==
        "{\"ok\":false,\"error\":\"too many control clients\"}\n");
  CHECK(serialize(to_json(PerJobReply{{}, "no job with id 5"})) ==
        R"({"error":"no job with id 5"})");
  CHECK(serialize(to_json(PauseReply{false, PauseReply::OfBatch{7, 3, true}})) ==
        R"({"batch_id":7,"paused":false,"released":3,"changed":true})");
  CHECK(serialize(to_json(RetryCountsReply{1, 0, 0, 0, 0, 7})) ==
        R"({"requeued":1,"rechecking":0,"skipped_key_gone":0,"skipped_call_in_flight":0,)"
        R"("skipped_server_busy":0,"batch_id":7})");
  auto stats = to_json(full_stats());
  CHECK(stats.at("total").as_int64() == 17);
  CHECK(stats.at("configured_rate_per_second").is_int64());  // 40, not 4E1
}

TEST_CASE("a reply without a field or with one of the wrong type is refused, naming it") {
  Result<ReplyEnvelope> envelope =
      parse_reply<ReplyEnvelope>(boost::json::parse(R"({"ok":false,"error":"no"})"));
  REQUIRE(envelope.has_value());
  CHECK(*envelope == ReplyEnvelope{false, "no"});
  CHECK(refusal<ReplyEnvelope>(R"({"error":"x"})") == "ok is missing");
  CHECK(refusal<ReplyEnvelope>(R"({"ok":"yes"})") == "ok must be true or false");
  CHECK(refusal<EnqueueReply>("[1]") == "the reply must be an object");
  CHECK(refusal<EnqueueReply>(R"({"jobs":[{"id":1,"existing":false}]})") == "batch_id is missing");
  CHECK(refusal<EnqueueReply>(R"({"jobs":[{"id":"1","existing":false}],"batch_id":2})") ==
        "jobs[0].id must be an integer");
  CHECK(refusal<VersionReply>(R"({"version":1,"schema_version":9,"pid":1})") ==
        "version must be a string");

  auto show = to_json(ShowReply{full_job(4), {full_attempt()}});
  show.at("job").as_object().erase("server_id");
  CHECK(refusal_of<ShowReply>(show) == "job.server_id is missing");
  show = to_json(ShowReply{full_job(4), {full_attempt()}});
  show.at("attempts").as_array()[0].as_object()["http_status"] = "202";
  CHECK(refusal_of<ShowReply>(show) == "attempts[0].http_status must be an integer");
  show = to_json(ShowReply{full_job(4), {}});
  show.at("job").as_object()["state"] = "exploded";
  CHECK(refusal_of<ShowReply>(show) == "job.state is not a job state");

  auto stats = to_json(full_stats());
  stats.at("store").as_object().erase("writable");
  CHECK(refusal_of<StatsReply>(stats) == "store.writable is missing");
  stats = to_json(full_stats());
  stats.at("batch").as_object()["paused"] = "bored";
  CHECK(refusal_of<StatsReply>(stats) == "batch.paused is not a pause reason");
  stats = to_json(full_stats());
  stats["rate_per_second"] = "fast";
  CHECK(refusal_of<StatsReply>(stats) == "rate_per_second must be a number");
  stats = to_json(full_stats());
  stats.at("paused_batches").as_array()[1].as_object().erase("reason");
  CHECK(refusal_of<StatsReply>(stats) == "paused_batches[1].reason is missing");

  CHECK(refusal<ReloadReply>(R"({"applied":["a",2],"need_restart":[]})") ==
        "applied[1] must be a string");
  CHECK(refusal<PerJobReply>(R"({"results":[{"id":5}]})") == "results[0].result is missing");
  CHECK(refusal<PerJobReply>(R"({})") == "error is missing");
  CHECK(refusal<PauseReply>(R"({"batch_id":7,"paused":true,"released":3,"changed":true})") ==
        "held is missing");
  CHECK(refusal<PrunePreviewReply>(R"({"pruned":1,"more":false,"before_ms":1})") ==
        "dry_run is missing");
  // Fields a later kpsd adds are not a reason to refuse.
  CHECK(refusal<PruneReply>(R"({"pruned":1,"more":false,"before_ms":1,"new":1})").empty());
}
