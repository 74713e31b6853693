// One disassociate call or task poll, from send to its outcome in the outbox: the answer is
// classified (kps_api), the next state decided (job_policy), the record built (outcome_records);
// this file only sends, counts and reports. See scheduler_impl.hpp.
#include "core/clock.hpp"
#include "scheduling/outcome_records.hpp"
#include "scheduling/scheduler_impl.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

namespace kpsd {

namespace net = boost::asio;

namespace {

// Runs `op` to its end; what it threw, as a message (empty when it threw nothing).
net::awaitable<std::string> what_it_threw(net::awaitable<void> op) {
  std::string failure;
  try {
    co_await std::move(op);
  } catch (const std::exception& e) {
    failure = e.what();
  } catch (...) {
    failure = "unknown exception";
  }
  co_return failure;
}

}  // namespace

// Any exception inside a call becomes a recorded, retryable outcome of that call: the job is
// never left `running` until a restart.
net::awaitable<void> Scheduler::Impl::deliver(Dispatched<DeliveryWork> call) {
  bool recorded = false;
  auto op = deliver_and_record(call, recorded);  // named: see DbWorker::call on GCC 12
  std::string failure = co_await what_it_threw(std::move(op));
  if (failure.empty() || recorded) co_return;
  const DeliveryWork& w = call.work;
  spdlog::error("job {} ({}): internal error during its call: {}; recorded as a retryable failure",
                w.job_id, w.server_id, failure);
  if (call.probe) gate.on_inconclusive(true, std::chrono::steady_clock::now());
  AttemptOutcome outcome;
  outcome.verdict = Verdict::retryable;
  outcome.error_msg = "internal error: " + failure;
  std::int64_t now = unix_ms();
  Decision d = decide_after_call(outcome, w.attempts_used, settings, now, uniform());
  AttemptFinish f = attempt_finish(w, outcome, d, now);
  if (w.unknown_since) f.unknown_since = w.unknown_since;  // not looked for yet: still unknown
  record(std::move(f));
}

net::awaitable<void> Scheduler::Impl::deliver_and_record(Dispatched<DeliveryWork>& call,
                                                         bool& recorded) {
  DeliveryWork& w = call.work;
  if (w.unknown_since) {
    // A look is not a call: the rate token claimed for this job goes back (in a Retry-After or
    // quota hold it is the one probe, and the rate controller would wait for an answer that
    // never comes), the look's list reads take their own, and the call, if the look sends
    // one, takes a fresh token when it goes.
    limiter.unsent(call.sent_at);
    wake();
    auto look = look_before_sending(call, recorded);
    if (co_await std::move(look)) {  // decided without a call, and recorded
      // A probe that made no call proved nothing: the gate must not wait for its answer, or
      // every call stays held (the next due call probes at once).
      if (call.probe) {
        gate.on_inconclusive(true, std::chrono::steady_clock::now());
        wake();
      }
      co_return;
    }
    auto token = co_await acquire_token(Until::stop);
    if (!token) {  // stopping while it waited: no new call; the look comes again after
      if (call.probe) gate.probe_unsent();
      recorded = true;
      record(claim_released(w, unix_ms()));
      co_return;
    }
    call.sent_at = *token;
  }
  std::string body = make_disassociate_body(w.server_id, w.port, w.auth ? &*w.auth : nullptr);
  HttpResult result = co_await client.disassociate(body);
  OPENSSL_cleanse(body.data(), body.size());  // the body may hold a password or private key
  w.auth.reset();

  AttemptOutcome outcome = classify_disassociate(result, std::chrono::system_clock::now());
  answered(call.sent_at, result, outcome.retry_after);
  if (auto asked = outcome.retry_after; retry_after_capped(outcome.retry_after, settings)) {
    spdlog::warn(
        "job {} ({}): Retry-After of {} s is longer than queue.retry_after_max_ms; waiting {} s",
        w.job_id, w.server_id, asked->count() / 1000, settings.retry_after_max.count() / 1000);
  }
  std::int64_t now = unix_ms();
  metrics.latency["disassociate"].observe(result.latency);
  Decision d = decide_delivery(call, result, outcome, now);
  count_transport(result);

  AttemptFinish f = attempt_finish(w, outcome, d, now, result.latency);
  f.look = call.look;
  if (!call.task_error_code.empty()) f.task_error_code = call.task_error_code;
  if (!call.task_error_msg.empty()) f.task_error_msg = call.task_error_msg;
  if (d.next == JobState::retrying && outcome.verdict != Verdict::blocked) ++metrics.retries;
  if (outcome.verdict == Verdict::blocked && !aborted) {
    // Nothing reached KPS (TLS, credentials, descriptors, proxy): the claim is undone (no
    // attempt row, no attempt used) and the job waits in the queue while dispatch is paused. A
    // call refused 401 after a refresh did reach it: it keeps its attempt row (every call on
    // record), uses no attempt, and waits the same way. The cause is logged once, by the gate.
    if (!outcome.http_status) f = claim_released(w, now);
    spdlog::debug("job {} ({}): waiting: {}", w.job_id, w.server_id, outcome.error_msg);
  } else {
    log_transition(w.job_id, w.server_id, f.next_state, f.error_code, f.error_msg,
                   f.next_attempt_at - now);
  }
  recorded = true;  // before record(): whatever it does, this attempt has its outcome
  record(std::move(f));
}

// Where the job goes after its call: a call cut short by abort() goes back to the queue; a
// second 401 right after a refresh means the credentials are wrong, not this job.
Decision Scheduler::Impl::decide_delivery(const Dispatched<DeliveryWork>& call,
                                          const HttpResult& result, AttemptOutcome& outcome,
                                          std::int64_t now) {
  const DeliveryWork& w = call.work;
  if (aborted && result.transport != HttpResult::Transport::ok) {
    ++metrics.calls["cancelled"];
    return decide_after_cancelled_call(now);
  }
  tell_gate(result, call.probe, outcome.error_msg);
  if (outcome.verdict == Verdict::reauthenticate &&
      (w.previous_was_401 || (call.probe && gate.mode() == CallGate::Mode::blocked))) {
    outcome.verdict = Verdict::blocked;
    outcome.error_msg = "credentials refused: HTTP 401 again after a refresh";
  }
  ++metrics.calls[std::string(to_string(outcome.verdict))];
  return decide_after_call(outcome, w.attempts_used, settings, now, uniform(), w.previous_was_401);
}

// As for calls: an exception inside a poll becomes a recorded outcome (the job stays
// `delivered` and is asked again), never a job stuck until a restart.
net::awaitable<void> Scheduler::Impl::poll(Dispatched<PollWork> call) {
  bool recorded = false;
  auto op = poll_and_record(call, recorded);
  std::string failure = co_await what_it_threw(std::move(op));
  if (failure.empty() || recorded) co_return;
  const PollWork& w = call.work;
  spdlog::error("job {} ({}, task {}): internal error during its task poll: {}; asking again",
                w.job_id, w.server_id, w.task_id, failure);
  if (call.probe) gate.on_inconclusive(true, std::chrono::steady_clock::now());
  std::int64_t now = unix_ms();
  PollOutcome p;  // no answer: asked again, neither a refusal nor an answer
  p.task_id = w.task_id;
  p.error_msg = "internal error: " + failure;
  PollDecision d;
  d.next_attempt_at = now + settings.poll_interval.count();
  d.poll_refusals = w.poll_refusals;
  d.task_failures = w.task_failures;
  record(poll_finish(w, p, d, now));
}

net::awaitable<void> Scheduler::Impl::poll_and_record(Dispatched<PollWork>& call, bool& recorded) {
  const PollWork& w = call.work;
  HttpResult result = co_await client.get_task(w.task_id);
  metrics.latency["task"].observe(result.latency);
  answered(call.sent_at, result,
           parse_retry_after(result.retry_after, std::chrono::system_clock::now()));
  tell_gate(result, call.probe, result.transport_detail);
  count_transport(result);
  PollOutcome p = classify_task_poll(result, w.task_id);
  if (p.kind == PollOutcome::Kind::answered && task_phase(p.task_status) == TaskPhase::failed) {
    auto reason = co_await find_failed_task(w.task_id, TaskLists::Clock::now());
    if (reason) {
      p.task_error_code = reason->error_code;
      p.task_error_msg = reason->error_msg;
    }
  }
  std::int64_t now = unix_ms();
  PollDecision d = decide_poll(call, p, now);
  ++metrics.task_polls[std::string(poll_label(p))];
  if (d.next == JobState::retrying) ++metrics.retries;
  if (d.next != JobState::delivered) {
    log_transition(w.job_id, w.server_id + ", task " + w.task_id, d.next, d.error_code.value_or(""),
                   d.error_msg.value_or(""), d.next_attempt_at - now);
  } else if (p.kind != PollOutcome::Kind::answered) {
    spdlog::debug("job {}: task poll got no answer ({}), asking again", w.job_id, p.error_msg);
  }
  recorded = true;
  record(poll_finish(w, p, d, now));
}

PollDecision Scheduler::Impl::decide_poll(const Dispatched<PollWork>& call, const PollOutcome& p,
                                          std::int64_t now) {
  const PollWork& w = call.work;
  if (aborted && p.kind == PollOutcome::Kind::no_answer) {
    PollDecision d;
    d.next = JobState::delivered;  // ask again after the restart
    d.next_attempt_at = now;
    d.poll_refusals = w.poll_refusals;
    d.task_failures = w.task_failures;
    return d;
  }
  return decide_after_poll(p, w.attempts_used, w.delivered_at, settings, now, uniform(),
                           w.poll_refusals, w.task_failures);
}

// Tells the gate how a call or poll's answer went: a 401, a transport that sent nothing (TLS,
// credentials, descriptors), an answer that proves the credentials, or nothing known.
void Scheduler::Impl::tell_gate(const HttpResult& r, bool probe,
                                std::string_view blocked_reason_text) {
  auto now = std::chrono::steady_clock::now();
  std::string reason_was = gate.blocked_reason();
  std::int64_t since_was = gate.blocked_since_ms();
  CallGate::Change change = CallGate::Change::none;
  std::string_view cause = blocked_cause(r.transport);
  if (!cause.empty()) {
    if (aborted) return;
    change = gate.on_blocked(std::string(blocked_reason_text), cause, probe, now, unix_ms());
  } else if (r.transport == HttpResult::Transport::ok && r.status == 401) {
    change = gate.on_refused(probe, now, unix_ms());
  } else if (r.transport == HttpResult::Transport::ok && r.status != 429 && r.status < 500) {
    change = gate.on_admitted(probe);
  } else if (probe) {
    gate.on_inconclusive(probe, now);  // proved nothing either way: back off, try again
    wake();
    return;
  }
  if (change == CallGate::Change::none) return;
  log_gate_change(change, gate, reason_was, unix_ms() - since_was);
  if (change != CallGate::Change::verifying) health_changed();
  wake();
}

// Counts what the wire did beyond the call's outcome: an answer lost after the request was
// sent, and a stale keep-alive connection the request was sent again past.
void Scheduler::Impl::count_transport(const HttpResult& r) {
  if (r.request_sent && r.transport == HttpResult::Transport::io_error)
    ++metrics.answers_unreadable;
  if (r.resent_on_fresh_connection) ++metrics.stale_connection_resends;
}

// Tells the rate controller how the gateway answered a call that took its token at `sent_at`.
void Scheduler::Impl::answered(RateLimiter::Clock::time_point sent_at, const HttpResult& r,
                               std::optional<std::chrono::milliseconds> retry_after) {
  auto answer = RateLimiter::Answer::admitted;
  if (r.transport != HttpResult::Transport::ok) {
    answer = RateLimiter::Answer::none;  // nothing known of the gateway (or nothing sent)
  } else if (r.status == 429) {
    answer = RateLimiter::Answer::throttled;
  }
  if (answer != RateLimiter::Answer::none) {
    metrics.history.answered(answer == RateLimiter::Answer::throttled, unix_ms());
  }
  auto now = RateLimiter::Clock::now();
  std::optional<RateLimiter::Clock::duration> wait;
  if (answer == RateLimiter::Answer::throttled && retry_after) {
    retry_after_capped(retry_after, settings);
    wait = *retry_after;
  }
  RateLimiter::Change change = limiter.on_answer(sent_at, now, answer, wait);
  if (change == RateLimiter::Change::cut) ++metrics.throttled_rate_cuts;
  if (rate_report.changed(change, limiter, now, wait)) wake();
}

// Waits for a rate token (calls outside the dispatch loop: task-list reads, a call sent after
// its look); returns the time it was taken, or nothing once kpsd aborts (Until::abort) or
// stops (Until::stop): a Retry-After hold can be an hour.
net::awaitable<std::optional<RateLimiter::Clock::time_point>> Scheduler::Impl::acquire_token(
    Until until) {
  net::steady_timer wait(executor);
  for (;;) {
    if (aborted || (until == Until::stop && stopping)) co_return std::nullopt;
    auto now = RateLimiter::Clock::now();
    if (limiter.try_acquire(now)) co_return now;
    wait.expires_after(std::min<RateLimiter::Clock::duration>(limiter.time_until_available(now),
                                                              std::chrono::milliseconds(200)));
    co_await wait.async_wait(net::as_tuple(net::use_awaitable));
  }
}

// The server's reason for a FAILED_* task, from GET failed-tasks: a page-through that started
// after the poll saw the failure (`seen_at`), shared with every poll that saw one meanwhile.
// Best effort: a failure here only means the reason is not kept.
net::awaitable<std::optional<FailedTaskEntry>> Scheduler::Impl::find_failed_task(
    std::string task_id, TaskLists::Clock::time_point seen_at) {
  auto get = task_lists.get(TaskList::failed, seen_at);
  std::shared_ptr<const TaskListing> listing = co_await std::move(get);
  if (const TaskListEntry* t = find_task(task_id, *listing)) co_return *t;
  if (!listing->error.empty())
    spdlog::debug("failed-tasks lookup for task {}: {}", task_id, listing->error);
  co_return std::nullopt;
}

// One whole task list, page by page (each page takes a rate token like any call). The order of
// either list is not documented, so every page is read until one comes back short or `total`
// is reached (docs/vendor-api.md, "The failed-task list"; the vendor's Terraform data source
// pages the same way).
net::awaitable<TaskListing> Scheduler::Impl::fetch_task_list(TaskList list) {
  const bool running = list == TaskList::running;
  const std::string label = running ? "running" : "failed";
  TaskListing out;
  for (int page = 0; page < max_task_list_pages; ++page) {
    auto sent_at = co_await acquire_token(Until::abort);
    if (!sent_at) {
      out.error = "kpsd is stopping";
      co_return out;
    }
    std::int64_t offset = std::int64_t{page} * task_list_page_size;
    auto get = running ? client.get_running_tasks(task_list_page_size, offset)
                       : client.get_failed_tasks(task_list_page_size, offset);
    HttpResult r = co_await std::move(get);
    ++out.requests;
    ++metrics.task_list_requests[label];
    metrics.latency[running ? "running_tasks" : "failed_tasks"].observe(r.latency);
    answered(*sent_at, r, std::nullopt);
    count_transport(r);
    if (r.transport != HttpResult::Transport::ok || r.status != 200) {
      out.error = r.transport == HttpResult::Transport::ok ? "HTTP " + std::to_string(r.status)
                                                           : r.transport_detail;
      co_return out;
    }
    auto body = parse_task_list_body(r.body);
    if (!body) {
      out.error = body.error().message;
      co_return out;
    }
    if (page == 0) out.total = body->total;
    std::size_t got = body->tasks.size();
    for (auto& t : body->tasks) out.tasks.push_back(std::move(t));
    bool short_page = got < static_cast<std::size_t>(task_list_page_size);
    if (short_page || (body->total > 0 && offset + std::int64_t(got) >= body->total)) co_return out;
  }
  out.error = "longer than " + std::to_string(max_task_list_pages) + " pages; read in part";
  co_return out;
}

// The look before sending again after an unknown outcome (task_look.hpp): the running-task
// list (and, when the server has no running task, the failed-task list), each shared with
// every job looking within look_reuse. True when it decided without a call (and recorded it).
net::awaitable<bool> Scheduler::Impl::look_before_sending(Dispatched<DeliveryWork>& call,
                                                          bool& recorded) {
  DeliveryWork& w = call.work;
  std::optional<LookDecision> early = settle_first(w.lost_at, unix_ms(), look_settings);
  std::optional<AttemptFinish> f;
  if (early) {
    spdlog::debug("job {} ({}): {}", w.job_id, w.server_id, early->note);
    f = look_finish(w, *early, settings, look_settings, unix_ms());
  } else if (!stopping && !aborted) {
    auto op = look(w);
    LookDecision found = co_await std::move(op);
    f = look_finish(w, found, settings, look_settings, unix_ms());
    if (!f) {
      call.look = found.note;  // the call goes out; its record carries the note
      call.task_error_code = found.task.error_code;
      call.task_error_msg = found.task.error_msg;
    }
  }
  if (!f && !stopping && !aborted) co_return false;  // send
  if (!f) f = claim_released(w, unix_ms());          // stopping: no new call; the look comes after
  // No call went out: a probe was not used (the next claim may probe at once).
  if (call.probe) {
    gate.probe_unsent();
    wake();
  }
  recorded = true;
  record(std::move(*f));  // the store counts a job it ends
  co_return true;
}

// Reads the task lists for one job's look and decides (task_look.hpp). Each list is shared with
// every job looking within look_reuse, but never one read before the lost call's deadline (it
// might predate a task the server created late), and the failed list is read after the running
// one (a task that failed between the two reads would be in neither).
net::awaitable<LookDecision> Scheduler::Impl::look(const DeliveryWork& w) {
  constexpr auto look_reuse = std::chrono::seconds(5);
  auto steady_now = TaskLists::Clock::now();
  auto settled_at = steady_now - std::chrono::milliseconds(
                                     unix_ms() - (w.lost_at + look_settings.settle.count()));
  auto not_before = std::max(steady_now - look_reuse, settled_at);
  auto get_running = task_lists.get(TaskList::running, not_before);
  std::shared_ptr<const TaskListing> running = co_await std::move(get_running);
  std::shared_ptr<const TaskListing> failed;
  if (!find_running_task(w.server_id, *running, w.known_tasks)) {
    auto get_failed = task_lists.get(TaskList::failed, std::max(not_before, running->read_started));
    failed = co_await std::move(get_failed);
  }
  LookDecision d = decide_look(w.server_id, *w.unknown_since, *running, failed.get(), w.look_waits,
                               look_settings, w.known_tasks);
  ++metrics.looks[std::string(look_label(d.kind))];
  spdlog::info("job {} ({}): {}", w.job_id, w.server_id, d.note);
  co_return d;
}

}  // namespace kpsd
