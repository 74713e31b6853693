#pragma once
// A fake KPS endpoint for tests and the demo: a small Beast server on 127.0.0.1 that checks
// what kpsd sends (token, project id, request shape) and answers per server id with the
// behaviour a test chose. Serves on its own thread; counters are safe to read from any thread.
// Tasks are listed as real KPS lists them (docs/vendor-api.md): GET running-tasks while they run,
// GET failed-tasks once they end FAILED_UNBIND (polled or not); a SUCCESS task nowhere.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kpsd::fake {

// Faults for one server id. They apply to its disassociate calls in this order: the first
// drop_times calls are dropped, the next error_times get error_status, the next garbage_times
// get garbage, the next accepted_failed_times get 202+FAILED; later calls succeed.
struct Behavior {
  int accepted_failed_times = 0;  // 202 {"status":"FAILED"}
  int error_status = 0;           // answer this HTTP status (400, 403, 404, 429, 500, 503 ...)
  int error_times = 0;            // ... this many times (-1: to every call)
  std::string error_code;         // error_code in that answer ("" = a typical one for the status)
  std::chrono::milliseconds delay{0};  // wait this long before answering ...
  int delay_times = 0;                 // ... the first N calls (0: every call)
  std::string retry_after;             // Retry-After header on the error answers ("" = none)
  int drop_times = 0;                  // close the connection without answering
  int garbage_times = 0;               // 202 with a body that is not JSON
  int task_failed_times = 0;           // this server's first N tasks end FAILED_UNBIND (-1: all)
  int task_poll_status = 0;            // answer polls of this server's tasks with this status
  int task_poll_times = 0;             // ... this many times (-1: every poll)
  // As real gateways and proxies answer (docs/vendor-api.md), on this server's disassociate
  // answers: a Set-Cookie of this many bytes (load balancers add 10 KB and more), and an
  // interim answer (100 Continue, 103 Early Hints) sent before the final one.
  int set_cookie_bytes = 0;
  int interim_status = 0;
  // The task is created, then the answer waits this long (a gateway slow to relay what KPS
  // already did): a kpsd killed meanwhile has a call whose outcome it never learns.
  std::chrono::milliseconds answer_delay{0};
  int answer_delay_times = 0;  // ... for the first N accepted calls (0: every one)
  // The status of an accepted call's answer: 0 is the documented 202; 200 and 201 are what
  // other gateways and versions send for the same (issue 30).
  int accept_status = 0;
  // The first N accepted calls are answered gzipped (Content-Encoding: gzip) whatever kpsd
  // asked for, as a misconfigured gateway or proxy compresses: the task is created all the same.
  int gzip_times = 0;
};

// Shorthands for one fault each.
inline Behavior error_answers(int status, int times, std::string code = "",
                              std::string retry_after = "") {
  Behavior b;
  b.error_status = status;
  b.error_times = times;
  b.error_code = std::move(code);
  b.retry_after = std::move(retry_after);
  return b;
}
inline Behavior failed_deliveries(int times) {
  Behavior b;
  b.accepted_failed_times = times;
  return b;
}
inline Behavior slow_answers(std::chrono::milliseconds delay, int times = 0) {
  Behavior b;
  b.delay = delay;
  b.delay_times = times;
  return b;
}
inline Behavior dropped_connections(int times) {
  Behavior b;
  b.drop_times = times;
  return b;
}
inline Behavior garbage_bodies(int times) {
  Behavior b;
  b.garbage_times = times;
  return b;
}
inline Behavior refused_polls(int status, int times) {
  Behavior b;
  b.task_poll_status = status;
  b.task_poll_times = times;
  return b;
}
inline Behavior big_cookie(int bytes) {
  Behavior b;
  b.set_cookie_bytes = bytes;
  return b;
}
inline Behavior interim_first(int status) {
  Behavior b;
  b.interim_status = status;
  return b;
}
inline Behavior failed_tasks(int times) {
  Behavior b;
  b.task_failed_times = times;
  return b;
}

// The fake IAM (POST /v3/auth/tokens on the same server).
struct IamOptions {
  std::string domain, user, password, project;
  // How long an issued token really works. The answer's expires_at always says 24 h, as
  // IAM's does: a token can die early (password or permission change), which kpsd sees as 401.
  std::chrono::milliseconds token_lifetime{std::chrono::hours(24)};
  // Issued tokens are this long (PKI tokens pass 8 KB; the vendor documents up to 100 KB+);
  // 0: short ones.
  std::size_t token_bytes = 0;
};

// The order GET failed-tasks lists in. The vendor does not document it (docs/vendor-api.md), so
// kpsd must find its task whichever it is: tests can try both.
enum class FailedTasksOrder { oldest_first, newest_first };

