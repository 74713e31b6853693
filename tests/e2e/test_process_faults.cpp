// End to end: process and descriptor faults, made for real: SIGTERM during a store outage, a
// second kpsd on the same database, 1,000 idle control connections under a 1,024-descriptor
// limit (prlimit), and idle and slow clients filling the metrics port's slots.
#include "e2e_rig.hpp"
#include "fault_helpers.hpp"
#include "notify_listener.hpp"
#include "raw_client.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <poll.h>
#include <random>
#include <regex>
#include <sstream>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;

TEST_CASE("SIGTERM during a store outage drains for the grace then exits 0 - nothing lost") {
  constexpr int concurrency = 16;
  Rig rig({.fake = {.call_delay = 300ms},
           .config = {{"queue.concurrency", std::to_string(concurrency)},
                      {"queue.drain_grace_ms", "2000"},
                      {"kps.poll_interval_ms", "50"}}});
  rig.start();
  REQUIRE(rig.ctl({"enqueue", "--file", enqueue_file(rig, "term-", 200)}).exit_code == 0);
  wait_for_calls(rig, 40);
  std::unique_ptr<SqliteLockHolder> lock =
      std::make_unique<SqliteLockHolder>(rig.dir(), rig.db_path(), 15s, "sql-term");
  REQUIRE(wait_for_store(rig, false, 5s));
  std::this_thread::sleep_for(500ms);
  auto t0 = std::chrono::steady_clock::now();
  CHECK(rig.stop(15s) == 0);
  auto took = std::chrono::steady_clock::now() - t0;
  MESSAGE("stopped " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                     << " ms after SIGTERM with the store locked (grace 2000 ms)");
  CHECK(took >= 2s);
  CHECK(took < 6s);
  CHECK(rig.log().find("could not be recorded") != std::string::npos);
  CHECK(lock->finish() == 0);
  lock.reset();

  rig.start();
  auto wait = rig.ctl({"wait", "--timeout", "60"});
  CHECK_MESSAGE(wait.exit_code == 0, wait.out << wait.err);
  int twice = 0, unexplained = 0;
  for (const auto& [id, row] : read_jobs(rig.db_path())) {
    CHECK(row.state == "succeeded");
    int lost_here = 0;
    for (const auto& a : read_attempts(rig.db_path(), row.id))
      lost_here += a.error_msg == outcome_lost;
    std::int64_t extra = rig.fake().accepted_for(id) - 1;
    twice += extra > 0;
    unexplained += extra > lost_here;
  }
  MESSAGE(twice << " delivered twice after a stop during the outage");
  CHECK(twice <= concurrency);
  CHECK(unexplained == 0);
}

TEST_CASE("a second kpsd on the same database is refused before it touches anything") {
  Rig rig({.fake = {.call_delay = 600ms}, .config = {{"queue.concurrency", "16"}}});
  rig.start();
  REQUIRE(rig.ctl({"enqueue", "--file", enqueue_file(rig, "second-", 64)}).exit_code == 0);
  wait_for_calls(rig, 16);
  auto wal_before = std::filesystem::file_size(rig.db_path());

  auto second =
      run_command({KPSD_BIN, "--config", rig.config_path()}, rig.dir().path().string(), 20s);
  CHECK(second.exit_code == 75);
  CHECK(count_of(second.err, "\n") == 1);
  CHECK(second.err.find(rig.db_path() + ".lock") != std::string::npos);
  CHECK(second.err.find("pid " + std::to_string(rig.daemon().pid())) != std::string::npos);
  CHECK(std::filesystem::file_size(rig.db_path()) == wal_before);

  auto wait = rig.ctl({"wait", "--timeout", "60"});
  CHECK_MESSAGE(wait.exit_code == 0, wait.out << wait.err);
  check_each_delivered_once(rig);
  for (const auto& [id, row] : read_jobs(rig.db_path())) {
    for (const auto& a : read_attempts(rig.db_path(), row.id)) CHECK(a.error_msg != outcome_lost);
  }
  CHECK(rig.log().find("interrupted jobs back in the queue") == std::string::npos);
}

