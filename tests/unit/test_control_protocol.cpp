#include "core/zeroing_storage.hpp"
#include "ctl/job_lines.hpp"
#include "protocol/control_protocol.hpp"
#include "result_strings.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>
#include <spdlog/fmt/fmt.h>

#include <ostream>

using namespace kpsd;

TEST_CASE("control requests parse into typed values") {
  auto r = parse_control_request(
      R"({"op":"enqueue","jobs":[{"server_id":"a"},{"server_id":"b","port":22,)"
      R"("auth":{"type":"password","key":"pw"}}]})");
  REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
  auto& e = std::get<EnqueueRequest>(*r);
  REQUIRE(e.jobs.size() == 2);
  CHECK(e.jobs[1].port == 22);
  CHECK(e.jobs[1].auth->key.reveal() == "pw");

  r = parse_control_request(R"({"op":"list","state":"failed","limit":5,"after_id":10})");
  REQUIRE(r);
  auto& l = std::get<ListRequest>(*r);
  CHECK(l.query.state == JobState::failed);
  CHECK(l.query.limit == 5);
  CHECK(l.query.after_id == 10);

  r = parse_control_request(R"({"op":"show","id":7})");
  REQUIRE(r);
  CHECK(std::get<ShowRequest>(*r).id == 7);
  r = parse_control_request(R"({"op":"stats"})");
  REQUIRE(r);
  CHECK(std::holds_alternative<StatsRequest>(*r));
}

TEST_CASE("bad control requests get a message that names what is wrong") {
  struct Case {
    std::string line;
    std::string expected;
  };
  const Case cases[] = {
      {"not json", "request is not valid JSON"},
      // Found by fuzz_control_request: a parse failing mid-object freed blocks with another
      // size and alignment than they were allocated with (tests/fuzz/corpus/.../regression-*).
      {R"({"op":"retry","state":"op":"retryfailed"})", "request is not valid JSON"},
      {"[1,2]", "request must be a JSON object"},
      {"{}", "op is missing"},
      {R"({"op":5})", "op must be a string"},
      {R"({"op":"explode"})", "unknown op \"explode\""},
      {R"({"op":"stats","op":"pause"})", "duplicate key \"op\" in the request"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a"},{"server_id":"b","port":22,"port":23}]})",
       "duplicate key \"port\""},
      {R"({"op":"enqueue","jobs":[{"server_id":"a","auth":{"type":"password","key":"x","key":"y"}}]})",
       "duplicate key \"key\""},
      {R"({"op":"enqueue"})", "jobs is missing"},
      {R"({"op":"enqueue","jobs":{}})", "jobs must be an array"},
      {R"({"op":"enqueue","jobs":[]})", "jobs is empty"},
      {R"({"op":"enqueue","jobs":[5]})", "jobs[0] must be an object"},
      {R"({"op":"enqueue","jobs":[{}]})", "jobs[0].server_id is missing"},
      {R"({"op":"enqueue","jobs":[{"server_id":""}]})", "jobs[0].server_id is empty"},
      {R"({"op":"enqueue","jobs":[{"server_id":7}]})", "jobs[0].server_id must be a string"},
      {R"({"op":"enqueue","jobs":[{"server_id":")" + std::string(65, 'a') + R"("}]})",
       "jobs[0].server_id is longer than 64"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a b"}]})", "jobs[0].server_id may only hold"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a","port":0}]})", "jobs[0].port must be between 1"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a","port":"22"}]})",
       "jobs[0].port must be an integer"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a","color":1}]})", "unknown field jobs[0].color"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a","auth":{"type":"x","key":"k"}}]})",
       "jobs[0].auth.type must be"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a","auth":{"type":"password"}}]})",
       "jobs[0].auth.key is missing"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a","auth":{"type":"password","key":""}}]})",
       "jobs[0].auth.key is empty"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a","auth":"pw"}]})",
       "jobs[0].auth must be an object"},
      {R"({"op":"list","state":"sleeping"})", "state \"sleeping\" is not a job state"},
      {R"({"op":"list","limit":0})", "limit must be between 1"},
      {R"({"op":"list","limit":1.5})", "limit must be an integer"},
      {R"({"op":"show"})", "id is missing"},
      {R"({"op":"show","id":-3})", "id must be between 1"},
      {R"({"op":"stats","extra":1})", "unknown field extra"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.line);
    auto r = parse_control_request(c.line);
    REQUIRE_FALSE(r);
    const std::string& error = r.error().message;
    CHECK_MESSAGE(error.starts_with(c.expected), error);
  }
}

