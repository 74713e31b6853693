#include "app/preflight.hpp"
#include "auth/credential_answers.hpp"
#include "kps/classify.hpp"
#include "result_strings.hpp"
#include "web/status_api.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

using namespace kpsd;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {
const auto now = std::chrono::system_clock::from_time_t(1764000000);  // 2025-11-24T16:00:00Z

HttpResult response(unsigned status, std::string body, std::string retry_after = "") {
  HttpResult r;
  r.status = status;
  r.body = std::move(body);
  r.request_id = "req-42";
  r.retry_after = std::move(retry_after);
  return r;
}

HttpResult transport(HttpResult::Transport kind) {
  HttpResult r;
  r.transport = kind;
  r.transport_detail = "Connection refused";
  return r;
}
}  // namespace

TEST_CASE("disassociate body: reset form port and replace form") {
  CHECK(json::parse(make_disassociate_body("srv-1", std::nullopt, nullptr)) ==
        json::parse(R"({"server":{"id":"srv-1"}})"));
  CHECK(json::parse(make_disassociate_body("srv-1", 2222, nullptr)) ==
        json::parse(R"({"server":{"id":"srv-1","port":2222}})"));
  JobAuth auth{"keypair", Secret("-----BEGIN RSA PRIVATE KEY-----\n\"quoted\"\n")};
  CHECK(json::parse(make_disassociate_body("srv-1", std::nullopt, &auth)) ==
        json::parse(R"({"server":{"id":"srv-1","auth":{"type":"keypair",)"
                    R"("key":"-----BEGIN RSA PRIVATE KEY-----\n\"quoted\"\n"}}})"));
}

TEST_CASE("202 bodies: task_id with or without status") {
  auto a = parse_accepted_body(R"({"task_id":"t1","status":"SUCCESS","server_id":"s"})");
  REQUIRE(a);
  CHECK(a->task_id == "t1");
  CHECK(a->status == "SUCCESS");
  auto b = parse_accepted_body(R"({"task_id":"t2"})");
  REQUIRE(b);
  CHECK(b->status.empty());
  auto c = parse_accepted_body(R"({"status":"FAILED","error_code":"KPS.0003","error_msg":"x"})");
  REQUIRE(c);
  CHECK(c->error_code == "KPS.0003");
  CHECK(parse_accepted_body(R"({"status":"SUCCESS"})").error().message == "no task_id");
  CHECK(parse_accepted_body(R"({"task_id":)").error().message == "response body is not JSON");
  CHECK(parse_accepted_body("").error().message == "empty response body");
  CHECK_FALSE(parse_accepted_body("[1]"));
}

TEST_CASE("error bodies: error_code/error_msg falling back to code/message") {
  auto e = parse_error_body(R"({"error_code":"KPS.4016","error_msg":"key pair does not exist"})");
  CHECK(e.code == "KPS.4016");
  CHECK(e.message == "key pair does not exist");
  auto f = parse_error_body(R"({"code":"APIGW.0101","message":"not found"})");
  CHECK(f.code == "APIGW.0101");
  CHECK(f.message == "not found");
  auto g = parse_error_body("<html>bad gateway</html>");
  CHECK(g.code.empty());
}

TEST_CASE("task status rule: SUCCESS_x done FAILED_x failed anything else pending") {
  CHECK(task_phase("SUCCESS_UNBIND") == TaskPhase::succeeded);
  CHECK(task_phase("SUCCESS_RESET") == TaskPhase::succeeded);
  CHECK(task_phase("FAILED_UNBIND") == TaskPhase::failed);
  CHECK(task_phase("FAILED_REPLACE") == TaskPhase::failed);
  CHECK(task_phase("READY_UNBIND") == TaskPhase::pending);
  CHECK(task_phase("RUNNING_UNBIND") == TaskPhase::pending);
  CHECK(task_phase("") == TaskPhase::pending);
  auto t = parse_task_body(R"({"server_id":"s","task_id":"t","task_status":"RUNNING_UNBIND"})");
  REQUIRE(t);
  CHECK(t->task_status == "RUNNING_UNBIND");
  CHECK_FALSE(parse_task_body(R"({"task_id":"t"})"));
}