struct Options {
  std::string project_id{};
  std::string token{};                          // the accepted X-Auth-Token (method token)
  std::chrono::milliseconds task_duration{0};   // a task runs this long, then SUCCESS (or FAILED)
  std::chrono::milliseconds call_delay{0};      // every disassociate call takes at least this
  std::string tls_cert_file{}, tls_key_file{};  // set both to serve https
  std::optional<IamOptions> iam{};   // accept tokens issued by the fake IAM instead of `token`
  std::string ak{}, sk{};            // set both to require AK/SK signatures instead
  std::string security_token{};      // with ak/sk: a temporary key pair's X-Security-Token
  std::string failed_tasks_total{};  // raw JSON for failed-tasks' "total" ("1.5", "1e30" ...)
  // GET failed-tasks order; oldest first by default, as ended (order undocumented: vendor-api.md).
  FailedTasksOrder failed_tasks_order = FailedTasksOrder::oldest_first;
  // This many failed tasks of other servers are listed from the start, as on a project whose
  // failures nobody deleted (the list keeps every failure: vendor-api.md). Ids "seeded-N", servers
  // "seeded-server-N", ended before the fake started; listed before kpsd's own (oldest first).
  int seeded_failed_tasks = 0;
  // GET running-tasks lists at most this many (the oldest), and says at most this many in
  // "total", however many run: the vendor's model caps it at 1,000 (vendor-api.md).
  std::int64_t running_tasks_cap = 1000;
  // A gateway quota in fixed windows: this many API calls per window, then 429 APIGW.0308 to
  // every call until the window turns (0 = none). Windows start when the fake does.
  std::int64_t window_quota = 0;
  std::chrono::milliseconds quota_window{10000};
  // What real servers do to every answer (each also per server in Behavior, where noted):
  std::size_t set_cookie_bytes = 0;  // a Set-Cookie header of this many bytes on every answer
  unsigned interim_status = 0;       // 100 or 103 sent before every answer (0: none)
  // Close each connection after this many answers (0: never): saying Connection: close on the
  // last answer (as servers that cap keep-alive use do), or silently, as an idle timer firing
  // just as the client's next request arrives (that request is never read).
  int close_after = 0;
  bool close_announced = false;
  // IAM's projects, (id, name), listed by GET /v3/projects?name= (kps.project_id = auto).
  std::vector<std::pair<std::string, std::string>> projects{};
};

class FakeKps {
 public:
  explicit FakeKps(Options options);
  ~FakeKps();
  FakeKps(const FakeKps&) = delete;
  FakeKps& operator=(const FakeKps&) = delete;

  std::uint16_t port() const;
  void set_behavior(const std::string& server_id, Behavior behavior);
  // The X-Auth-Token accepted from now on (method token): the old one is refused 401 as an
  // expired token is (APIGW.0307), as when a password or permission change kills it early.
  void set_token(std::string token);
  // Accepts this key pair (with its security token) from now on; those before are refused
  // with 401 APIGW.0307 (counted as expired), as a temporary key pair past its expires_at is.
  void set_aksk(std::string ak, std::string sk, std::string security_token);
  // Accepts this key pair too, until `valid_until` (then 401 APIGW.0307): temporary keys from
  // the metadata service, which overlap the previous ones until those expire.
  void accept_aksk(std::string ak, std::string sk, std::string security_token,
                   std::chrono::system_clock::time_point valid_until);

  std::int64_t calls_for(const std::string& server_id) const;     // disassociate calls
  std::int64_t accepted_for(const std::string& server_id) const;  // 202s that created a task
  std::int64_t failed_task_lookups() const;                       // GET failed-tasks
  std::int64_t running_task_lookups() const;                      // GET running-tasks
  // Tasks not ended yet (READY_UNBIND or RUNNING_UNBIND), as running-tasks counts them before
  // its cap (docs/vendor-api.md): created less than task_duration ago.
  std::int64_t tasks_running() const;
  std::int64_t iam_tokens_issued() const;
  std::int64_t project_lookups() const;           // GET /v3/projects
  std::int64_t expired_token_rejections() const;  // 401s for issued tokens past their lifetime
  std::int64_t auth_refusals() const;             // every 401 for a token or signature (KPS calls)
  std::size_t largest_auth_token() const;         // the longest X-Auth-Token a KPS call carried
  std::int64_t connections() const;               // connections accepted
  std::int64_t unread_requests() const;  // requests a silent close (close_after) never read
  // Disassociate requests that reached the fake in any way: answered (202, an error, a 401, a
  // quota's 429), dropped after being read, or met by a silent close (their first bytes say
  // POST). kpsd must hold an attempt row for each (issue 30: every call on record).
  std::int64_t disassociates_received() const;
  std::string server_of_task(const std::string& task_id) const;  // "" for an unknown task
  std::int64_t signatures_checked() const;
  std::map<std::string, std::int64_t> calls() const;
  std::int64_t disassociate_calls() const;
  std::int64_t task_polls() const;
  std::int64_t task_polls_for(const std::string& server_id) const;
  std::int64_t requests() const;
  std::int64_t quota_refusals() const;          // 429s from the window quota
  std::vector<std::string> violations() const;  // what kpsd sent wrong, one line each
  std::string stats_json() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// {"server-id": {"accepted_failed_times": N, "error_status": S, "error_times": N,
//  "error_code": "...", "delay_ms": N, "retry_after": "1", "drop_times": N, "garbage_times": N,
//  "task_failed_times": N (-1: every task)}, ...}. Throws std::runtime_error naming the bad entry.
std::map<std::string, Behavior> parse_behaviors(const std::string& json_text);

}  // namespace kpsd::fake
