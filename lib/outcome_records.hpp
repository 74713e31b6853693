#pragma once
// The records the store writes when a call or a poll ends, each built in one place from the
// work it belongs to, its outcome, the decision taken and the time (Unix ms). No I/O.
#include "job_policy.hpp"
#include "job_store.hpp"

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

// A task poll's result and where the job goes.
PollFinish poll_finish(const PollWork& work, const PollOutcome& poll, const PollDecision& decision,
                       std::int64_t now_ms);

// A claimed poll given back unsent: its lease ends, the job stays `delivered`, due at once.
PollFinish lease_released(const PollWork& work, std::int64_t now_ms);

}  // namespace kpsd