TEST_CASE("Retry-After in seconds and as an HTTP date") {
  CHECK(parse_retry_after("5", now) == 5000ms);
  CHECK(parse_retry_after(" 0 ", now) == 0ms);
  CHECK(parse_retry_after("Mon, 24 Nov 2025 16:00:30 GMT", now) == 30000ms);
  CHECK(parse_retry_after("Mon, 24 Nov 2025 15:00:00 GMT", now) == 0ms);  // in the past
  // RFC 9110's two obsolete date forms, which a recipient must accept too.
  CHECK(parse_retry_after("Monday, 24-Nov-25 16:00:30 GMT", now) == 30000ms);
  CHECK(parse_retry_after("Mon Nov 24 16:00:30 2025", now) == 30000ms);
  CHECK(parse_retry_after("Mon Nov  3 15:00:00 2025", now) == 0ms);  // padded day, in the past
  CHECK_FALSE(parse_retry_after("", now));
  CHECK_FALSE(parse_retry_after("soon", now));
  CHECK_FALSE(parse_retry_after("Mon, 24 Nov 2025 16:00:30 PST", now));
  CHECK_FALSE(parse_retry_after("-5", now));
  // Found by fuzz_retry_after: dates the clock cannot hold (it overflows in 2262) are not read.
  CHECK_FALSE(parse_retry_after("Sun Nov  6 08:49:37 2477", now));
  CHECK_FALSE(parse_retry_after(std::string("Sun Nov  6 08:49:37 19\0\0\094", 27), now));
}

TEST_CASE("classifier: every kind of outcome") {
  auto delivered =
      classify_disassociate(response(202, R"({"task_id":"t","status":"SUCCESS"})"), now);
  CHECK(delivered.verdict == Verdict::delivered);
  CHECK(delivered.task_id == "t");
  CHECK(delivered.request_id == "req-42");
  CHECK(delivered.http_status == 202);
  CHECK(classify_disassociate(response(202, R"({"task_id":"t"})"), now).verdict ==
        Verdict::delivered);

  auto failed202 = classify_disassociate(
      response(202, R"({"status":"FAILED","error_code":"KPS.0003","error_msg":"dep"})"), now);
  CHECK(failed202.verdict == Verdict::retryable);
  CHECK(failed202.delivery_status == "FAILED");
  CHECK(failed202.error_code == "KPS.0003");

  auto garbage = classify_disassociate(response(202, "{not json"), now);
  CHECK(garbage.verdict == Verdict::unknown);  // accepted: the server may be unbinding
  CHECK(garbage.error_msg == "202 with an unreadable body: response body is not JSON");

  for (unsigned status : {400u, 403u, 404u, 409u}) {
    auto p = classify_disassociate(
        response(status, R"({"error_code":"KPS.4016","error_msg":"key pair does not exist"})"),
        now);
    CHECK(p.verdict == Verdict::permanent);
    CHECK(p.error_code == "KPS.4016");
    CHECK(p.error_msg == "key pair does not exist");
  }
  for (unsigned status : {500u, 502u, 503u, 504u}) {
    CHECK(classify_disassociate(response(status, "<html/>"), now).verdict == Verdict::retryable);
  }
  auto throttled = classify_disassociate(
      response(429, R"({"error_code":"APIGW.0308","error_msg":"throttled"})", "7"), now);
  CHECK(throttled.verdict == Verdict::throttled);
  CHECK(throttled.retry_after == 7000ms);
  CHECK(classify_disassociate(response(401, R"({"error_code":"APIGW.0301"})"), now).verdict ==
        Verdict::reauthenticate);
  auto refused = classify_disassociate(transport(HttpResult::Transport::connect_failed), now);
  CHECK(refused.verdict == Verdict::retryable);
  CHECK_FALSE(refused.http_status.has_value());
  CHECK(refused.error_msg == "connect failed: Connection refused");
  CHECK(classify_disassociate(transport(HttpResult::Transport::timed_out), now).verdict ==
        Verdict::retryable);
  CHECK(classify_disassociate(transport(HttpResult::Transport::io_error), now).verdict ==
        Verdict::retryable);
  // A 3xx is no gateway acting on the call: sent again after backoff.
  CHECK(classify_disassociate(response(302, ""), now).verdict == Verdict::retryable);
}

