// End to end: the metrics endpoint and the status page's API, as Prometheus and a browser read
// them.
#include "e2e_rig.hpp"
#include "notify_listener.hpp"
#include "raw_client.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>
#include <sys/stat.h>
#include <thread>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

// The body of an HTTP answer from http_get, parsed as JSON.
json::object api_json(std::uint16_t port, const std::string& path) {
  std::string answer = http_get(port, path);
  auto body = answer.find("\r\n\r\n");
  REQUIRE_MESSAGE(body != std::string::npos, answer);
  return json::parse(answer.substr(body + 4)).as_object();
}

}  // namespace

TEST_CASE("the metrics endpoint counts calls and jobs as they complete") {
  Rig rig({.fake = {.task_duration = 20ms}, .config = {{"metrics.listen", "127.0.0.1:0"}}});
  rig.fake().set_behavior("m-bad", fake::error_answers(400, -1, "KPS.4016"));
  rig.fake().set_behavior("m-flaky", fake::error_answers(503, 1));
  rig.start();
  auto port = rig.metrics_port();
  // The start-up line says where both are.
  CHECK(rig.log().find(", metrics on http://127.0.0.1:" + std::to_string(port) +
                       "/metrics, status page on http://127.0.0.1:" + std::to_string(port) +
                       "/\n") != std::string::npos);
  auto before = http_get(port, "/metrics");
  CHECK(before.starts_with("HTTP/1.1 200"));
  CHECK(before.find("kpsd_jobs{state=\"succeeded\"} 0") != std::string::npos);
  CHECK(before.find("kpsd_rate_limit_per_second 0") != std::string::npos);

  auto enq = rig.ctl({"enqueue", "m-1", "m-2", "m-3", "m-bad", "m-flaky"});
  REQUIRE(enq.exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"}).exit_code == 1);
  auto after = http_get(port, "/metrics");
  CHECK(after.find("kpsd_jobs{state=\"succeeded\"} 4") != std::string::npos);
  CHECK(after.find("kpsd_jobs{state=\"failed\"} 1") != std::string::npos);
  CHECK(after.find("kpsd_calls_total{outcome=\"delivered\"} 4") != std::string::npos);
  CHECK(after.find("kpsd_calls_total{outcome=\"permanent\"} 1") != std::string::npos);
  CHECK(after.find("kpsd_calls_total{outcome=\"retryable\"} 1") != std::string::npos);
  CHECK(after.find("kpsd_retries_total 1") != std::string::npos);
  CHECK(after.find("kpsd_task_polls_total{outcome=\"succeeded\"} 4") != std::string::npos);
  CHECK(after.find("kpsd_http_request_duration_seconds_count{operation=\"disassociate\"} 6") !=
        std::string::npos);
  CHECK(
      after.find(
          "kpsd_http_request_duration_seconds_bucket{operation=\"disassociate\",le=\"+Inf\"} 6") !=
      std::string::npos);
  CHECK(http_get(port, "/other").starts_with("HTTP/1.1 404"));
  CHECK(after.find(token) == std::string::npos);
  // HEAD as GET without a body, for every GET route; other methods 405 with Allow.
  for (const char* path : {"/", "/metrics", "/api/overview", "/static/app.js"}) {
    CAPTURE(path);
    std::string head = http_request(port, "HEAD", path);
    CHECK(head.starts_with("HTTP/1.1 200"));
    CHECK(head.find("Content-Length: 0\r\n") == std::string::npos);
    CHECK(head.ends_with("\r\n\r\n"));  // no body
  }
  CHECK(http_request(port, "HEAD", "/other").starts_with("HTTP/1.1 404"));
  for (const char* method : {"POST", "PUT", "DELETE"}) {
    std::string refused = http_request(port, method, "/metrics");
    CHECK(refused.starts_with("HTTP/1.1 405"));
    CHECK(refused.find("Allow: GET, HEAD\r\n") != std::string::npos);
  }
}

TEST_CASE(
    "metrics for alerting: known labels from 0 - finished jobs - blocked reason - every name the "
    "rules use") {
  Rig rig({.fake = {.task_duration = 20ms}, .config = {{"metrics.listen", "127.0.0.1:0"}}});
  rig.fake().set_behavior("a-bad", fake::error_answers(400, -1, "KPS.4016"));
  rig.start();
  auto port = rig.metrics_port();
  std::string fresh = http_get(port, "/metrics");
  for (const char* line :
       {"kpsd_calls_total{outcome=\"delivered\"} 0", "kpsd_calls_total{outcome=\"blocked\"} 0",
        "kpsd_calls_total{outcome=\"cancelled\"} 0", "kpsd_task_polls_total{outcome=\"failed\"} 0",
        "kpsd_jobs_finished_total{state=\"failed\"} 0", "kpsd_blocked{reason=\"credentials\"} 0",
        "kpsd_blocked{reason=\"tls\"} 0", "kpsd_blocked{reason=\"descriptors\"} 0",
        "kpsd_oldest_queued_age_seconds 0", "kpsd_jobs_pruned_total 0",
        "kpsd_http_request_duration_seconds_count{operation=\"failed_tasks\"} 0",
        "kpsd_build_info{version=\"" KPSD_VERSION "\"} 1"}) {
    CHECK_MESSAGE(fresh.find(std::string(line) + "\n") != std::string::npos, line);
  }

  // Every kpsd_ name in the shipped rules and dashboard is served.
  std::string shipped = slurp(KPSD_SOURCE_DIR "/conf/prometheus/kpsd-alerts.yml") +
                        slurp(KPSD_SOURCE_DIR "/conf/grafana/kpsd-dashboard.json");
  std::set<std::string> names;
  const std::regex metric_name("kpsd_[a-z_]+");
  for (std::sregex_iterator it(shipped.begin(), shipped.end(), metric_name), end; it != end; ++it) {
    names.insert(it->str());
  }
  CHECK(names.size() >= 12);
  for (const auto& name : names) {
    bool served = fresh.find("\n# TYPE " + name + " ") != std::string::npos ||
                  fresh.find("\n" + name + "{") != std::string::npos;
    CHECK_MESSAGE(served, name << " is used by conf/ but kpsd does not serve it");
  }
  if (::access("/usr/bin/promtool", X_OK) == 0) {
    std::string scrape = rig.dir().write("scrape.txt", fresh.substr(fresh.find("\r\n\r\n") + 4));
    auto lint = run_command({"/bin/sh", "-c", "promtool check metrics < " + scrape},
                            rig.dir().path().string(), 30s);
    CHECK_MESSAGE(lint.exit_code == 0, lint.out << lint.err);
  } else {
    MESSAGE("SKIPPED: promtool check metrics (promtool is not installed)");
  }

  auto enq = rig.ctl({"enqueue", "a-1", "a-2", "a-bad"});
  REQUIRE(enq.exit_code == 0);
  rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"});
  std::string after = http_get(port, "/metrics");
  CHECK(after.find("kpsd_jobs_finished_total{state=\"succeeded\"} 2\n") != std::string::npos);
  CHECK(after.find("kpsd_jobs_finished_total{state=\"failed\"} 1\n") != std::string::npos);
  CHECK(after.find("kpsd_retries_total 0\n") != std::string::npos);

  // The token file goes away: calls pause with reason credentials, and a queued job waits.
  ::unlink(rig.dir().file("token").c_str());
  rig.daemon().signal(SIGHUP);
  REQUIRE(rig.ctl({"enqueue", "a-3"}).exit_code == 0);
  wait_until(
      [&] {
        return http_get(port, "/metrics").find("kpsd_blocked{reason=\"credentials\"} 1\n") !=
               std::string::npos;
      },
      20s, "kpsd_blocked{reason=credentials} 1");
  std::string blocked = http_get(port, "/metrics");
  CHECK(blocked.find("kpsd_blocked{reason=\"tls\"} 0\n") != std::string::npos);
  CHECK(blocked.find("kpsd_calls_total{outcome=\"blocked\"} ") != std::string::npos);
  CHECK(blocked.find("kpsd_retries_total 0\n") != std::string::npos);  // blocked is not a retry
  CHECK(rig.stop() == 0);
}

TEST_CASE("the status page's API: overview - failures paged and filtered - job detail - headers") {
  Rig rig({.fake = {.task_duration = 20ms}, .config = {{"metrics.listen", "127.0.0.1:0"}}});
  rig.fake().set_behavior("w-bad-1", fake::error_answers(400, -1, "KPS.4016"));
  rig.fake().set_behavior("w-bad-2", fake::error_answers(400, -1, "KPS.6004"));
  rig.start();
  auto port = rig.metrics_port();
  std::string key_file = rig.dir().write("pw", "page-secret-pw\n");
  auto enq = rig.ctl({"enqueue", "--batch", "web", "--auth-type", "password", "--key-file",
                      key_file, "w-1", "w-2", "w-bad-1", "w-bad-2"});
  REQUIRE(enq.exit_code == 0);
  rig.ctl({"wait", "--batch", "web", "--timeout", "60"});

  std::string page = http_get(port, "/");
  CHECK(page.starts_with("HTTP/1.1 200"));
  CHECK(page.find("Content-Security-Policy: default-src 'none'; script-src 'self';") !=
        std::string::npos);
  CHECK(page.find("X-Content-Type-Options: nosniff") != std::string::npos);
  CHECK(page.find("<script src=\"/static/app.js\" defer></script>") != std::string::npos);
  CHECK(page.find("<script>") == std::string::npos);  // no inline script
  CHECK(http_get(port, "/static/app.js").find("Content-Type: text/javascript") !=
        std::string::npos);
  CHECK(http_get(port, "/static/nope.js").starts_with("HTTP/1.1 404"));
  CHECK(http_get(port, "/api/nope").starts_with("HTTP/1.1 404"));

  auto overview = api_json(port, "/api/overview");
  auto stats = rig.ctl_json({"stats"});
  CHECK(overview.at("total").as_int64() == stats.at("total").as_int64());
  CHECK(overview.at("states").at("failed").as_int64() == 2);
  CHECK(overview.at("batches").as_array()[0].at("name").as_string() == "web");
  CHECK(overview.at("batches").as_array()[0].at("states").at("succeeded").as_int64() == 2);
  CHECK(overview.at("history").as_array().size() == 360);
  std::int64_t finished = 0;
  for (const auto& minute : overview.at("history").as_array()) {
    finished += minute.at("succeeded").as_int64() + minute.at("failed").as_int64();
  }
  CHECK(finished == 4);
  CHECK(overview.at("blocked").is_null());

  auto failures = api_json(port, "/api/failures?batch=web");
  auto jobs = failures.at("jobs").as_array();
  REQUIRE(jobs.size() == 2);
  CHECK(jobs[0].at("error_code").as_string() == "KPS.4016");
  CHECK(jobs[1].at("error_code").as_string() == "KPS.6004");
  CHECK(jobs[0].at("last_request_id").is_string());
  auto paged = api_json(port, "/api/failures?batch=web&state=any&limit=3");
  CHECK(paged.at("jobs").as_array().size() == 3);
  std::int64_t next = paged.at("next_after_id").as_int64();
  auto rest =
      api_json(port, "/api/failures?batch=web&state=any&limit=3&after=" + std::to_string(next));
  CHECK(rest.at("jobs").as_array().size() == 1);
  CHECK(http_get(port, "/api/failures?limit=0").starts_with("HTTP/1.1 400"));
  CHECK(http_get(port, "/api/failures?state=bogus").starts_with("HTTP/1.1 400"));
  CHECK(http_get(port, "/api/failures?batch=nope").starts_with("HTTP/1.1 404"));

  std::int64_t id = jobs[0].at("id").as_int64();
  auto detail = api_json(port, "/api/jobs/" + std::to_string(id));
  CHECK(detail.at("job").at("auth_type").as_string() == "password");
  CHECK(detail.at("attempts").as_array().size() == 1);
  CHECK(http_get(port, "/api/jobs/999999").starts_with("HTTP/1.1 404"));
  CHECK(http_get(port, "/api/jobs/x").starts_with("HTTP/1.1 400"));

  // No secret is ever served: the key, the token.
  for (const char* path :
       {"/api/overview", "/api/failures?state=any", "/api/jobs/1", "/api/jobs/3"}) {
    std::string answer = http_get(port, path);
    CHECK(answer.find("page-secret-pw") == std::string::npos);
    CHECK(answer.find(token) == std::string::npos);
  }
  CHECK(rig.stop() == 0);
}
