// One disassociate call or task poll, from send to its outcome in the outbox: the answer is
// classified (kps_api), the next state decided (job_policy), the record built (outcome_records);
// this file only sends, counts and reports. See scheduler_impl.hpp.
#include "core/clock.hpp"
#include "scheduling/outcome_records.hpp"
#include "scheduling/scheduler_impl.hpp"

#include <boost/asio/use_awaitable.hpp>

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

namespace kpsd {

namespace net = boost::asio;

namespace {

// Runs `op` to its end: its record, or nothing and `failure` says what it threw.
template <class Finish>
net::awaitable<std::optional<Finish>> caught(net::awaitable<Finish> op, std::string& failure) {
  try {
    co_return co_await std::move(op);
  } catch (const std::exception& e) {
    failure = e.what();
  } catch (...) {
    failure = "unknown exception";
  }
  co_return std::nullopt;
}

PollFacts poll_facts(const PollWork& w, bool aborted) {
  return {w.attempts_used, w.delivered_at, w.poll_refusals, w.task_failures, aborted};
}

}  // namespace

// One call: its exchange gives the record, which goes to the committer. An exception inside
// it (a bug) becomes a recorded, retryable outcome: the job is never left `running` until a
// restart.
net::awaitable<void> Scheduler::Impl::deliver(Dispatched<DeliveryWork> call) {
  std::string failure;
  auto op = exchange(call);  // named: see DbWorker::call on GCC 12
  std::optional<AttemptFinish> f = co_await caught(std::move(op), failure);
  if (!f) {
    const DeliveryWork& w = call.work;
    spdlog::error(
        "job {} ({}): internal error during its call: {}; recorded as a retryable failure",
        w.job_id, w.server_id, failure);
    if (call.probe) pacing.gate.on_inconclusive(true, std::chrono::steady_clock::now());
    AttemptOutcome outcome;
    outcome.verdict = Verdict::retryable;
    outcome.error_msg = "internal error: " + failure;
    std::int64_t now = unix_ms();
    Decision d = decide_after_call(outcome, w.attempts_used, settings, now, uniform());
    f = attempt_finish(w, outcome, d, now);
    if (w.unknown_since) f->unknown_since = w.unknown_since;  // not looked for yet: still unknown
  }
  record(std::move(*f));
}

// The look (after an unknown outcome), the call, its answer classified and decided: the
// attempt's record. Tells the gate and the rate controller what the answer says of them.
net::awaitable<AttemptFinish> Scheduler::Impl::exchange(Dispatched<DeliveryWork>& call) {
  DeliveryWork& w = call.work;
  if (w.unknown_since) {
    // A look is not a call: the rate token claimed for this job goes back (in a Retry-After or
    // quota hold it is the one probe, and the rate controller would wait for an answer that
    // never comes), the look's list reads take their own, and the call, if the look sends
    // one, takes a fresh token when it goes.
    pacing.limiter.unsent(call.sent_at);
    wake();
    auto look = look_before_sending(call);
    if (std::optional<AttemptFinish> decided = co_await std::move(look)) {
      // A probe that made no call proved nothing: the gate must not wait for its answer, or
      // every call stays held (the next due call probes at once).
      if (call.probe) {
        pacing.gate.on_inconclusive(true, std::chrono::steady_clock::now());
        wake();
      }
      co_return std::move(*decided);
    }
    auto token = co_await pacing.token(CallPacing::Until::stop);
    if (!token) {  // stopping while it waited: no new call; the look comes again after
      if (call.probe) pacing.gate.probe_unsent();
      co_return claim_released(w, unix_ms());
    }
    call.sent_at = *token;
  }
  std::string body = make_disassociate_body(w.server_id, w.port, w.auth ? &*w.auth : nullptr);
  HttpResult result = co_await client.disassociate(body);
  OPENSSL_cleanse(body.data(), body.size());  // the body may hold a password or private key
  w.auth.reset();
  co_return call_finish(call, result);
}

// A disassociate call's answer, told to the gate and the rate controller, counted, decided
// (job_policy) and logged: its attempt's record.
AttemptFinish Scheduler::Impl::call_finish(const Dispatched<DeliveryWork>& call,
                                           const HttpResult& result) {
  const DeliveryWork& w = call.work;
  AttemptOutcome outcome = classify_disassociate(result, std::chrono::system_clock::now());
  pacing.answered(call.sent_at, result, outcome.retry_after);
  if (auto asked = outcome.retry_after; retry_after_capped(outcome.retry_after, settings)) {
    spdlog::warn(
        "job {} ({}): Retry-After of {} s is longer than queue.retry_after_max_ms; waiting {} s",
        w.job_id, w.server_id, asked->count() / 1000, settings.retry_after_max.count() / 1000);
  }
  std::int64_t now = unix_ms();
  metrics.latency["disassociate"].observe(result.latency);
  CallFacts facts;
  facts.attempts_used = w.attempts_used;
  facts.previous_was_401 = w.previous_was_401;
  facts.cut_short = aborted && result.transport != HttpResult::Transport::ok;
  if (!facts.cut_short) {
    pacing.tell_gate(result, call.probe, outcome.error_msg);
    facts.probe_blocked_gate = call.probe && pacing.gate.mode() == CallGate::Mode::blocked;
  }
  DeliveryDecision dd = decide_delivery(outcome, facts, settings, now, uniform());
  ++metrics.calls[std::string(dd.counted_as)];
  if (dd.counts_retry) ++metrics.retries;
  pacing.count_transport(result);

  AttemptFinish f = attempt_finish(w, outcome, dd.decision, now, result.latency);
  f.look = call.look;
  if (!call.task_error_code.empty()) f.task_error_code = call.task_error_code;
  if (!call.task_error_msg.empty()) f.task_error_msg = call.task_error_msg;
  if (dd.releases_claim) f = claim_released(w, now);
  if (outcome.verdict == Verdict::blocked && !facts.cut_short) {
    // The cause is logged once, by the pacing.gate.
    spdlog::debug("job {} ({}): waiting: {}", w.job_id, w.server_id, outcome.error_msg);
  } else {
    log_transition(w.job_id, w.server_id, f.next_state, f.error_code, f.error_msg,
                   f.next_attempt_at - now);
  }
  return f;
}

// As for calls: an exception inside a poll becomes a recorded outcome (the job stays
// `delivered` and is asked again), never a job stuck until a restart.
net::awaitable<void> Scheduler::Impl::poll(Dispatched<PollWork> call) {
  std::string failure;
  auto op = exchange(call);
  std::optional<PollFinish> f = co_await caught(std::move(op), failure);
  if (!f) {
    const PollWork& w = call.work;
    spdlog::error("job {} ({}, task {}): internal error during its task poll: {}; asking again",
                  w.job_id, w.server_id, w.task_id, failure);
    if (call.probe) pacing.gate.on_inconclusive(true, std::chrono::steady_clock::now());
    std::int64_t now = unix_ms();
    PollOutcome p;  // no answer: asked again, neither a refusal nor an answer
    p.task_id = w.task_id;
    p.error_msg = "internal error: " + failure;
    f = poll_finish(w, p, decide_poll_again(poll_facts(w, false), settings, now), now);
  }
  record(std::move(*f));
}

// The task poll, its answer classified (and a failed task's reason looked up) and decided: the
// poll's record.
net::awaitable<PollFinish> Scheduler::Impl::exchange(Dispatched<PollWork>& call) {
  const PollWork& w = call.work;
  HttpResult result = co_await client.get_task(w.task_id);
  metrics.latency["task"].observe(result.latency);
  pacing.answered(call.sent_at, result,
                  parse_retry_after(result.retry_after, std::chrono::system_clock::now()));
  pacing.tell_gate(result, call.probe, result.transport_detail);
  pacing.count_transport(result);
  PollOutcome p = classify_task_poll(result, w.task_id);
  if (p.kind == PollOutcome::Kind::answered && task_phase(p.task_status) == TaskPhase::failed) {
    auto reason = co_await tasks.failed_task(w.task_id, TaskLists::Clock::now());
    if (reason) {
      p.task_error_code = reason->error_code;
      p.task_error_msg = reason->error_msg;
    }
  }
  std::int64_t now = unix_ms();
  PollDecision d = decide_poll(p, poll_facts(w, aborted), settings, now, uniform());
  ++metrics.task_polls[std::string(poll_label(p))];
  if (d.next == JobState::retrying) ++metrics.retries;
  if (d.next != JobState::delivered) {
    log_transition(w.job_id, w.server_id + ", task " + w.task_id, d.next, d.error_code.value_or(""),
                   d.error_msg.value_or(""), d.next_attempt_at - now);
  } else if (p.kind != PollOutcome::Kind::answered) {
    spdlog::debug("job {}: task poll got no answer ({}), asking again", w.job_id, p.error_msg);
  }
  co_return poll_finish(w, p, d, now);
}

// The look before sending again after an unknown outcome (task_look.hpp): the running-task
// list (and, when the server has no running task, the failed-task list), each shared with
// every job looking within look_reuse. True when it decided without a call (and recorded it).
net::awaitable<std::optional<AttemptFinish>> Scheduler::Impl::look_before_sending(
    Dispatched<DeliveryWork>& call) {
  DeliveryWork& w = call.work;
  std::optional<LookDecision> early = settle_first(w.lost_at, unix_ms(), look_settings);
  std::optional<AttemptFinish> f;
  if (early) {
    spdlog::debug("job {} ({}): {}", w.job_id, w.server_id, early->note);
    f = look_finish(w, *early, settings, look_settings, unix_ms());
  } else if (!stopping && !aborted) {
    auto op = tasks.look(w, look_settings);
    LookDecision found = co_await std::move(op);
    f = look_finish(w, found, settings, look_settings, unix_ms());
    if (!f) {
      call.look = found.note;  // the call goes out; its record carries the note
      call.task_error_code = found.task.error_code;
      call.task_error_msg = found.task.error_msg;
    }
  }
  if (!f && !stopping && !aborted) co_return std::nullopt;  // send
  if (!f) f = claim_released(w, unix_ms());  // stopping: no new call; the look comes after
  // No call went out: a probe was not used (the next claim may probe at once).
  if (call.probe) {
    pacing.gate.probe_unsent();
    wake();
  }
  co_return f;
}

}  // namespace kpsd
