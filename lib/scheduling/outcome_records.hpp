#pragma once
// The records the store writes when a call or a poll ends, each built in one place from the
// work it belongs to, its outcome, the decision taken and the time (Unix ms). No I/O.
#include "kps/task_look.hpp"
#include "scheduling/job_policy.hpp"
#include "store/work_records.hpp"

#include <chrono>
#include <cstdint>

namespace kpsd {

// A disassociate call's attempt: its answer (status, request id, task id, reason) and where
// the job goes. The decision's message, when set, replaces the outcome's ("gave up after ...").
AttemptFinish attempt_finish(const DeliveryWork& work, const AttemptOutcome& outcome,
                             const Decision& decision, std::int64_t now_ms,
                             std::chrono::milliseconds latency = {});

// A claim undone: nothing was sent (blocked, or claimed ahead and held back). The open attempt
// row is deleted, the attempt given back, and the job is `queued`, due at once.
AttemptFinish claim_released(const DeliveryWork& work, std::int64_t now_ms);

// The look before a call (after an unknown outcome) decided. Adopted a running task, wait to
// look again, or a failed task with no task_failure_retries left: the record of a decision
// made without a call. Otherwise nullopt: the call goes out, and `w` now says what the look
// found (sent_after_unknown, task_failures; unknown_since cleared).
std::optional<AttemptFinish> look_finish(DeliveryWork& w, const LookDecision& look,
                                         const RetrySettings& settings,
                                         const LookSettings& look_settings, std::int64_t now_ms);

// A task poll's result and where the job goes.
PollFinish poll_finish(const PollWork& work, const PollOutcome& poll, const PollDecision& decision,
                       std::int64_t now_ms);

// A claimed poll given back unsent: its lease ends, the job stays `delivered`, due at once.
PollFinish lease_released(const PollWork& work, std::int64_t now_ms);

}  // namespace kpsd