TEST_CASE("any 2xx with a task id is an accepted call - without one the outcome is unknown") {
  // Issue 30 item 4: a 200 {"task_id","status":"SUCCESS"} was retried 4 times as "unexpected
  // HTTP 200" and ended failed.
  for (unsigned status : {200u, 201u, 202u}) {
    CAPTURE(status);
    auto ok =
        classify_disassociate(response(status, R"({"task_id":"t-9","status":"SUCCESS"})"), now);
    CHECK(ok.verdict == Verdict::delivered);
    CHECK(ok.task_id == "t-9");
    CHECK(ok.http_status == status);
    // Accepted, but no task id: the server may be unbinding now. Looked for, never resent blind.
    auto none = classify_disassociate(response(status, "{}"), now);
    CHECK(none.verdict == Verdict::unknown);
    CHECK(none.error_msg == std::to_string(status) + " with an unreadable body: no task_id");
    auto failed = classify_disassociate(response(status, R"({"status":"FAILED"})"), now);
    CHECK(failed.verdict == Verdict::retryable);
    CHECK(failed.error_msg ==
          "task delivery failed (" + std::to_string(status) + " with status FAILED)");
  }
}

TEST_CASE("an answer in a content coding kpsd did not ask for is unknown - named as such") {
  // Issue 30 item 8: a gzipped 202 was "not JSON" and retried blind three times.
  HttpResult gz = response(202, std::string("\x1f\x8b\x08\x00", 4));
  gz.content_encoding = "gzip";
  auto out = classify_disassociate(gz, now);
  CHECK(out.verdict == Verdict::unknown);
  CHECK(out.error_msg ==
        "answer in content coding gzip (HTTP 202): kpsd asked for identity and cannot read it");
  // Even a body that happens to parse is not trusted under a coding.
  HttpResult br = response(200, R"({"task_id":"t"})");
  br.content_encoding = "br";
  CHECK(classify_disassociate(br, now).verdict == Verdict::unknown);
  // identity (any case, padded) and none are readable.
  for (std::string coding : {"", "identity", " Identity ", "IDENTITY"}) {
    HttpResult id = response(202, R"({"task_id":"t"})");
    id.content_encoding = coding;
    CHECK(classify_disassociate(id, now).verdict == Verdict::delivered);
  }
  // An error status keeps its verdict whatever its body's coding.
  HttpResult e500 = response(500, "\x1f\x8b");
  e500.content_encoding = "gzip";
  CHECK(classify_disassociate(e500, now).verdict == Verdict::retryable);
  // A control character in the coding's name is not logged as it is.
  HttpResult odd = response(202, "");
  odd.content_encoding = "x\n<0>forged";
  CHECK(classify_disassociate(odd, now).error_msg.find('\n') == std::string::npos);
  // A task poll in a coding: no answer, asked again (not "not JSON" taken for a refusal).
  HttpResult poll = response(200, "\x1f\x8b");
  poll.content_encoding = "gzip";
  auto p = classify_task_poll(poll, "t");
  CHECK(p.kind == PollOutcome::Kind::no_answer);
  CHECK(p.error_msg == "answer in content coding gzip");
}

TEST_CASE("failed-tasks bodies keep each task's reason") {
  auto page = parse_failed_tasks_body(
      R"({"total":2,"tasks":[{"task_id":"t1","server_id":"s1","operate_type":"unbind",)"
      R"("task_error_code":"KPS.0003","task_error_msg":"ssh refused"},{"task_id":"t2"}]})");
  REQUIRE(page);
  CHECK(page->total == 2);
  REQUIRE(page->tasks.size() == 2);
  CHECK(page->tasks[0].task_id == "t1");
  CHECK(page->tasks[0].error_code == "KPS.0003");
  CHECK(page->tasks[0].error_msg == "ssh refused");
  CHECK(parse_failed_tasks_body(R"({"total":0})").error().message ==
        "task list response without a tasks array");
}

