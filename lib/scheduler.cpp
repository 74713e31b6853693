#include "scheduler.hpp"

#include "call_gate.hpp"
#include "clock.hpp"
#include "db_worker.hpp"
#include "dispatch_plan.hpp"
#include "job_policy.hpp"
#include "kps_client.hpp"
#include "logging.hpp"
#include "metrics.hpp"
#include "outcome_records.hpp"
#include "rate_limiter.hpp"
#include "sqlite.hpp"
#include "store_health.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <deque>
#include <random>
#include <vector>

namespace kpsd {

namespace net = boost::asio;

namespace {

// Longest idle sleep: rows inserted by other processes are noticed within this.
constexpr std::chrono::milliseconds idle_check{1000};

}  // namespace

struct Scheduler::Impl : std::enable_shared_from_this<Impl> {
  Impl(net::any_io_executor ex, const Config& cfg, DbWorker& d, KpsClient& c, Metrics& m)
      : executor(ex),
        config(cfg),
        db(d),
        client(c),
        metrics(m),
        timer(ex),
        limiter(cfg.queue.rate_per_second, RateLimiter::Clock::now(), limiter_tuning(cfg)),
        rng(std::random_device{}()),
        concurrency(cfg.queue.concurrency) {
    apply_settings(cfg);
    // Also the rate limiter's longest probe gap, fixed at construction: a restart changes it.
    settings.throttle_backoff = cfg.queue.throttle_backoff;
  }

  // The retry policy's settings from a configuration: at start, and again on SIGHUP.
  void apply_settings(const Config& cfg) {
    settings.max_attempts = cfg.queue.max_attempts;
    settings.backoff = Backoff(cfg.queue.backoff_initial, cfg.queue.backoff_max);
    settings.poll_tasks = cfg.kps.poll_tasks;
    settings.poll_initial_delay = cfg.kps.poll_initial_delay;
    settings.poll_interval = cfg.kps.poll_interval;
    settings.poll_timeout = cfg.kps.poll_timeout;
    settings.retry_after_max = cfg.queue.retry_after_max;
  }

  static RateLimiter::Tuning limiter_tuning(const Config& cfg) {
    RateLimiter::Tuning t;
    // While the gateway refuses everything (a quota window), probes go at most this far apart.
    t.max_probe_gap = cfg.queue.throttle_backoff;
    return t;
  }

  // Free slots worth a claim transaction (dispatch_plan): claiming one job per transaction made
  // fsync and SQLite's locking the cost of a job; waiting for a few slots costs a few percent.
  std::size_t claim_batch() const { return kpsd::claim_batch(concurrency); }

  // A claimed poll's lease: long enough for the poll and its failed-tasks lookup (up to 5
  // pages); its outcome is fenced to the lease anyway, so an overrun only costs a harmless
  // second GET.
  std::int64_t poll_lease_until(std::int64_t now_ms) const {
    return now_ms + config.kps.request_timeout.count() * 7 + 5000;
  }

