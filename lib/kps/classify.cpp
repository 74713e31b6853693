#include "kps/classify.hpp"

#include "core/outside_text.hpp"

namespace kpsd {

std::string_view to_string(Verdict v) noexcept {
  switch (v) {
    case Verdict::delivered:
      return "delivered";
    case Verdict::retryable:
      return "retryable";
    case Verdict::permanent:
      return "permanent";
    case Verdict::throttled:
      return "throttled";
    case Verdict::reauthenticate:
      return "reauthenticate";
    case Verdict::blocked:
      return "blocked";
    case Verdict::unknown:
      return "unknown";
  }
  return "unknown";
}

std::string_view blocked_cause(HttpResult::Transport t) noexcept {
  switch (t) {
    case HttpResult::Transport::tls_failed:
      return "tls";
    case HttpResult::Transport::no_credentials:
      return "credentials";
    case HttpResult::Transport::no_descriptors:
      return "descriptors";
    case HttpResult::Transport::proxy_refused:
      return "proxy";
    default:
      return "";
  }
}

PollOutcome classify_task_poll(const HttpResult& r, std::string task_id) {
  PollOutcome p;
  p.task_id = std::move(task_id);
  if (r.transport != HttpResult::Transport::ok) {
    p.error_msg = r.transport_detail;
  } else if (r.status == 200 && !readable_coding(r.content_encoding)) {
    p.error_msg = "answer in content coding " + excerpt(r.content_encoding, 40);
  } else if (r.status == 200) {
    if (auto body = parse_task_body(r.body)) {
      p.kind = PollOutcome::Kind::answered;
      p.task_status = body->task_status;
    } else {
      p.error_msg = body.error().message;
    }
  } else if (r.status == 401 || r.status == 429 || r.status >= 500) {
    p.error_msg = "HTTP " + std::to_string(r.status);
  } else {
    p.kind = PollOutcome::Kind::rejected;
    ApiErrorBody err = parse_error_body(r.body);
    p.error_code = err.code;
    p.error_msg = "HTTP " + std::to_string(r.status) +
                  (err.message.empty() ? "" : ": " + excerpt(err.message));
  }
  return p;
}

std::string_view poll_label(const PollOutcome& p) noexcept {
  if (p.kind == PollOutcome::Kind::rejected) return "rejected";
  if (p.kind == PollOutcome::Kind::no_answer) return "no_answer";
  switch (task_phase(p.task_status)) {
    case TaskPhase::succeeded:
      return "succeeded";
    case TaskPhase::failed:
      return "failed";
    case TaskPhase::pending:
      break;
  }
  return "pending";
}

namespace {

// A 2xx to a disassociate: the gateway took the call (the API documents 202; a 200 or 201 from
// another gateway or version means the same). With a task id it is delivered; without one the
// server may be unbinding now, so the outcome is unknown: looked for before any second call.
AttemptOutcome classify_accepted(const HttpResult& r, AttemptOutcome out) {
  const std::string status = std::to_string(r.status);
  if (!readable_coding(r.content_encoding)) {
    out.verdict = Verdict::unknown;
    out.error_msg = "answer in content coding " + excerpt(r.content_encoding, 40) + " (HTTP " +
                    status + "): kpsd asked for identity and cannot read it";
    return out;
  }
  auto body = parse_accepted_body(r.body);
  if (!body) {
    out.verdict = Verdict::unknown;
    out.error_msg = status + " with an unreadable body: " + body.error().message;
    return out;
  }
  out.task_id = body->task_id;
  out.delivery_status = body->status;
  out.error_code = body->error_code;
  out.error_msg = body->error_msg;
  if (body->status == "FAILED") {
    out.verdict = Verdict::retryable;
    if (out.error_msg.empty())
      out.error_msg = "task delivery failed (" + status + " with status FAILED)";
  } else {
    out.verdict = Verdict::delivered;
  }
  return out;
}

}  // namespace

bool readable_coding(std::string_view content_encoding) noexcept {
  while (!content_encoding.empty() &&
         (content_encoding.front() == ' ' || content_encoding.front() == '\t'))
    content_encoding.remove_prefix(1);
  while (!content_encoding.empty() &&
         (content_encoding.back() == ' ' || content_encoding.back() == '\t'))
    content_encoding.remove_suffix(1);
  if (content_encoding.empty()) return true;
  if (content_encoding.size() != 8) return false;
  for (std::size_t i = 0; i < 8; ++i) {
    if (std::tolower(static_cast<unsigned char>(content_encoding[i])) != "identity"[i])
      return false;
  }
  return true;
}

AttemptOutcome classify_disassociate(const HttpResult& r,
                                     std::chrono::system_clock::time_point now) {
  AttemptOutcome out;
  if (r.transport == HttpResult::Transport::tls_failed ||
      r.transport == HttpResult::Transport::no_credentials ||
      r.transport == HttpResult::Transport::no_descriptors ||
      r.transport == HttpResult::Transport::proxy_refused) {
    out.verdict = Verdict::blocked;
    out.error_msg = r.transport_detail;
    return out;
  }
  if (r.transport != HttpResult::Transport::ok) {
    // Sent in full and then no readable answer: the server may have acted. Never a refusal.
    out.verdict = r.request_sent ? Verdict::unknown : Verdict::retryable;
    if (r.request_sent && r.transport == HttpResult::Transport::io_error) {
      out.error_msg = "answer unreadable after send: " + r.transport_detail;
      return out;
    }
    switch (r.transport) {
      case HttpResult::Transport::connect_failed:
        out.error_msg = "connect failed: ";
        break;
      case HttpResult::Transport::timed_out:
        out.error_msg = "timed out: ";
        break;
      default:
        out.error_msg = "connection error: ";
        break;
    }
    out.error_msg += r.transport_detail;
    return out;
  }
  out.http_status = r.status;
  out.request_id = r.request_id;
  out.retry_after = parse_retry_after(r.retry_after, now);

  if (r.status >= 200 && r.status < 300) return classify_accepted(r, std::move(out));
  ApiErrorBody err = parse_error_body(r.body);
  out.error_code = err.code;
  out.error_msg = err.message.empty() ? "HTTP " + std::to_string(r.status) : excerpt(err.message);
  if (r.status == 429) {
    out.verdict = Verdict::throttled;
  } else if (r.status == 401) {
    out.verdict = Verdict::reauthenticate;
  } else if (r.status >= 500) {
    out.verdict = Verdict::retryable;
  } else if (r.status >= 400) {
    out.verdict = Verdict::permanent;
  } else {
    // 1xx, 3xx: not what the API promises, and no gateway acts on a request it redirects.
    out.verdict = Verdict::retryable;
    out.error_msg = "unexpected HTTP " + std::to_string(r.status);
  }
  return out;
}

}  // namespace kpsd