TEST_CASE("1000 idle control connections under a 1024-descriptor limit: calls keep flowing") {
  if (!std::filesystem::exists("/usr/bin/prlimit")) {
    MESSAGE("SKIPPED: prlimit (util-linux) is not installed");
    return;
  }
  // This test's own process needs more than 1,000 descriptors.
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur < 4096 && lim.rlim_max >= 4096) {
    lim.rlim_cur = 4096;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
  ::getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur < 2048) {
    MESSAGE("SKIPPED: this process may open only " << lim.rlim_cur << " files");
    return;
  }
  Rig rig({.fake = {.call_delay = 5ms},
           .config = {{"queue.concurrency", "32"}, {"queue.rate_per_second", "400"}},
           .launcher = {"/usr/bin/prlimit", "--nofile=1024:1024", "--"}});
  rig.start();
  REQUIRE(rig.ctl({"enqueue", "--file", enqueue_file(rig, "fd-", 3000)}).exit_code == 0);
  wait_for_calls(rig, 100);

  std::vector<std::unique_ptr<UnixClient>> idle;
  for (int i = 0; i < 1000; ++i) idle.push_back(std::make_unique<UnixClient>(rig.socket_path()));
  std::int64_t flowing = calls_during(rig, 2s);
  MESSAGE("with 1000 idle control connections: " << flowing << " calls in 2 s");
  CHECK(flowing > 200);
  auto stats = rig.ctl({"stats"});
  CHECK_MESSAGE(stats.exit_code == 0, stats.err);

  auto wait = rig.ctl({"wait", "--timeout", "60"});
  CHECK_MESSAGE(wait.exit_code == 0, wait.out << wait.err);
  // All done, connections still open: kpsd sits still.
  double cpu_before = cpu_seconds(rig.daemon().pid());
  std::this_thread::sleep_for(3s);
  double cpu = cpu_seconds(rig.daemon().pid()) - cpu_before;
  MESSAGE("idle with the connections held: " << cpu << " s CPU in 3 s");
  CHECK(cpu < 0.3);
  // The first connection was the longest idle when the cap was reached: told why, then closed.
  auto told = idle.front()->read_line(1s);
  REQUIRE(told.has_value());
  CHECK(told->find("too many control clients (limit 256") != std::string::npos);
  int closed = 0;
  for (auto& c : idle) closed += c->closed_by_server(20ms) ? 1 : 0;
  MESSAGE(closed << " of 1000 idle connections were closed with an error line");
  CHECK(closed >= 1000 - 256);
  // Bounded log: besides one line per finished job, a handful.
  std::string log = rig.log();
  std::size_t other_lines = count_of(log, "\n") - count_of(log, "): succeeded\n");
  MESSAGE("log: " << log.size() << " bytes, " << other_lines << " lines besides job lines");
  CHECK(other_lines < 30);
  CHECK(count_of(rig.log(), "control socket: more than 256 clients") <= 3);
  check_each_delivered_once(rig);
  CHECK(rig.stop(10s) == 0);

  // A concurrency that cannot fit under the limit is refused at start, with the numbers.
  TempDir dir;
  std::string conf = slurp(rig.config_path());
  conf.replace(conf.find("concurrency = 32"), 16, "concurrency = 1500");
  std::string big = dir.write("big.conf", conf);
  auto refused =
      run_command({"/usr/bin/prlimit", "--nofile=1024:1024", "--", KPSD_BIN, "--config", big},
                  dir.path().string(), 20s);
  CHECK(refused.exit_code == 78);
  CHECK(refused.err.find("queue.concurrency = 1500") != std::string::npos);
  CHECK(refused.err.find("the limit is 1024") != std::string::npos);
}

TEST_CASE("200 idle and 20 slow connections on the metrics port: a scrape still gets through") {
  Rig rig({.config = {{"metrics.listen", "127.0.0.1:0"}}});
  rig.start();
  const std::uint16_t port = rig.metrics_port();
  std::vector<std::unique_ptr<TcpClient>> idle, slow;
  for (int i = 0; i < 200; ++i) idle.push_back(std::make_unique<TcpClient>(port));
  // Slowloris: a request line, then one more header byte a second, never the blank line.
  for (int i = 0; i < 20; ++i) {
    slow.push_back(std::make_unique<TcpClient>(port));
    slow.back()->send_all("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
  }
  std::atomic<bool> trickling{true};
  std::thread trickle([&] {
    while (trickling) {
      for (auto& c : slow) c->send_all("x");
      std::this_thread::sleep_for(1s);
    }
  });
  std::this_thread::sleep_for(1500ms);

  auto t0 = std::chrono::steady_clock::now();
  std::string page = http_get(port, "/metrics");
  auto took = std::chrono::steady_clock::now() - t0;
  MESSAGE("a scrape with 220 idle or slow connections open took "
          << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(page.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(took < 3s);
  CHECK(metric(page, "kpsd_http_clients_refused_total") >= 220 + 1 - 16);

  // Those still holding a slot are closed by the timeouts: a silent one after 5 s, a slow one
  // 10 s after its first byte. Then the port is free again, and it was said once.
  auto deadline = std::chrono::steady_clock::now() + 13s;
  TcpClient late(port);
  CHECK_FALSE(late.closed_by_server(3s));
  CHECK(late.closed_by_server(4s));
  auto closed_in_time = [&](auto& clients) {
    int open = 0;
    for (auto& c : clients) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      open += c->closed_by_server(std::max(left, 1ms)) ? 0 : 1;
    }
    return open;
  };
  CHECK(closed_in_time(idle) == 0);
  CHECK(closed_in_time(slow) == 0);
  trickling = false;
  trickle.join();
  CHECK(count_of(rig.log(), "metrics port: all 16 connections in use") == 1);
  wait_until(
      [&] { return rig.log().find("metrics port: connections free again") != std::string::npos; },
      5s, "the end of the full house in the log");
  CHECK(http_get(port, "/metrics").starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(rig.stop(10s) == 0);
}