TEST_CASE("failed-tasks: a total that is not an exact count is ignored without throwing") {
  for (const char* total : {"1.5", "1e30", "-3", "18446744073709551615", "\"7\""}) {
    CAPTURE(total);
    std::string body = std::string(R"({"total":)") + total +
                       R"(,"tasks":[{"task_id":"t-1","operate_type":"unbind","error_code":"E1"}]})";
    Result<FailedTasksPage> page = fail("not parsed");
    CHECK_NOTHROW(page = parse_failed_tasks_body(body));
    REQUIRE(page.has_value());
    CHECK(page->total == 0);
    CHECK(page->tasks.size() == 1);
  }
  auto exact = parse_failed_tasks_body(R"({"total":12,"tasks":[]})");
  REQUIRE(exact.has_value());
  CHECK(exact->total == 12);
}

TEST_CASE("IAM token answer: expires_at is read - anything else gives nothing") {
  auto at = parse_iam_token_expiry(R"({"token":{"expires_at":"2026-11-27T12:00:00.000000Z"}})");
  REQUIRE(at.has_value());
  CHECK(std::chrono::duration_cast<std::chrono::seconds>(at->time_since_epoch()).count() ==
        1795780800);
  CHECK_FALSE(parse_iam_token_expiry(R"({"token":{"expires_at":"tomorrow"}})"));
  CHECK_FALSE(parse_iam_token_expiry(R"({"token":{"expires_at":5}})"));
  CHECK_FALSE(parse_iam_token_expiry(R"({"token":[]})"));
  CHECK_FALSE(parse_iam_token_expiry("not json"));
  // Found by fuzz_kps_bodies: years the clock cannot hold.
  CHECK_FALSE(parse_iam_token_expiry(R"({"token":{"expires_at":"2347-11-27T12:00:00.000000Z"}})"));
  CHECK_FALSE(parse_iam_token_expiry(R"({"token":{"expires_at":"1013-11-27T12:00:00.00000Z"}})"));
}

TEST_CASE("preflight verdicts: each answer gets its exit code and a reason naming the cause") {
  HttpResult r;
  r.transport = HttpResult::Transport::tls_failed;
  r.transport_detail = "certificate verify failed";
  auto tls = judge_preflight(r, "https://kms.example");
  CHECK(tls.exit_code == 69);
  CHECK(tls.message ==
        "TLS with https://kms.example failed: certificate verify failed "
        "(kps.ca_file for a private CA)");
  r = HttpResult{};
  r.status = 403;
  r.body = R"({"error_code":"KPS.9003","error_msg":"no permission"})";
  r.request_id = "req-9";
  auto forbidden = judge_preflight(r, "e");
  CHECK(forbidden.exit_code == 77);
  CHECK(forbidden.message.starts_with(
      "not permitted: HTTP 403 KPS.9003: no permission (X-Request-Id req-9)"));
  r.status = 503;
  r.body = "";
  CHECK(judge_preflight(r, "e").exit_code == 69);
  r.status = 200;
  r.body = "<html>a proxy page</html>";
  auto not_kps = judge_preflight(r, "e");
  CHECK(not_kps.exit_code == 69);
  CHECK(not_kps.message.find("is kps.endpoint the KPS (KMS) endpoint?") != std::string::npos);
  r.body = R"({"total": 3, "tasks": []})";
  auto ok = judge_preflight(r, "e");
  CHECK(ok.exit_code == 0);
  CHECK(ok.message.find("3 failed tasks on record") != std::string::npos);
}

TEST_CASE("status page query strings: percent-decoding - plus - empty and repeated keys") {
  auto q = parse_query("batch=night%20run&state=failed&after=&x+y=a+b&state=any&&bad=%zz%4");
  CHECK(q["batch"] == "night run");
  CHECK(q["state"] == "any");  // a later key replaces an earlier one
  CHECK(q["after"].empty());
  CHECK(q["x y"] == "a b");
  CHECK(q["bad"] == "%zz%4");  // not an escape: kept as written
  CHECK(q.size() == 5);
}