TEST_CASE("an auth key never appears in an error message") {
  auto r = parse_control_request(
      R"({"op":"enqueue","jobs":[{"server_id":"a","auth":{"type":"bogus","key":"TOPSECRET"}}]})");
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("TOPSECRET") == std::string::npos);
}

TEST_CASE("job JSON carries the auth type but never a key") {
  Job j;
  j.id = 3;
  j.server_id = "srv";
  j.auth_type = "keypair";
  auto o = job_to_json(j);
  CHECK(o.at("auth_type").as_string() == "keypair");
  CHECK_FALSE(o.contains("key"));
  CHECK(o.at("state").as_string() == "queued");
  CHECK(o.at("task_status").is_null());
}

TEST_CASE("a page of jobs: next_after_id only when full - request ids only when read") {
  JobPage page;
  for (std::int64_t id : {4, 9}) {
    Job j;
    j.id = id;
    j.server_id = "srv-" + std::to_string(id);
    page.jobs.push_back(j);
  }
  auto full = job_page_to_json(page, 2);
  CHECK(full.at("jobs").as_array().size() == 2);
  CHECK(full.at("next_after_id").as_int64() == 9);
  CHECK_FALSE(full.at("jobs").as_array()[0].as_object().contains("last_request_id"));
  CHECK_FALSE(job_page_to_json(page, 3).contains("next_after_id"));
  page.request_ids = {std::string("req-1"), std::nullopt};
  auto with_ids = job_page_to_json(page, 3);
  const auto& jobs = with_ids.at("jobs").as_array();
  CHECK(jobs[0].at("last_request_id").as_string() == "req-1");
  CHECK(jobs[1].at("last_request_id").is_null());
  Attempt a;
  a.job_id = 4;
  a.n = 1;
  a.http_status = 202;
  JobDetail detail{page.jobs[0], {a}};
  auto d = job_detail_to_json(detail);
  CHECK(d.at("job").at("id").as_int64() == 4);
  CHECK(d.at("attempts").as_array()[0].at("http_status").as_int64() == 202);
}

namespace {
template <class T>
concept Streamable = requires(std::ostream& os, const T& t) {
  os << t;
};
}  // namespace

TEST_CASE("a Secret cannot be streamed or formatted") {
  // Compile-time facts: logging a secret does not build.
  static_assert(Streamable<std::string>);
  static_assert(!Streamable<Secret>);
  static_assert(!fmt::is_formattable<Secret>::value);
  Secret s("hunter2");
  CHECK(s.reveal() == "hunter2");
  Secret moved(std::move(s));
  CHECK(s.empty());  // NOLINT: moved-from is wiped, by design
  CHECK(moved.reveal() == "hunter2");
}

TEST_CASE("zeroing JSON storage parses like the default") {
  boost::system::error_code ec;
  auto v = parse_json_zeroing(R"({"key":"secret value","n":[1,2,3]})", ec);
  REQUIRE_FALSE(ec);
  CHECK(v.at("key").as_string() == "secret value");
  CHECK(v.at("n").as_array().size() == 3);
  parse_json_zeroing("{bad", ec);
  CHECK(ec);
}

TEST_CASE("the same key in different objects is not a duplicate") {
  auto r = parse_control_request(
      R"({"op":"enqueue","jobs":[{"server_id":"a","port":22},{"server_id":"b","port":23}]})");
  REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
  CHECK(std::get<EnqueueRequest>(*r).jobs.size() == 2);
}

