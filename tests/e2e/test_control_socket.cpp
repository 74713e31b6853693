// End to end: the control socket under abuse: bad request lines, 100 clients at once and one
// that never reads; and kpsctl given a reply it cannot read.
#include "e2e_rig.hpp"
#include "notify_listener.hpp"
#include "raw_client.hpp"
#include "temp_dir.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

json::object parse(const std::string& text) { return json::parse(text).as_object(); }

}  // namespace

TEST_CASE("bad request lines get an error naming the problem and the connection stays usable") {
  Rig rig;
  rig.start();
  const std::vector<std::pair<std::string, std::string>> cases{
      {"hello", "request is not valid JSON"},
      {"{", "request is not valid JSON"},
      {"[]", "request must be a JSON object"},
      {"42", "request must be a JSON object"},
      {"{}", "op is missing"},
      {R"({"op":null})", "op must be a string"},
      {R"({"op":"reboot"})", "unknown op \"reboot\""},
      {R"({"op":"enqueue"})", "jobs is missing"},
      {R"({"op":"enqueue","jobs":"a"})", "jobs must be an array"},
      {R"({"op":"enqueue","jobs":[]})", "jobs is empty"},
      {R"({"op":"enqueue","jobs":[{"server_id":""}]})", "jobs[0].server_id is empty"},
      {R"({"op":"enqueue","jobs":[{"server_id":")" + std::string(100, 'x') + R"("}]})",
       "jobs[0].server_id is longer than 64 characters"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a;rm"}]})", "jobs[0].server_id may only hold"},
      {R"({"op":"enqueue","jobs":[{"server_id":1}]})", "jobs[0].server_id must be a string"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a","port":70000}]})",
       "jobs[0].port must be between"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a","auth":{"type":"token","key":"k"}}]})",
       "jobs[0].auth.type must be"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a","auth":{"type":"password","key":7}}]})",
       "jobs[0].auth.key must be a string"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a","auth":{"key":"k"}}]})",
       "jobs[0].auth.type is missing"},
      {R"({"op":"list","limit":-1})", "limit must be between"},
      {R"({"op":"list","state":"done"})", "state \"done\" is not a job state"},
      {R"({"op":"list","after_id":"x"})", "after_id must be an integer"},
      {R"({"op":"show","id":"1"})", "id must be an integer"},
      {R"({"op":"show","id":0})", "id must be between"},
      {R"({"op":"show","id":99})", "no job with id 99"},
      {R"({"op":"retry"})", "give job ids, or state and/or batch"},
      {R"({"op":"retry","ids":[1,"x"]})", "ids[1] must be a job id"},
      {R"({"op":"retry","state":"queued"})", "state must be \"failed\" or \"cancelled\""},
      {R"({"op":"cancel"})", "give job ids or a batch"},
      {R"({"op":"cancel","id":1,"batch":"b"})", "give job ids or a batch"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a"}],"max_failures":"150%"})",
       "max_failures `150%`: a percentage must be over 0% and under 100%"},
      {R"({"op":"pause","now":true})", "unknown field now"},
  };
  UnixClient client(rig.socket_path());
  for (const auto& [line, expected] : cases) {
    CAPTURE(line);
    auto reply = client.request(line);
    REQUIRE(reply.has_value());
    auto o = parse(*reply);
    CHECK(o.at("ok").as_bool() == false);
    CHECK_MESSAGE(std::string(o.at("error").as_string()).starts_with(expected), *reply);
    auto ok = client.request(R"({"op":"stats"})");  // the same connection still serves
    REQUIRE(ok.has_value());
    CHECK(parse(*ok).at("ok").as_bool());
  }
  CHECK(cases.size() >= 20);

  // A line over 1 MiB: an error, then the connection is closed. The daemon lives on.
  UnixClient big(rig.socket_path());
  big.send_all(std::string(1024 * 1024 + 10, 'x'));
  auto reply = big.read_line();
  REQUIRE(reply.has_value());
  CHECK(parse(*reply).at("error").as_string() == "request line longer than 1 MiB; closing");
  CHECK(big.closed_by_server(5s));
  UnixClient after(rig.socket_path());
  CHECK(after.request(R"({"op":"stats"})").has_value());
}