TEST_CASE("task poll: answered - no answer - refused each classified in one place") {
  auto ok = classify_task_poll(
      response(200, R"({"server_id":"s","task_id":"t-1","task_status":"SUCCESS_UNBIND"})"), "t-1");
  CHECK(ok.kind == PollOutcome::Kind::answered);
  CHECK(ok.task_status == "SUCCESS_UNBIND");
  CHECK(poll_label(ok) == "succeeded");
  CHECK(poll_label(classify_task_poll(
            response(200, R"({"task_id":"t","task_status":"FAILED_UNBIND"})"), "t")) == "failed");
  CHECK(poll_label(classify_task_poll(
            response(200, R"({"task_id":"t","task_status":"RUNNING_UNBIND"})"), "t")) == "pending");
  for (unsigned status : {401u, 429u, 500u, 503u}) {
    auto p = classify_task_poll(response(status, "{}"), "t");
    CHECK(p.kind == PollOutcome::Kind::no_answer);
    CHECK(p.error_msg == "HTTP " + std::to_string(status));
  }
  auto garbage = classify_task_poll(response(200, "{\"task_id\":"), "t");
  CHECK(garbage.kind == PollOutcome::Kind::no_answer);
  CHECK(poll_label(garbage) == "no_answer");
  HttpResult cut;
  cut.transport = HttpResult::Transport::io_error;
  cut.transport_detail = "read: end of stream";
  cut.request_sent = true;
  CHECK(classify_task_poll(cut, "t").error_msg == "read: end of stream");
  auto refused =
      classify_task_poll(response(403, R"({"error_code":"KPS.9003","error_msg":"no"})"), "t-9");
  CHECK(refused.kind == PollOutcome::Kind::rejected);
  CHECK(refused.error_code == "KPS.9003");
  CHECK(refused.error_msg == "HTTP 403: no");
  CHECK(refused.task_id == "t-9");
  CHECK(poll_label(refused) == "rejected");
}

TEST_CASE("an answer unreadable after the request was sent is an unknown outcome not a refusal") {
  HttpResult r;
  r.transport = HttpResult::Transport::io_error;
  r.transport_detail = "read: header limit exceeded";
  r.request_sent = true;
  auto o = classify_disassociate(r, now);
  CHECK(o.verdict == Verdict::unknown);
  CHECK(o.error_msg == "answer unreadable after send: read: header limit exceeded");
  r.request_sent = false;  // the write failed: nothing reached the server
  CHECK(classify_disassociate(r, now).verdict == Verdict::retryable);
  r.transport = HttpResult::Transport::timed_out;
  r.request_sent = true;
  CHECK(classify_disassociate(r, now).verdict == Verdict::unknown);
}

TEST_CASE("task lists: task_time as a string or an integer - operate_type - running tasks") {
  auto page = parse_task_list_body(
      R"({"total":3,"tasks":[)"
      R"({"task_id":"a","server_id":"s1","operate_type":"UNBIND","task_time":"1764500000000"},)"
      R"({"task_id":"b","server_id":"s2","task_time":1764500000001,"server_name":"ecs"},)"
      R"({"task_id":"c","server_id":"s3","task_time":"yesterday"},7]})");
  REQUIRE(page);
  CHECK(page->total == 3);
  REQUIRE(page->tasks.size() == 3);  // the 7 is not a task: skipped
  CHECK(page->tasks[0].operate_type == "UNBIND");
  CHECK(page->tasks[0].task_time_ms == 1764500000000);
  CHECK(page->tasks[1].task_time_ms == 1764500000001);
  CHECK_FALSE(page->tasks[2].task_time_ms.has_value());
  auto seconds = parse_task_list_body(R"({"tasks":[{"task_id":"s","task_time":"1764500000"}]})");
  REQUIRE(seconds);
  CHECK(seconds->tasks.at(0).task_time_ms == 1764500000000);  // seconds, read as such
  for (const char* bad : {"\"-5\"", "\"12abc\"", "\"\"", "1.5", "true", "-1"}) {
    CAPTURE(bad);
    auto p =
        parse_task_list_body(std::string(R"({"tasks":[{"task_id":"x","task_time":)") + bad + "}]}");
    REQUIRE(p);
    CHECK_FALSE(p->tasks.at(0).task_time_ms.has_value());
  }
}
