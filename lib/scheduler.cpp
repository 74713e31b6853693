#include "scheduler.hpp"

#include "clock.hpp"
#include "db_worker.hpp"
#include "job_policy.hpp"
#include "kps_client.hpp"
#include "logging.hpp"
#include "metrics.hpp"
#include "rate_limiter.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

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
        limiter(cfg.queue.rate_per_second, RateLimiter::Clock::now()),
        rng(std::random_device{}()) {
    settings.max_attempts = cfg.queue.max_attempts;
    settings.backoff = Backoff(cfg.queue.backoff_initial, cfg.queue.backoff_max);
    settings.poll_tasks = cfg.kps.poll_tasks;
    settings.poll_initial_delay = cfg.kps.poll_initial_delay;
    settings.poll_interval = cfg.kps.poll_interval;
    settings.poll_timeout = cfg.kps.poll_timeout;
    settings.throttle_backoff = cfg.queue.throttle_backoff;
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
      std::size_t free =
          config.queue.concurrency - std::min<std::size_t>(in_flight, config.queue.concurrency);
      if (paused) {
        co_await sleep(idle_check);  // resume() wakes it
        continue;
      }
      std::size_t tokens_taken = 0;
      while (tokens_taken < free && limiter.try_acquire(RateLimiter::Clock::now())) ++tokens_taken;

      std::size_t started = 0;
      if (tokens_taken > 0) {
        // Polls first: they finish work already delivered.
        std::int64_t lease = now + config.kps.request_timeout.count() + 5000;
        auto polls = co_await db.call([now, lease, n = tokens_taken](JobStore& s) {
          return s.claim_for_poll(now, lease, n);
        });
        for (auto& w : polls) spawn_poll(std::move(w));
        started += polls.size();
        if (started < tokens_taken && !stopping) {
          auto work = co_await db.call([now, n = tokens_taken - started](JobStore& s) {
            return s.claim_for_delivery(now, n);
          });
          for (auto& w : work) spawn_delivery(std::move(w));
          started += work.size();
        }
        limiter.give_back(tokens_taken - started);
      }
      if (started > 0) continue;

      // Idle: sleep until woken, the next due time, a rate token, or the periodic check.
      auto wait = std::chrono::milliseconds(idle_check);
      if (free > 0 && tokens_taken == 0) {
        wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(
                                  limiter.time_until_available(RateLimiter::Clock::now())));
      } else if (free > 0) {
        auto next = co_await db.call([](JobStore& s) { return s.next_due_at(); });
        if (next)
          wait = std::min(wait,
                          std::chrono::milliseconds(std::max<std::int64_t>(0, *next - unix_ms())));
      }
      co_await sleep(wait);
    }
    // Draining: calls in flight end by their own deadlines; wait for them to be recorded.
    while (in_flight > 0 || flushing_attempts || flushing_polls) co_await sleep(idle_check);
    client.close_idle();
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

  net::awaitable<void> deliver(DeliveryWork w) {
    std::string body = make_disassociate_body(w.server_id, w.port, w.auth ? &*w.auth : nullptr);
    HttpResult result = co_await client.disassociate(body);
    OPENSSL_cleanse(body.data(), body.size());  // the body may hold a password or private key
    w.auth.reset();

    AttemptOutcome outcome = classify_disassociate(result, std::chrono::system_clock::now());
    std::int64_t now = unix_ms();
    Decision d;
    metrics.latency["disassociate"].observe(result.latency);
    if (aborted && result.transport != HttpResult::Transport::ok) {
      d = decide_after_cancelled_call(now);
      ++metrics.calls["cancelled"];
    } else {
      ++metrics.calls[std::string(to_string(outcome.verdict))];
      if (outcome.verdict == Verdict::throttled) throttled();
      d = decide_after_call(outcome, w.attempts_used, settings, now, uniform(), w.previous_was_401);
    }

    AttemptFinish f;
    f.job_id = w.job_id;
    f.attempt_n = w.attempt_n;
    f.finished_at = now;
    f.latency_ms = result.latency.count();
    f.http_status = outcome.http_status;
    f.request_id = outcome.request_id;
    f.task_id = outcome.task_id;
    f.delivery_status = outcome.delivery_status;
    f.error_code = outcome.error_code;
    f.error_msg = d.error_msg.empty() ? outcome.error_msg : d.error_msg;
    f.counts_attempt = d.counts_attempt;
    f.next_state = d.next;
    if (d.next == JobState::retrying) ++metrics.retries;
    f.next_attempt_at = d.next_attempt_at;
    if (outcome.verdict == Verdict::blocked && !aborted) {
      // The cause (TLS, credentials) is reported once where it happens, not once per job.
      spdlog::debug("job {} ({}): waiting: {}", w.job_id, w.server_id, f.error_msg);
    } else {
      log_transition(w.job_id, w.server_id, f.next_state, f.error_code, f.error_msg,
                     f.next_attempt_at - now);
    }
    pending_attempts.push_back(std::move(f));
    if (!flushing_attempts) {
      flushing_attempts = true;
      net::co_spawn(executor, flush_attempts(), [self = shared_from_this()](std::exception_ptr e) {
        log_exception("recording call outcomes", e);
      });
    }
  }

  net::awaitable<void> poll(PollWork w) {
    HttpResult result = co_await client.get_task(w.task_id);
    metrics.latency["task"].observe(result.latency);
    PollOutcome p;
    if (result.transport != HttpResult::Transport::ok) {
      p.kind = PollOutcome::Kind::no_answer;
      p.error_msg = result.transport_detail;
    } else if (result.status == 200) {
      std::string why;
      if (auto body = parse_task_body(result.body, why)) {
        p.kind = PollOutcome::Kind::answered;
        p.task_status = body->task_status;
      } else {
        p.error_msg = why;
      }
    } else if (result.status == 401 || result.status == 429 || result.status >= 500) {
      if (result.status == 429) throttled();
      p.error_msg = "HTTP " + std::to_string(result.status);
    } else {
      p.kind = PollOutcome::Kind::rejected;
      ApiErrorBody err = parse_error_body(result.body);
      p.error_code = err.code;
      p.error_msg =
          "HTTP " + std::to_string(result.status) + (err.message.empty() ? "" : ": " + err.message);
    }
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
    } else {
      d = decide_after_poll(p, w.attempts_used, w.delivered_at, settings, now, uniform());
    }
    if (p.kind == PollOutcome::Kind::answered) {
      switch (task_phase(p.task_status)) {
        case TaskPhase::succeeded:
          ++metrics.task_polls["succeeded"];
          break;
        case TaskPhase::failed:
          ++metrics.task_polls["failed"];
          break;
        case TaskPhase::pending:
          ++metrics.task_polls["pending"];
          break;
      }
    } else {
      ++metrics.task_polls[p.kind == PollOutcome::Kind::rejected ? "rejected" : "no_answer"];
    }
    if (d.next == JobState::retrying) ++metrics.retries;
    PollFinish f;
    f.job_id = w.job_id;
    f.at = now;
    if (p.kind == PollOutcome::Kind::answered) f.task_status = p.task_status;
    f.next_state = d.next;
    f.next_attempt_at = d.next_attempt_at;
    f.error_code = d.error_code;
    f.error_msg = d.error_msg;
    if (!p.task_error_code.empty()) f.task_error_code = p.task_error_code;
    if (!p.task_error_msg.empty()) f.task_error_msg = p.task_error_msg;
    if (d.next != JobState::delivered) {
      log_transition(w.job_id, "task " + w.task_id, d.next, d.error_code.value_or(""),
                     d.error_msg.value_or(""), d.next_attempt_at - now);
    } else if (p.kind != PollOutcome::Kind::answered) {
      spdlog::debug("job {}: task poll got no answer ({}), asking again", w.job_id, p.error_msg);
    }
    pending_polls.push_back(std::move(f));
    if (!flushing_polls) {
      flushing_polls = true;
      net::co_spawn(executor, flush_polls(), [self = shared_from_this()](std::exception_ptr e) {
        log_exception("recording task polls", e);
      });
    }
  }

  void throttled() {
    if (limiter.on_throttled(RateLimiter::Clock::now())) {
      ++metrics.throttled_rate_cuts;
      spdlog::warn("throttled by the API gateway (429): rate lowered to {:.2f}/s", limiter.rate());
    }
  }

  // Waits for a rate token (calls outside the dispatch loop, like failed-task lookups).
  net::awaitable<void> acquire_token() {
    net::steady_timer wait(executor);
    while (!limiter.try_acquire(RateLimiter::Clock::now())) {
      wait.expires_after(limiter.time_until_available(RateLimiter::Clock::now()));
      co_await wait.async_wait(net::as_tuple(net::use_awaitable));
    }
  }

  // The server's reason for a FAILED_* task, from GET failed-tasks (newest first, paged).
  // Best effort: a failure here only means the reason is not kept.
  net::awaitable<std::optional<FailedTaskEntry>> find_failed_task(std::string task_id) {
    constexpr int page_size = 100;
    constexpr int max_pages = 5;
    for (int page = 0; page < max_pages && !aborted; ++page) {
      co_await acquire_token();
      HttpResult r = co_await client.get_failed_tasks(page_size, std::int64_t{page} * page_size);
      metrics.latency["failed_tasks"].observe(r.latency);
      if (r.transport != HttpResult::Transport::ok || r.status != 200) {
        if (r.status == 429) throttled();
        spdlog::debug("failed-tasks lookup for task {}: {}", task_id,
                      r.status ? "HTTP " + std::to_string(r.status) : r.transport_detail);
        co_return std::nullopt;
      }
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

  // Group commit: outcomes that arrive while a commit is running go into the next one.
  net::awaitable<void> flush_attempts() {
    while (!pending_attempts.empty()) {
      auto batch = std::exchange(pending_attempts, {});
      // Named, not a temporary inside co_await (see DbWorker::call on GCC 12).
      auto record = [batch = std::move(batch)](JobStore& s) { s.finish_attempts(batch); };
      co_await db.call(std::move(record));
      wake();
    }
    flushing_attempts = false;
  }

  net::awaitable<void> flush_polls() {
    while (!pending_polls.empty()) {
      auto batch = std::exchange(pending_polls, {});
      auto record = [batch = std::move(batch)](JobStore& s) { s.finish_polls(batch); };
      co_await db.call(std::move(record));
      wake();
    }
    flushing_polls = false;
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
  RetrySettings settings;
  std::mt19937_64 rng;
  std::size_t in_flight = 0;
  bool stopping = false;
  bool aborted = false;
  bool paused = false;
  bool wake_pending = false;
  std::vector<AttemptFinish> pending_attempts;
  std::vector<PollFinish> pending_polls;
  bool flushing_attempts = false;
  bool flushing_polls = false;
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

void Scheduler::set_paused(bool paused) {
  impl_->paused = paused;
  impl_->wake();
}

Scheduler::Stats Scheduler::stats() const {
  return {static_cast<std::int64_t>(impl_->in_flight), impl_->limiter.rate(),
          impl_->limiter.configured_rate(), impl_->stopping, impl_->paused};
}

}  // namespace kpsd