TEST_CASE("100 clients at once and one that never reads do not stall the daemon") {
  Rig rig;
  rig.start();
  std::string ids;
  for (int i = 0; i < 2000; ++i) ids += "many-" + std::to_string(i) + "\n";
  REQUIRE(rig.ctl({"enqueue", "--file", rig.dir().write("ids", ids)}).exit_code == 0);

  // The stalled client asks for big replies and never reads them.
  UnixClient stalled(rig.socket_path());
  std::string big_request = R"({"op":"list","limit":10000})"
                            "\n";
  for (int i = 0; i < 50; ++i) {
    if (!stalled.send_all(big_request)) break;
  }

  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  auto started = std::chrono::steady_clock::now();
  for (int c = 0; c < 100; ++c) {
    clients.emplace_back([&] {
      UnixClient client(rig.socket_path());
      bool all = true;
      for (int i = 0; i < 5; ++i) {
        auto r = client.request(R"({"op":"stats"})");
        all = all && r && r->find("\"ok\":true") != std::string::npos;
      }
      if (all) ++answered;
    });
  }
  for (auto& t : clients) t.join();
  auto took = std::chrono::steady_clock::now() - started;
  CHECK(answered == 100);
  MESSAGE("100 clients x 5 requests answered in "
          << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
          << " ms while one client stalled");
  CHECK(took < 10s);  // far below the stalled client's 10 s write deadline
  // Still not reading: after the 10 s write deadline the daemon drops the stalled client.
  std::this_thread::sleep_until(started + 12s);
  CHECK(stalled.closed_by_server(5s));
  CHECK(rig.ctl({"stats"}).exit_code == 0);
}

namespace {

// A control socket that answers every request line with one fixed reply: a kpsd of another
// version, or a broken one, as kpsctl would meet it.
class FixedReplySocket {
 public:
  FixedReplySocket(const std::string& path, std::string reply) : reply_(std::move(reply) + "\n") {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof(addr.sun_path));
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(fd_, 8) == 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~FixedReplySocket() {
    ::shutdown(fd_, SHUT_RDWR);  // wakes the accept
    thread_.join();
    ::close(fd_);
  }
  FixedReplySocket(const FixedReplySocket&) = delete;
  FixedReplySocket& operator=(const FixedReplySocket&) = delete;

 private:
  void serve() {
    for (;;) {
      int client = ::accept(fd_, nullptr, nullptr);
      if (client < 0) return;
      std::string pending;
      char buf[65536];
      for (ssize_t n; (n = ::recv(client, buf, sizeof(buf), 0)) > 0;) {
        pending.append(buf, static_cast<std::size_t>(n));
        for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n')) {
          pending.erase(0, nl + 1);
          ::send(client, reply_.data(), reply_.size(), MSG_NOSIGNAL);
        }
      }
      ::close(client);
    }
  }

  std::string reply_;
  int fd_ = -1;
  std::thread thread_;
};

}  // namespace

TEST_CASE("kpsctl says a reply it cannot read in one error line naming the field") {
  TempDir dir;
  const std::string socket = dir.file("kpsd.sock");
  struct Case {
    std::vector<std::string> args;
    std::string reply;
    std::string field;  // what the error line ends with
  };
  const Case cases[] = {
      {{"stats"}, R"({"ok":true,"states":{}})", "in_flight is missing"},
      {{"list"}, R"({"ok":true,"jobs":[{"id":"7"}]})", "jobs[0].id must be an integer"},
      {{"show", "7"}, R"({"ok":true,"job":{}})", "job.id is missing"},
      {{"wait", "7"}, R"({"ok":true,"job":{}})", "job.id is missing"},
      {{"batches"}, R"({"ok":true,"batches":{}})", "batches must be an array"},
      {{"pause"}, R"({"ok":true,"paused":"yes"})", "paused must be true or false"},
      {{"list"}, R"({"jobs":[]})", "ok is missing"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.reply);
    FixedReplySocket kpsd(socket, c.reply);
    std::vector<std::string> argv{KPSCTL_BIN, "--socket", socket};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto r = run_command(argv, dir.path().string(), 30s);
    CHECK(r.exit_code == 1);
    CHECK(r.out.empty());
    CHECK(r.err == "kpsctl: error: kpsd sent a reply kpsctl cannot read: " + c.field + "\n");
    std::filesystem::remove(socket);
  }
}