  double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng); }

  void wake() {
    wake_pending = true;
    timer.cancel();
  }

  net::awaitable<void> run() {
    auto self = shared_from_this();
    while (!stopping) {
      std::int64_t now = unix_ms();
      // A slot is free only once its call's outcome is committed: jobs `running` in the
      // database never exceed `concurrency`, so neither do the calls a crash can repeat.
      std::size_t free = free_slots(slot_count(), concurrency);
      if (paused) {
        release_ready("paused");
        co_await sleep(idle_check);  // resume() wakes it
        continue;
      }
      if (store.failing(StoreHealth::Writer::outcomes)) {
        // Outcomes wait in memory until their commit goes through: claim nothing meanwhile, so
        // no more than `concurrency` of them ever wait. The flusher wakes this loop.
        co_await sleep(idle_check);
        continue;
      }
      bool probing = gate.holding();
      if (probing || limiter.holding()) release_ready("calls held");
      if (claimed_ahead() > 0) {
        // Calls claimed ahead of their tokens go out as the pace allows, before any new claim:
        // polls first (they finish work already delivered).
        auto token_time = RateLimiter::Clock::now();
        bool sent = false;
        while (claimed_ahead() > 0 && limiter.try_acquire(token_time)) {
          if (!ready_polls.empty()) {
            PollWork w = std::move(ready_polls.front());
            ready_polls.pop_front();
            w.sent_at = token_time;
            spawn_poll(std::move(w));
          } else {
            DeliveryWork w = std::move(ready.front());
            ready.pop_front();
            w.sent_at = token_time;
            spawn_delivery(std::move(w));
          }
          sent = true;
        }
        if (sent) continue;
        co_await sleep(std::min<std::chrono::milliseconds>(
            idle_check, std::chrono::ceil<std::chrono::milliseconds>(limiter.time_until_available(
                            RateLimiter::Clock::now(), claimed_ahead()))));
        continue;
      }
      if (wait_for_slots(slot_count(), concurrency, probing)) {
        // Claim in batches: one transaction (one fsync) claims many jobs, and a call ending
        // wakes this loop, so the slots fill again within one call's time.
        co_await sleep(idle_check);
        continue;
      }
      if (probing) {
        // Verifying the credentials, or blocked (credentials, TLS, descriptors): one probe
        // call at a time (with backoff while blocked).
        auto steady_now = std::chrono::steady_clock::now();
        if (!gate.may_probe(steady_now)) {
          co_await sleep(std::min<std::chrono::milliseconds>(
              idle_check,
              std::chrono::ceil<std::chrono::milliseconds>(gate.until_probe(steady_now))));
          continue;
        }
        // Set before the probe starts: a coroutine may run to its end inside co_spawn.
        gate.probe_sent();
      }
      std::size_t tokens_taken = 0;
      // The calls' send time for the rate controller: the time their tokens were taken.
      auto sent_at = RateLimiter::Clock::now();
      std::size_t room = probing ? std::min<std::size_t>(free, 1) : free;
      while (tokens_taken < room && limiter.try_acquire(sent_at)) ++tokens_taken;
      // Paced: the next 100 ms of calls are claimed in the same transaction (one fsync for many
      // jobs, not one per token); they wait in `ready_polls` and `ready` for their tokens.
      ClaimSize size =
          claim_size(free, tokens_taken, limiter.rate(sent_at), probing, limiter.holding());

      std::size_t started = 0;
      bool claim_failed = false;
      if (tokens_taken > 0) {
        std::string problem;
        int code = 0;
        // The slots this claim may fill are taken while it runs: an outcome commit claiming at
        // the same time must not count them as free (jobs `running` never exceed concurrency).
        std::size_t claiming = size.total();
        reserved += claiming;
        try {
          // Polls first, for the calls ahead too: they finish work already delivered, and a
          // paced queue of deliveries must not keep finished tasks waiting (issue 18).
          std::int64_t lease = poll_lease_until(now);
          auto polls = co_await db.call([now, lease, n = size.total()](JobStore& s) {
            return s.claim_for_poll(now, lease, n);
          });
          // A 401 or a TLS failure may have closed the gate while the claim ran: then what
          // was claimed waits (and is given back by the next turn of the loop).
          Placement place = place_claimed(size, polls.size(), 0, !probing && gate.holding());
          for (auto& w : polls) {
            w.probe = probing;
            w.sent_at = sent_at;
            if (started < place.polls_now) {
              spawn_poll(std::move(w));
              ++started;
            } else {
              ready_polls.push_back(std::move(w));
            }
          }
          reserved -= polls.size();  // now in flight, or waiting in ready_polls
          claiming -= polls.size();
          if (std::size_t want = size.total() - polls.size(); want > 0 && !stopping) {
            auto work = co_await db.call(
                [now, n = want](JobStore& s) { return s.claim_for_delivery(now, n); });
            place = place_claimed(size, started, work.size(), !probing && gate.holding());
            std::size_t deliveries_started = 0;
            for (auto& w : work) {
              w.probe = probing;
              w.sent_at = sent_at;
              if (deliveries_started < place.deliveries_now) {
                spawn_delivery(std::move(w));
                ++deliveries_started;
              } else {
                ready.push_back(std::move(w));
              }
            }
            started += deliveries_started;
            spdlog::trace("claimed {} job(s), {} of them ahead of their rate tokens", work.size(),
                          ready.size());
          }
          if (probing && started > 0) spdlog::debug("calls held: probe sent");
        } catch (const sql::Error& e) {
          claim_failed = true;
          problem = e.what();
          code = e.code();
        } catch (const std::exception& e) {
          claim_failed = true;
          problem = e.what();
        }
        reserved -= claiming;
        limiter.give_back(tokens_taken - started);
        if (claim_failed) {
          store_failed(StoreHealth::Writer::claim, problem, code);
        } else {
          store_succeeded(StoreHealth::Writer::claim);
        }
      }
      if (probing && started == 0) gate.probe_unsent();
      if (claim_failed) {
        // Nothing was claimed (the transaction rolled back): try again after a pause.
        co_await sleep(store.retry_delay());
        continue;
      }
      if (started > 0 || claimed_ahead() > 0) continue;

      // Idle: sleep until woken, the next due time, a rate token, or the periodic check.
      auto wait = std::chrono::milliseconds(idle_check);
      if (free > 0 && tokens_taken == 0) {
        wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(
                                  limiter.time_until_available(RateLimiter::Clock::now())));
      } else if (free > 0) {
        std::optional<std::int64_t> next;
        try {
          next = co_await db.call([](JobStore& s) { return s.next_due_at(); });
        } catch (const std::exception& e) {
          spdlog::debug("next due time: {}", e.what());  // the periodic check covers it
        }
        if (next)
          wait = std::min(wait,
                          std::chrono::milliseconds(std::max<std::int64_t>(0, *next - unix_ms())));
      }
      co_await sleep(wait);
    }
    release_ready("stopping");
    // Draining: calls in flight end by their own deadlines; wait for them to be recorded (or,
    // after abort(), for the flushers to give up on a store that still cannot be written).
    while (in_flight > 0 || flushing_attempts || flushing_polls) co_await sleep(idle_check);
    client.close_idle();
  }

  // Calls claimed ahead but not sent go back as if never claimed: deliveries to the queue (no
  // attempt used, their open attempt rows deleted), polls to `delivered` with their lease given
  // up. Nothing was sent for them.
  void release_ready(std::string_view why) {
    if (claimed_ahead() == 0) return;
    spdlog::debug("{} job(s) claimed ahead go back to the queue: {}", claimed_ahead(), why);
    std::int64_t now = unix_ms();
    for (DeliveryWork& w : ready) pending_attempts.push_back(claim_released(w, now));
    for (PollWork& w : ready_polls) pending_polls.push_back(lease_released(w, now));
    if (!ready.empty()) start_flush(pending_attempts, flushing_attempts, "call outcomes");
    if (!ready_polls.empty()) start_flush(pending_polls, flushing_polls, "task poll outcomes");
    ready.clear();
    ready_polls.clear();
  }

  std::size_t claimed_ahead() const { return ready.size() + ready_polls.size(); }

  void store_failed(StoreHealth::Writer writer, const std::string& problem, int code) {
    if (is_malformed_database(code)) {
      if (fatal_error.empty()) {
        fatal_error = problem;
        spdlog::critical(
            "the database is malformed ({}): kpsd cannot record outcomes and stops; restore it "
            "from a backup or move it aside",
            problem);
        stopping = true;
        aborted = true;
        client.cancel_all();
        wake();
      }
      return;
    }
    if (store.failed(writer, problem, unix_ms()) == StoreHealth::Change::went_down) {
      ++metrics.store_outages;
      spdlog::error(
          "job store cannot be written: {}; no new calls until it can ({} outcomes wait in "
          "memory; retrying)",
          problem, outcomes_waiting());
      if (on_health_change) on_health_change();
    }
  }

  // What the gate's change means to the operator and the rest of kpsd: said once per episode.
  void gate_changed(CallGate::Change change) {
    switch (change) {
      case CallGate::Change::none:
        return;
      case CallGate::Change::verifying:
        spdlog::warn(
            "KPS refused the credentials (401): calls held while they are refreshed; one probe "
            "call goes first");
        break;
      case CallGate::Change::blocked:
        spdlog::error(
            "calls paused: {}; one probe at a time until it clears, no attempts used (fix it; "
            "SIGHUP re-reads credentials and CA and probes at once)",
            gate.blocked_reason());
        if (on_health_change) on_health_change();
        break;
      case CallGate::Change::resumed:
        spdlog::warn("calls resume: {} cleared after {} ms", blocked_reason_was,
                     unix_ms() - blocked_since_was);
        if (on_health_change) on_health_change();
        break;
    }
    wake();
  }

  // Tells the gate how a call or poll's answer went: a 401, a transport that sent nothing
  // (TLS, credentials, descriptors), an answer that proves the credentials, or nothing known.
  void tell_gate(const HttpResult& r, bool probe, std::string_view blocked_reason_text) {
    auto now = std::chrono::steady_clock::now();
    blocked_reason_was = gate.blocked_reason();
    blocked_since_was = gate.blocked_since_ms();
    std::string_view cause = blocked_cause(r.transport);
    if (!cause.empty()) {
      if (!aborted)
        gate_changed(
            gate.on_blocked(std::string(blocked_reason_text), cause, probe, now, unix_ms()));
    } else if (r.transport == HttpResult::Transport::ok && r.status == 401) {
      gate_changed(gate.on_refused(probe, now, unix_ms()));
    } else if (r.transport == HttpResult::Transport::ok && r.status != 429 && r.status < 500) {
      gate_changed(gate.on_admitted(probe));
    } else if (probe) {
      gate.on_inconclusive(probe, now);  // proved nothing either way: back off, try again
      wake();
    }
  }

  void store_succeeded(StoreHealth::Writer writer) {
    if (store.succeeded(writer, unix_ms()) == StoreHealth::Change::recovered) {
      spdlog::warn("job store writable again after {} ms; resuming", store.last_outage_ms());
      if (on_health_change) on_health_change();
      wake();
    }
  }

  // Slots taken (dispatch_plan): a slot is free only once its call's outcome is committed.
  SlotCount slot_count() const {
    return {in_flight, outcomes_waiting(), claimed_ahead(), reserved};
  }

  std::size_t outcomes_waiting() const {
    return pending_attempts.size() + pending_polls.size() + recording;
  }

  net::awaitable<void> sleep(std::chrono::milliseconds wait) {
    if (wake_pending) {
      wake_pending = false;
      co_return;
    }
    timer.expires_after(wait);
    co_await timer.async_wait(net::as_tuple(net::use_awaitable));
    wake_pending = false;
  }

  // The slot is given back when the coroutine ends, however it ends, so a stop never waits
  // for a call that died with an exception (its job stays `running` until the next start).
  void spawn_delivery(DeliveryWork w) {
    ++in_flight;
    net::co_spawn(
        executor, deliver(std::move(w)),
        [self = shared_from_this()](std::exception_ptr e) { self->call_ended("delivery", e); });
  }

  void spawn_poll(PollWork w) {
    ++in_flight;
    net::co_spawn(executor, poll(std::move(w)), [self = shared_from_this()](std::exception_ptr e) {
      self->call_ended("task poll", e);
    });
  }

  void call_ended(std::string_view what, std::exception_ptr e) {
    log_exception(what, e);
    --in_flight;
    wake();
  }

  // Runs `op` to its end; what it threw, as a message (empty when it threw nothing).
  static net::awaitable<std::string> what_it_threw(net::awaitable<void> op) {
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

  // Any exception inside a call becomes a recorded, retryable outcome of that call: the job is
  // never left `running` until a restart.
  net::awaitable<void> deliver(DeliveryWork w) {
    bool recorded = false;
    auto op = deliver_and_record(w, recorded);  // named: see DbWorker::call on GCC 12
    std::string failure = co_await what_it_threw(std::move(op));
    if (failure.empty() || recorded) co_return;
    spdlog::error(
        "job {} ({}): internal error during its call: {}; recorded as a retryable failure",
        w.job_id, w.server_id, failure);
    if (w.probe) gate.on_inconclusive(true, std::chrono::steady_clock::now());
    AttemptOutcome outcome;
    outcome.verdict = Verdict::retryable;
    outcome.error_msg = "internal error: " + failure;
    std::int64_t now = unix_ms();
    Decision d = decide_after_call(outcome, w.attempts_used, settings, now, uniform());
    pending_attempts.push_back(attempt_finish(w, outcome, d, now));
    start_flush(pending_attempts, flushing_attempts, "call outcomes");
  }

  net::awaitable<void> deliver_and_record(DeliveryWork& w, bool& recorded) {
    std::string body = make_disassociate_body(w.server_id, w.port, w.auth ? &*w.auth : nullptr);
    HttpResult result = co_await client.disassociate(body);
    OPENSSL_cleanse(body.data(), body.size());  // the body may hold a password or private key
    w.auth.reset();

    AttemptOutcome outcome = classify_disassociate(result, std::chrono::system_clock::now());
    answered(w.sent_at, result, outcome.retry_after);
    if (auto asked = outcome.retry_after; retry_after_capped(outcome.retry_after, settings)) {
      spdlog::warn(
          "job {} ({}): Retry-After of {} s is longer than queue.retry_after_max_ms; "
          "waiting {} s",
          w.job_id, w.server_id, asked->count() / 1000, settings.retry_after_max.count() / 1000);
    }
    std::int64_t now = unix_ms();
    Decision d;
    metrics.latency["disassociate"].observe(result.latency);
    if (aborted && result.transport != HttpResult::Transport::ok) {
      d = decide_after_cancelled_call(now);
      ++metrics.calls["cancelled"];
    } else {
      tell_gate(result, w.probe, outcome.error_msg);
      if (outcome.verdict == Verdict::reauthenticate &&
          (w.previous_was_401 || (w.probe && gate.mode() == CallGate::Mode::blocked))) {
        // Refused again right after a refresh: the credentials are wrong, not this job.
        outcome.verdict = Verdict::blocked;
        outcome.error_msg = "credentials refused: HTTP 401 again after a refresh";
      }
      ++metrics.calls[std::string(to_string(outcome.verdict))];
      d = decide_after_call(outcome, w.attempts_used, settings, now, uniform(), w.previous_was_401);
    }
    count_transport(result);

    AttemptFinish f = attempt_finish(w, outcome, d, now, result.latency);
    if (d.next == JobState::retrying && outcome.verdict != Verdict::blocked) ++metrics.retries;
    if (is_terminal(d.next)) {
      ++metrics.jobs_finished[d.next];
      metrics.history.finished(d.next, now);
    }
    if (outcome.verdict == Verdict::blocked && !aborted) {
      // Nothing reached KPS: the claim is undone (no attempt row, no attempt used) and the job
      // waits in the queue while dispatch is paused. The cause is logged once, by gate_changed.
      f = claim_released(w, now);
      spdlog::debug("job {} ({}): waiting: {}", w.job_id, w.server_id, outcome.error_msg);
    } else {
      log_transition(w.job_id, w.server_id, f.next_state, f.error_code, f.error_msg,
                     f.next_attempt_at - now);
    }
    pending_attempts.push_back(std::move(f));
    recorded = true;
    start_flush(pending_attempts, flushing_attempts, "call outcomes");
  }

  // As for calls: an exception inside a poll becomes a recorded outcome (the job stays
  // `delivered` and is asked again), never a job stuck until a restart.
  net::awaitable<void> poll(PollWork w) {
    bool recorded = false;
    auto op = poll_and_record(w, recorded);
    std::string failure = co_await what_it_threw(std::move(op));
    if (failure.empty() || recorded) co_return;
    spdlog::error("job {} ({}, task {}): internal error during its task poll: {}; asking again",
                  w.job_id, w.server_id, w.task_id, failure);
    if (w.probe) gate.on_inconclusive(true, std::chrono::steady_clock::now());
    std::int64_t now = unix_ms();
    PollOutcome p;  // no answer: asked again, neither a refusal nor an answer
    p.task_id = w.task_id;
    p.error_msg = "internal error: " + failure;
    PollDecision d;
    d.next_attempt_at = now + settings.poll_interval.count();
    d.poll_refusals = w.poll_refusals;
    pending_polls.push_back(poll_finish(w, p, d, now));
    start_flush(pending_polls, flushing_polls, "task poll outcomes");
  }

  net::awaitable<void> poll_and_record(PollWork& w, bool& recorded) {
    HttpResult result = co_await client.get_task(w.task_id);
    metrics.latency["task"].observe(result.latency);
    answered(w.sent_at, result,
             parse_retry_after(result.retry_after, std::chrono::system_clock::now()));
    tell_gate(result, w.probe, result.transport_detail);
    count_transport(result);
    PollOutcome p = classify_task_poll(result, w.task_id);
    if (p.kind == PollOutcome::Kind::answered && task_phase(p.task_status) == TaskPhase::failed) {
      auto reason = co_await find_failed_task(w.task_id);
      if (reason) {
        p.task_error_code = reason->error_code;
        p.task_error_msg = reason->error_msg;
      }
    }
    std::int64_t now = unix_ms();
    PollDecision d;
    if (aborted && p.kind == PollOutcome::Kind::no_answer) {
      d.next = JobState::delivered;  // ask again after the restart
      d.next_attempt_at = now;
      d.poll_refusals = w.poll_refusals;
    } else {
      d = decide_after_poll(p, w.attempts_used, w.delivered_at, settings, now, uniform(),
                            w.poll_refusals);
    }
    ++metrics.task_polls[std::string(poll_label(p))];
    if (d.next == JobState::retrying) ++metrics.retries;
    if (is_terminal(d.next)) {
      ++metrics.jobs_finished[d.next];
      metrics.history.finished(d.next, now);
    }
    if (d.next != JobState::delivered) {
      log_transition(w.job_id, w.server_id + ", task " + w.task_id, d.next,
                     d.error_code.value_or(""), d.error_msg.value_or(""), d.next_attempt_at - now);
    } else if (p.kind != PollOutcome::Kind::answered) {
      spdlog::debug("job {}: task poll got no answer ({}), asking again", w.job_id, p.error_msg);
    }
    pending_polls.push_back(poll_finish(w, p, d, now));
    recorded = true;
    start_flush(pending_polls, flushing_polls, "task poll outcomes");
  }

  // Counts what the wire did beyond the call's outcome: an answer lost after the request was
  // sent, and a stale keep-alive connection the request was sent again past.
  void count_transport(const HttpResult& r) {
    if (r.request_sent && r.transport == HttpResult::Transport::io_error)
      ++metrics.answers_unreadable;
    if (r.resent_on_fresh_connection) ++metrics.stale_connection_resends;
  }

  // Tells the rate controller how the gateway answered a call that took its token at `sent_at`.
  void answered(RateLimiter::Clock::time_point sent_at, const HttpResult& r,
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
    switch (limiter.on_answer(sent_at, now, answer, wait)) {
      case RateLimiter::Change::none:
        return;
      case RateLimiter::Change::cut:
        ++metrics.throttled_rate_cuts;
        // One line a minute at most: a steady gateway limit is found again every few seconds.
        if (++cuts_unreported, now - last_cut_report >= std::chrono::minutes(1)) {
          spdlog::warn(
              "throttled by the API gateway (429): rate now {:.1f}/s ({} cut{} since the last "
              "report; {:.1f}% of answers in the last minute were 429)",
              limiter.rate(now), cuts_unreported, cuts_unreported == 1 ? "" : "s",
              100 * limiter.throttled_share(now));
          cuts_unreported = 0;
          last_cut_report = now;
        }
        break;
      case RateLimiter::Change::holding:
        if (wait) {
          spdlog::info("throttled with Retry-After: no calls for {} ms",
                       std::chrono::duration_cast<std::chrono::milliseconds>(*wait).count());
        } else if (!hold_reported) {
          hold_reported = true;
          spdlog::warn(
              "the API gateway refuses every call (a quota window): holding, one probe at a "
              "time until it admits calls again");
        } else {
          spdlog::debug("quota window: holding");
        }
        break;
      case RateLimiter::Change::resumed:
        if (auto window = limiter.window(); window && !window_reported && limiter.window_quota()) {
          window_reported = true;
          spdlog::info(
              "quota window recognised: about {} calls per {} ms; calls stop at the "
              "quota and resume when the window turns",
              limiter.window_quota(),
              std::chrono::duration_cast<std::chrono::milliseconds>(*window).count());
        } else {
          spdlog::debug("quota window turned: calls resume");
        }
        wake();
        break;
    }
  }

  // Waits for a rate token (calls outside the dispatch loop, like failed-task lookups); returns
  // the time it was taken.
  net::awaitable<RateLimiter::Clock::time_point> acquire_token() {
    net::steady_timer wait(executor);
    for (;;) {
      auto now = RateLimiter::Clock::now();
      if (limiter.try_acquire(now)) co_return now;
      wait.expires_after(limiter.time_until_available(now));
      co_await wait.async_wait(net::as_tuple(net::use_awaitable));
    }
  }

  // The server's reason for a FAILED_* task, from GET failed-tasks (newest first, paged).
  // Best effort: a failure here only means the reason is not kept.
  net::awaitable<std::optional<FailedTaskEntry>> find_failed_task(std::string task_id) {
    constexpr int page_size = 100;
    constexpr int max_pages = 5;
    for (int page = 0; page < max_pages && !aborted; ++page) {
      auto sent_at = co_await acquire_token();
      HttpResult r = co_await client.get_failed_tasks(page_size, std::int64_t{page} * page_size);
      metrics.latency["failed_tasks"].observe(r.latency);
      answered(sent_at, r, std::nullopt);
      if (r.transport != HttpResult::Transport::ok || r.status != 200) {
        spdlog::debug("failed-tasks lookup for task {}: {}", task_id,
                      r.status ? "HTTP " + std::to_string(r.status) : r.transport_detail);
        co_return std::nullopt;
      }
      count_transport(r);
      std::string why;
      auto body = parse_failed_tasks_body(r.body, why);
      if (!body) co_return std::nullopt;
      for (auto& t : body->tasks) {
        if (t.task_id == task_id) co_return std::move(t);
      }
      if (body->tasks.size() < page_size || (page + 1) * page_size >= body->total) break;
    }
    co_return std::nullopt;
  }

  // Group commit: outcomes that arrive while a commit is running go into the next one. A commit
  // that fails keeps its outcomes (oldest first) and is tried again after a pause, for as long
  // as it takes; only abort() (the end of a stop's grace) or a malformed database gives up, and
  // then the jobs' open attempt rows become "outcome lost" at the next start.
  template <class Finish, class Record>
  net::awaitable<void> flush(std::vector<Finish>& pending, bool& flushing, Record record,
                             std::string_view what) {
    auto self = shared_from_this();
    net::steady_timer retry_timer(executor);
    while (!pending.empty()) {
      if (gather_outcomes(pending.size())) {
        // Paced and with slots to spare: wait a moment so one commit covers several outcomes.
        retry_timer.expires_after(std::chrono::milliseconds(50));
        co_await retry_timer.async_wait(net::as_tuple(net::use_awaitable));
      }
      auto batch = std::make_shared<std::vector<Finish>>(std::exchange(pending, {}));
      recording += batch->size();
      ClaimPlan plan = plan_claim(batch->size());
      std::string problem;
      int code = 0;
      bool committed = false;
      Claimed claimed;
      try {
        // Named, not a temporary inside co_await (see DbWorker::call on GCC 12).
        auto commit = [batch, record, next = plan.request](JobStore& s) {
          return record(s, *batch, next);
        };
        claimed = co_await db.call(std::move(commit));
        committed = true;
      } catch (const sql::Error& e) {
        problem = e.what();
        code = e.code();
      } catch (const std::exception& e) {
        problem = e.what();
      }
      recording -= batch->size();
      start_claimed(plan, std::move(claimed));
      if (committed) {
        store_succeeded(StoreHealth::Writer::outcomes);
        wake();
        continue;
      }
      batch->insert(batch->end(), std::make_move_iterator(pending.begin()),
                    std::make_move_iterator(pending.end()));
      pending = std::move(*batch);
      store_failed(StoreHealth::Writer::outcomes, problem, code);
      if (aborted || !fatal_error.empty()) {
        spdlog::error(
            "{} {} could not be recorded ({}); their jobs are recorded as \"outcome lost\" "
            "and queued again at the next start",
            pending.size(), what, problem);
        pending.clear();
        break;
      }
      retry_timer.expires_after(store.retry_delay());
      co_await retry_timer.async_wait(net::as_tuple(net::use_awaitable));
    }
    flushing = false;
    wake();
  }

  // Whether a commit of `waiting` outcomes should wait for more: only while calls are paced
  // (so they trickle in), never while stopping, and only when the slots they hold are not
  // needed (a slot frees when its outcome commits).
  bool gather_outcomes(std::size_t waiting) const {
    if (stopping || waiting >= claim_batch()) return false;
    if (limiter.rate(RateLimiter::Clock::now()) <= 0) return false;
    return 2 * (in_flight + outcomes_waiting() + claimed_ahead()) < concurrency;
  }

  // Work claimed in an outcome commit: the slots it reserved and the tokens it took.
  struct ClaimPlan {
    ClaimRequest request;
    RateLimiter::Clock::time_point sent_at{};
  };

  // While calls flow unpaced, the commit that records outcomes also claims jobs for the slots
  // they free (and any other free ones): one transaction and one fsync per cycle instead of
  // two, and no wait for the dispatch loop in between. The slots are reserved meanwhile.
  ClaimPlan plan_claim(std::size_t outcomes) {
    ClaimPlan plan;
    auto now = RateLimiter::Clock::now();
    if (stopping || paused || gate.holding() || !fatal_error.empty() || limiter.holding() ||
        limiter.rate(now) > 0 || store.failing(StoreHealth::Writer::outcomes))
      return plan;  // paced or held: the dispatch loop claims, at the pace
    std::size_t free = commit_claim_slots(slot_count(), outcomes, concurrency);
    if (free == 0) return plan;
    std::size_t tokens = 0;
    while (tokens < free && limiter.try_acquire(now)) ++tokens;
    std::int64_t unix_now = unix_ms();
    plan.request = {unix_now, poll_lease_until(unix_now), tokens};
    plan.sent_at = now;
    reserved += tokens;
    return plan;
  }

  // After the commit: starts what it claimed (or gives back the slots and tokens of a commit
  // that failed, when nothing was claimed).
  void start_claimed(const ClaimPlan& plan, Claimed claimed) {
    std::size_t asked = plan.request.limit;
    if (asked == 0) return;
    reserved -= asked;
    std::size_t got = claimed.polls.size() + claimed.deliveries.size();
    limiter.give_back(asked - got);
    // Stopping, paused or blocked meanwhile: what was claimed must not go out.
    bool hold_back = stopping || paused || gate.holding();
    for (auto& w : claimed.polls) {
      w.sent_at = plan.sent_at;
      if (hold_back) {
        pending_polls.push_back(lease_released(w, unix_ms()));
      } else {
        spawn_poll(std::move(w));
      }
    }
    if (hold_back && !claimed.polls.empty()) {
      start_flush(pending_polls, flushing_polls, "task poll outcomes");
    }
    for (auto& w : claimed.deliveries) {
      w.sent_at = plan.sent_at;
      if (hold_back) {
        ready.push_back(std::move(w));
      } else {
        spawn_delivery(std::move(w));
      }
    }
    if (hold_back) release_ready("stopping, paused or blocked");
    if (got > 0) store_succeeded(StoreHealth::Writer::claim);
  }

  static Claimed record_outcomes(JobStore& s, const std::vector<AttemptFinish>& batch,
                                 const ClaimRequest& next) {
    return s.finish_and_claim(batch, next);
  }
  static Claimed record_outcomes(JobStore& s, const std::vector<PollFinish>& batch,
                                 const ClaimRequest& next) {
    return s.finish_and_claim(batch, next);
  }

  template <class Finish>
  void start_flush(std::vector<Finish>& pending, bool& flushing, std::string_view what) {
    if (flushing) return;
    flushing = true;
    auto record = [](JobStore& s, const std::vector<Finish>& b, const ClaimRequest& next) {
      return record_outcomes(s, b, next);
    };
    net::co_spawn(executor, flush(pending, flushing, record, what),
                  [self = shared_from_this(), what](std::exception_ptr e) {
                    log_exception(std::string("recording ") + std::string(what), e);
                  });
  }

  static void log_transition(std::int64_t id, std::string_view what, JobState next,
                             std::string_view code, std::string_view msg, std::int64_t delay) {
    switch (next) {
      case JobState::succeeded:
        spdlog::info("job {} ({}): succeeded", id, what);
        break;
      case JobState::failed:
        spdlog::warn("job {} ({}): failed: {}{}{}", id, what, code, code.empty() ? "" : " ", msg);
        break;
      case JobState::retrying:
        spdlog::info("job {} ({}): retry in {} ms: {}{}{}", id, what, delay, code,
                     code.empty() ? "" : " ", msg);
        break;
      default:
        spdlog::debug("job {} ({}): {}", id, what, to_string(next));
        break;
    }
  }

  net::any_io_executor executor;
  const Config& config;
  DbWorker& db;
  KpsClient& client;
  Metrics& metrics;
  net::steady_timer timer;
  RateLimiter limiter;
  std::int64_t cuts_unreported = 0;
  RateLimiter::Clock::time_point last_cut_report{};
  bool hold_reported = false;
  bool window_reported = false;
  RetrySettings settings;
  std::mt19937_64 rng;
  // queue.concurrency, changed by SIGHUP. Lowered, it takes effect as calls end: no call is
  // cut short, and calls in flight never exceed the value they were started under.
  std::size_t concurrency;
  std::size_t in_flight = 0;
  bool stopping = false;
  bool aborted = false;
  bool paused = false;
  bool wake_pending = false;
  std::deque<DeliveryWork> ready;    // claimed ahead of their rate tokens (paced only)
  std::deque<PollWork> ready_polls;  // ... polls, which go first
  std::size_t reserved = 0;          // slots a claim in progress (loop or outcome commit) may fill
  std::vector<AttemptFinish> pending_attempts;
  std::vector<PollFinish> pending_polls;
  bool flushing_attempts = false;
  bool flushing_polls = false;
  std::size_t recording = 0;  // outcomes in the commit now running
  StoreHealth store;
  std::string fatal_error;  // the database is malformed: run() ends
  std::function<void()> on_health_change;
  CallGate gate;                   // open, verifying the credentials, or blocked; starts verifying
  std::string blocked_reason_was;  // what the gate said before its last change (for the log)
  std::int64_t blocked_since_was = 0;
};