TEST_CASE("kpsctl job file lines: ids - comments - NDJSON - errors that name the problem") {
  auto l = parse_job_line("   ");
  REQUIRE(l);
  CHECK(l->kind == JobLine::Kind::skip);
  l = parse_job_line("# inventory");
  REQUIRE(l);
  CHECK(l->kind == JobLine::Kind::skip);
  l = parse_job_line("  srv-1\r");
  REQUIRE(l);
  CHECK(l->kind == JobLine::Kind::job);
  CHECK(l->job.server_id == "srv-1");
  l = parse_job_line(R"({"server_id":"s2","port":2222,"auth":{"type":"keypair","key_file":"/k"}})");
  REQUIRE(l);
  CHECK(l->job.port == 2222);
  CHECK(l->key_type == "keypair");
  CHECK(l->key_file == "/k");
  // Each error quotes the offending value; a mistyped field name gets a did-you-mean.
  auto refusal = [](std::string_view line) {
    auto parsed = parse_job_line(line);
    return parsed ? std::string() : parsed.error().message;
  };
  CHECK(refusal(R"({"server_id":"s","port":0})") ==
        "port `0` must be a whole number from 1 to 65535");
  CHECK(refusal(R"({"server_id":"s","port":"22"})") ==
        "port `\"22\"` must be a whole number from 1 to 65535");
  CHECK(refusal(R"({"server_id":"s","prot":22})") == "unknown field `prot` (did you mean `port`?)");
  CHECK(refusal(R"({"server_id":"s","colour":1})") == "unknown field `colour`");
  CHECK(refusal(R"({"port":22})") == "server_id missing");
  CHECK(refusal(R"({"server_id":7})") == "server_id `7` is not a string");
  CHECK(refusal("{nope") == "not a JSON object");
  CHECK(refusal(R"({"server_id":"s","auth":{"type":"password"}})") ==
        "auth `{\"type\":\"password\"}` must be {\"type\": \"password\"|\"keypair\", "
        "\"key_file\": PATH}");
  CHECK_FALSE(parse_job_line("a b"));
}

// kpsctl builds its requests with to_json from the typed values kpsd parses: one definition of
// the wire, checked for every op (a field one end forgets fails here, not in production).
TEST_CASE("every control request survives to_json then parse unchanged") {
  EnqueueRequest enqueue;
  enqueue.jobs.push_back(NewJob{"srv-a", std::nullopt, std::nullopt});
  enqueue.jobs.push_back(NewJob{"srv-b", 2222, JobAuth{"keypair", Secret("-----BEGIN KEY")}});
  enqueue.batch.name = "rollout-1";
  EnqueueRequest chunk = enqueue;
  chunk.batch = BatchTarget{7, std::nullopt};
  ListRequest list;
  list.query.state = JobState::failed;
  list.query.server_id = "srv-a";
  list.query.limit = 50;
  list.query.after_id = 99;
  list.batch = "rollout-1";
  ListRequest by_id;
  by_id.batch = "12";
  StatsRequest bare;
  bare.wait = true;
  bare.unfinished_since = StatsRequest::UnfinishedSince{3, 900, 1764000000000};
  StatsRequest of_batch;
  of_batch.batch = "rollout-1";
  PruneRequest older;
  older.older_than_ms = 7 * 86400000LL;
  PruneRequest before;
  before.before_ms = 1764000000000;
  RetryRequest one;
  one.ids = {5};
  RetryRequest several;
  several.ids = {5, 6, 9};
  RetryRequest all;
  all.state = JobState::cancelled;
  RetryRequest of_a_batch;
  of_a_batch.batch = "night-run";
  of_a_batch.state = JobState::failed;
  CancelRequest cancel_batch;
  cancel_batch.batch = "7";
  EnqueueRequest braked;
  braked.jobs.push_back(NewJob{"b-1", std::nullopt, std::nullopt});
  braked.batch.name = "wave-1";
  braked.batch.brakes.canary = 20;
  braked.batch.brakes.max_failure_pct = 2.5;
  EnqueueRequest counted = braked;
  counted.batch.brakes.max_failure_pct.reset();
  counted.batch.brakes.max_failures = 10;
  PruneRequest filtered;
  filtered.older_than_ms = 86400000;
  filtered.state = JobState::failed;
  filtered.batch = "wave-1";
  filtered.dry_run = true;
  const std::vector<ControlRequest> requests{enqueue,
                                             chunk,
                                             list,
                                             by_id,
                                             ListRequest{},
                                             ShowRequest{42},
                                             StatsRequest{},
                                             bare,
                                             of_batch,
                                             one,
                                             several,
                                             all,
                                             of_a_batch,
                                             CancelRequest{{8}, std::nullopt},
                                             CancelRequest{{8, 9}, std::nullopt},
                                             cancel_batch,
                                             braked,
                                             counted,
                                             filtered,
                                             PauseRequest{true, std::nullopt},
                                             PauseRequest{false, std::nullopt},
                                             PauseRequest{true, "wave-1"},
                                             PauseRequest{false, "wave-1"},
                                             BatchesRequest{5},
                                             older,
                                             before,
                                             VersionRequest{},
                                             ReloadRequest{}};
  for (const ControlRequest& r : requests) {
    std::string line = boost::json::serialize(to_json(r));
    CAPTURE(r.index());
    auto back = parse_control_request(line);
    REQUIRE_MESSAGE(back.has_value(), (back ? "" : back.error().message));
    CHECK(*back == r);
  }
}
