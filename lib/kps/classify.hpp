#pragma once
// The one classifier that turns a call's result into what the scheduler does next: a
// disassociate call's verdict, a task poll's outcome, and their labels. Plain code without I/O
// (docs/vendor-api.md, "Errors and throttling"); the wire format it reads is kps/kps_api.hpp.
#include "kps/kps_api.hpp"
#include "net/http_result.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kpsd {

enum class Verdict {
  delivered,       // 2xx (202 documented) with a task id and no FAILED status
  retryable,       // try again after backoff; uses up an attempt
  permanent,       // the request itself is wrong: fail the job now
  throttled,       // 429: wait, slow down, try again; does not use up an attempt
  reauthenticate,  // 401: refresh credentials once, then retry
  blocked,         // TLS verification failed or no credentials: nothing was sent; wait for the
                   // operator to fix it, without using up attempts
  unknown,         // the request was sent but no readable answer came back (unreadable, cut
                   // short, timed out): the server may have acted. Retried like `retryable`
                   // (it uses up an attempt); never taken for a refusal.
};
std::string_view to_string(Verdict v) noexcept;

// Why calls are paused, as the kpsd_blocked metric labels it: "tls", "credentials",
// "descriptors" or "proxy" for a transport that sent nothing; "" for any other.
std::string_view blocked_cause(HttpResult::Transport t) noexcept;

struct AttemptOutcome {
  Verdict verdict = Verdict::retryable;
  std::optional<std::int64_t> http_status;  // nullopt: no response arrived
  std::string request_id;
  std::string task_id, delivery_status;
  std::string error_code, error_msg;  // from KPS, or kpsd's own reason
  std::optional<std::chrono::milliseconds> retry_after;
};

// Whether an answer's Content-Encoding leaves its body readable: absent or `identity` (RFC 9110
// §8.4; case-insensitive). kpsd sends Accept-Encoding: identity and decodes nothing.
bool readable_coding(std::string_view content_encoding) noexcept;

// The one place that maps a disassociate call's result to an outcome. Any 2xx with a task id
// is delivered (the API documents 202); a 2xx without a readable one, or in a content coding,
// is unknown (the server may be unbinding): never a blind retry.
AttemptOutcome classify_disassociate(const HttpResult& result,
                                     std::chrono::system_clock::time_point now);

// A task poll's result (GET /v3/{project_id}/tasks/{task_id}), as the job's rules see it.
struct PollOutcome {
  enum class Kind { answered, no_answer, rejected };
  std::string task_id;
  Kind kind = Kind::no_answer;  // no_answer: transport error, 5xx, 429, 401, bad body → ask again
  std::string task_status;      // when answered
  std::string error_code, error_msg;
  // For FAILED_* tasks: the server's reason from failed-tasks (empty when not found).
  std::string task_error_code, task_error_msg;
};

// The one place that maps a task poll's result to an outcome: 200 with a task body is
// answered; 401, 429, 5xx, a transport failure or an unreadable body is no answer (asked
// again); any other status is a refusal, with the API's error_code and error_msg.
PollOutcome classify_task_poll(const HttpResult& result, std::string task_id);

// The metric label of a poll outcome: succeeded, failed, pending (answered), rejected, no_answer.
std::string_view poll_label(const PollOutcome& poll) noexcept;

}  // namespace kpsd