Scheduler::Scheduler(net::any_io_executor executor, const Config& config, DbWorker& db,
                     KpsClient& client, Metrics& metrics)
    : impl_(std::make_shared<Impl>(executor, config, db, client, metrics)) {}

Scheduler::~Scheduler() = default;

net::awaitable<void> Scheduler::run() { return impl_->run(); }

void Scheduler::wake() { impl_->wake(); }

void Scheduler::stop() {
  impl_->stopping = true;
  impl_->wake();
}

void Scheduler::abort() {
  impl_->stopping = true;
  impl_->aborted = true;
  impl_->client.cancel_all();
  impl_->wake();
}

void Scheduler::apply(const Config& fresh) {
  impl_->concurrency = fresh.queue.concurrency;
  impl_->limiter.set_ceiling(fresh.queue.rate_per_second);
  impl_->apply_settings(fresh);
  impl_->wake();  // a higher concurrency or ceiling has free slots at once
}

void Scheduler::probe_now() {
  if (!impl_->gate.holding()) return;
  impl_->gate.probe_now(std::chrono::steady_clock::now());
  impl_->wake();
}

void Scheduler::set_paused(bool paused) {
  impl_->paused = paused;
  impl_->wake();
}

Scheduler::Stats Scheduler::stats() const {
  Stats s;
  s.in_flight = static_cast<std::int64_t>(impl_->in_flight);
  auto now = RateLimiter::Clock::now();
  s.rate_per_second = impl_->limiter.rate(now);
  s.configured_rate_per_second = impl_->limiter.ceiling();
  s.throttled_share = impl_->limiter.throttled_share(now);
  s.holding_for_quota = impl_->limiter.holding();
  if (auto w = impl_->limiter.window()) {
    s.quota_window_ms = std::chrono::duration_cast<std::chrono::milliseconds>(*w).count();
    s.quota_calls = impl_->limiter.window_quota();
  }
  s.stopping = impl_->stopping;
  s.paused = impl_->paused;
  s.store_writable = impl_->store.writable();
  s.store_problem = impl_->store.problem();
  s.store_down_since_ms = impl_->store.writable() ? 0 : impl_->store.down_since_ms();
  s.outcomes_waiting = static_cast<std::int64_t>(impl_->outcomes_waiting());
  s.blocked_reason = impl_->gate.blocked_reason();
  s.blocked_cause = impl_->gate.blocked_cause();
  s.send_rate_per_second = impl_->limiter.observed_send_rate(now);
  s.blocked_since_ms = impl_->gate.blocked_since_ms();
  return s;
}

const std::string& Scheduler::fatal_error() const { return impl_->fatal_error; }

void Scheduler::on_health_change(std::function<void()> listener) {
  impl_->on_health_change = std::move(listener);
}

}  // namespace kpsd
