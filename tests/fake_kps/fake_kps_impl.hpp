#pragma once
// FakeKps::Impl, the fake's state and handlers, shared by its parts (internal to fake_kps_lib):
//   fake_kps_server.cpp  the accept loop, connections, TLS, reading requests, writing answers,
//                        closes and interim answers, and the router (handle)
//   fake_kps_kps.cpp     POST keypairs/disassociate and the per-server Behavior
//   fake_kps_tasks.cpp   tasks: GET tasks/{id}, running-tasks, failed-tasks
//   fake_kps_iam.cpp     authentication (token, IAM tokens, AK/SK) and the fake IAM
//   fake_kps_quota.cpp   the gateway's window quota and its 429s
//   fake_kps_stats.cpp   the counters tests read, and stats_json
#include "fake_kps.hpp"
#include "net/use_tuple.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace kpsd::fake {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = net::ip::tcp;

// Coroutines hold a plain `this`: FakeKps joins the thread before Impl goes, and Impl's
// io_context destroys any suspended frame when it goes.
struct FakeKps::Impl {
  explicit Impl(Options o);

  using Request = http::request<http::string_body>;
  using Response = http::response<http::string_body>;
  // A final answer, and the interim one (100, 103) to send before it.
  struct Answer {
    Answer(Response r, unsigned interim = 0) : res(std::move(r)), interim_status(interim) {}
    Response res;
    unsigned interim_status = 0;
  };

  struct Task {
    std::string server_id;
    std::chrono::steady_clock::time_point created;
    bool fails = false;
    std::int64_t created_ms = 0;  // Unix milliseconds, for task_time in the lists
  };
  struct FailedTask {
    std::string task_id, server_id, error_code, error_msg;
    std::int64_t task_time_ms = 0;
  };
  // The reason kpsd's own failed tasks carry in failed-tasks.
  static constexpr const char* task_error_code = "KPS.0003";
  static constexpr const char* task_error_msg = "fake: cannot reach the server over SSH";
  static constexpr const char* keypair_name = "kp-demo";
  static std::string server_name(const std::string& server_id) { return "ecs-" + server_id; }

  static std::int64_t unix_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  // limit and offset of a list request (fake_kps_tasks.cpp).
  struct Page {
    std::int64_t limit = 1000, offset = 0;
  };

  // fake_kps_server.cpp: connections, answers, the router.
  net::awaitable<void> accept_loop();
  net::awaitable<void> session(tcp::socket socket);
  template <class Stream>
  net::awaitable<void> serve(Stream& stream, beast::flat_buffer& buffer);
  template <class Stream>
  net::awaitable<void> close_silently(Stream& stream, beast::flat_buffer& buffer);
  net::awaitable<std::optional<Answer>> handle(const Request& req);
  void count_request(const Request& req);
  void check_request_headers(const Request& req);
  Response stats_answer(const Request& req);
  Response reply(unsigned status, json::object body, unsigned version, bool keep_alive);
  Response error(unsigned status, std::string code, std::string msg, unsigned version, bool ka);
  void violation(std::string what);
  static void add_cookie(Response& res, std::size_t bytes);
  static std::string interim_text(unsigned status);

  // fake_kps_kps.cpp: the disassociate endpoint.
  net::awaitable<std::optional<Answer>> disassociate(const Request& req);
  std::optional<Response> fault_answer(const Behavior& b, std::int64_t k, std::int64_t n,
                                       const std::string& server_id, unsigned v, bool ka);
  std::pair<std::string, std::int64_t> create_task(const std::string& server_id, const Behavior& b);
  Response accept_answer(const Behavior& b, const std::string& server_id,
                         const std::string& task_id, std::int64_t nth_task, unsigned v, bool ka);
  static std::string check_body(const std::string& body, std::string& why);
  static std::string check_server_auth(const json::object& server);

  // fake_kps_tasks.cpp: tasks and their lists.
  void seed_failed_tasks();
  void settle_tasks();
  static std::optional<Page> parse_page(std::string_view rest);
  static bool is_list(std::string_view rest, std::string_view name);
  Response list_failed(const std::string& rest, unsigned v, bool ka);
  Response list_running(const std::string& rest, unsigned v, bool ka);
  Response poll_task(const std::string& task_id, unsigned v, bool ka);

  // fake_kps_iam.cpp: authentication and the fake IAM.
  std::optional<Response> refuse_unauthenticated(const Request& req);
  std::string check_auth(const Request& req, bool scoped = true);
  std::string check_token(const std::string& token, const std::string& target);
  std::string check_signature(const Request& req, bool scoped);
  Response list_projects(const Request& req);
  Response issue_token(const Request& req);

  // fake_kps_quota.cpp: the window quota.
  std::optional<Response> refuse_over_quota(unsigned v, bool ka);
  bool admitted_by_quota();

  // fake_kps_stats.cpp
  std::string stats_json();

  Options options;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::int64_t quota_window_index = -1, quota_used = 0, quota_refusals = 0;
  net::io_context io;
  tcp::acceptor acceptor;
  net::ssl::context tls;
  bool use_tls = false;
  std::uint16_t port = 0;
  std::thread thread;

  mutable std::mutex mutex;
  std::map<std::string, Behavior> behaviors;
  std::map<std::string, std::int64_t> calls;
  std::map<std::string, Task> tasks;
  std::map<std::string, std::int64_t> accepted;
  std::vector<std::string> task_order;  // task ids, oldest first
  std::size_t ended = 0;                // task_order[0, ended) have ended (settle_tasks)
  std::vector<FailedTask> failed;       // seeded, then ended FAILED_UNBIND: oldest first
  std::int64_t failed_task_lookups = 0, running_task_lookups = 0;
  std::map<std::string, std::chrono::steady_clock::time_point> issued;  // IAM token → dies at
  std::int64_t tokens_issued = 0, expired_rejections = 0, signatures = 0, auth_refusals = 0,
               project_lookups = 0;
  std::int64_t connections = 0;
  std::int64_t unread_requests = 0;  // requests that met a silent close (close_after)
  std::int64_t disassociates_received = 0;
  std::size_t largest_token = 0;
  std::string accepted_token = options.token;  // method token: what is accepted now
  // AK/SK: the key pairs accepted, by access key, each until its expiry (set_aksk, accept_aksk).
  struct KeyPair {
    std::string sk, security_token;
    std::chrono::system_clock::time_point valid_until;
  };
  std::map<std::string, KeyPair> key_pairs{
      {options.ak,
       {options.sk, options.security_token, std::chrono::system_clock::time_point::max()}}};
  std::set<std::string> retired_tokens;  // ... and what was accepted before
  std::int64_t tls_handshake_failures = 0;
  std::vector<std::string> violations;
  std::int64_t requests = 0, disassociate_calls = 0, task_polls = 0, task_counter = 0;
  std::map<std::string, std::int64_t> polls_by_server;
  std::atomic<std::int64_t> request_counter{0};
};

}  // namespace kpsd::fake
