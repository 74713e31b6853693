// libFuzzer: every KPS and IAM body parser kpsd has (202, error, task, failed-tasks, IAM
// token) on the same bytes, and the classifiers (disassociate, task poll) over answers carrying
// them.
#include "auth/credential_answers.hpp"
#include "kps/classify.hpp"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  if (auto a = kpsd::parse_accepted_body(body); !a && a.error().message.empty()) __builtin_trap();
  kpsd::parse_error_body(body);
  if (auto t = kpsd::parse_task_body(body); t) (void)kpsd::task_phase(t->task_status);
  if (auto f = kpsd::parse_failed_tasks_body(body); f && f->total < 0) __builtin_trap();
  kpsd::parse_iam_token_expiry(body);
  for (unsigned status : {202u, 400u, 429u, 503u}) {
    kpsd::HttpResult r;
    r.status = status;
    r.body = std::string(body);
    kpsd::classify_disassociate(r, std::chrono::system_clock::now());
  }
  // The task poll's classifier: a 200 answered only with a task body, a 4xx refused.
  for (unsigned status : {200u, 403u, 429u}) {
    kpsd::HttpResult r;
    r.status = status;
    r.body = std::string(body);
    auto p = kpsd::classify_task_poll(r, "t");
    if (status != 200 && p.kind == kpsd::PollOutcome::Kind::answered) __builtin_trap();
    (void)kpsd::poll_label(p);
  }
  return 0;
}
