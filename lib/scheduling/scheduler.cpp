#include "scheduling/scheduler.hpp"

#include "core/clock.hpp"
#include "core/logging.hpp"
#include "scheduling/outcome_records.hpp"
#include "scheduling/scheduler_impl.hpp"
#include "store/sqlite.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

namespace kpsd {

namespace net = boost::asio;

Scheduler::Impl::Impl(net::any_io_executor ex, const Config& cfg, DbWorker& d, KpsClient& c,
                      Metrics& m)
    : executor(ex),
      config(cfg),
      db(d),
      client(c),
      metrics(m),
      timer(ex),
      pacing(ex, cfg, settings, m, {stopping, aborted},
             {[this] { wake(); }, [this] { health_changed(); }}),
      tasks(ex, c, m, pacing),
      rng(std::random_device{}()),
      concurrency(cfg.queue.concurrency) {
  apply_settings(cfg);
  // Also the rate limiter's longest probe gap, fixed at construction: a restart changes it.
  settings.throttle_backoff = cfg.queue.throttle_backoff;
}

// The retry policy's settings from a configuration: at start, and again on SIGHUP.
void Scheduler::Impl::apply_settings(const Config& cfg) {
  settings.max_attempts = cfg.queue.max_attempts;
  settings.backoff = Backoff(cfg.queue.backoff_initial, cfg.queue.backoff_max);
  settings.poll_tasks = cfg.kps.poll_tasks;
  settings.poll_initial_delay = cfg.kps.poll_initial_delay;
  settings.poll_interval = cfg.kps.poll_interval;
  settings.poll_timeout = cfg.kps.poll_timeout;
  settings.retry_after_max = cfg.queue.retry_after_max;
  settings.task_failure_retries = cfg.queue.task_failure_retries;
  look_settings.settle = cfg.kps.request_timeout;
}

// A claimed poll's lease: long enough for the poll and its failed-tasks lookup, which may wait
// for a page-through in progress and then read its own (each at most max_task_list_pages);
// its outcome is fenced to the lease anyway, so an overrun only costs a harmless second GET.
std::int64_t Scheduler::Impl::poll_lease_until(std::int64_t now_ms) const {
  return now_ms + config.kps.request_timeout.count() * (1 + 2 * max_task_list_pages) + 5000;
}

double Scheduler::Impl::uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng); }

void Scheduler::Impl::wake() {
  wake_pending = true;
  timer.cancel();
}

net::awaitable<void> Scheduler::Impl::sleep(std::chrono::milliseconds wait) {
  if (wake_pending) {
    wake_pending = false;
    co_return;
  }
  timer.expires_after(wait);
  co_await timer.async_wait(net::as_tuple(net::use_awaitable));
  wake_pending = false;
}

// Slots taken (dispatch_plan): a slot is free only once its call's outcome is committed, so
// jobs `running` in the database never exceed `concurrency`, nor do the calls a crash repeats.
SlotCount Scheduler::Impl::slot_count() const {
  return {in_flight, outcomes_waiting(), claimed_ahead(), dispatcher.reserved()};
}

std::size_t Scheduler::Impl::outcomes_waiting() const {
  return attempts.pending.size() + polls.pending.size() + recording;
}

DispatchView Scheduler::Impl::view() const {
  DispatchView v;
  v.slots = slot_count();
  v.concurrency = concurrency;
  v.ready_polls = ready_polls.size();
  v.ready_deliveries = ready.size();
  v.stopping = stopping || !fatal_error.empty();
  v.paused = paused;
  v.store_failing = store.failing(StoreHealth::Writer::outcomes);
  return v;
}

// Does what the dispatcher says, turn after turn, until stop().
net::awaitable<void> Scheduler::Impl::run() {
  auto self = shared_from_this();
  while (!stopping) {
    DispatchStep step = dispatcher.next(view(), RateLimiter::Clock::now());
    if (!step.release.empty()) release_ready(step.release);
    switch (step.kind) {
      case DispatchStep::Kind::sleep:
        co_await sleep(step.wait);
        break;
      case DispatchStep::Kind::send_ready:
        send_ready(step);
        break;
      case DispatchStep::Kind::claim:
        co_await claim(step);
        break;
    }
  }
  // Stopping: what was claimed ahead goes back unsent.
  DispatchStep last = dispatcher.next(view(), RateLimiter::Clock::now());
  if (!last.release.empty()) release_ready(last.release);
  // Draining: calls in flight end by their own deadlines; wait for them to be recorded (or,
  // after abort(), for the flushers to give up on a store that still cannot be written).
  while (in_flight > 0 || attempts.flushing || polls.flushing)
    co_await sleep(Dispatcher::idle_check);
  client.close_idle();
}

void Scheduler::Impl::send_ready(const DispatchStep& step) {
  // The step counted the queues a moment ago; a token for a call no longer there goes back.
  std::size_t unused = send_from(ready_polls, step.send_polls, step.sent_at);
  unused += send_from(ready, step.send_deliveries, step.sent_at);
  pacing.limiter.give_back(unused);
}

// Starts up to `n` calls from the front of `queue` with their token's time; returns how many of
// the `n` were not there.
template <class Work>
std::size_t Scheduler::Impl::send_from(std::deque<Dispatched<Work>>& queue, std::size_t n,
                                       RateLimiter::Clock::time_point sent_at) {
  std::size_t sent = 0;
  for (; sent < n && !queue.empty(); ++sent) {
    Dispatched<Work> call = std::move(queue.front());
    queue.pop_front();
    call.sent_at = sent_at;
    spawn(std::move(call));
  }
  return n - sent;
}

net::awaitable<void> Scheduler::Impl::claim(const DispatchStep& step) {
  std::size_t started = 0;
  std::string problem;
  int code = 0;
  bool failed = false;
  // The slots this claim may fill stay reserved (Dispatcher::reserved) while it runs.
  try {
    co_await claim_and_start(step, started);
  } catch (const sql::Error& e) {
    failed = true;
    problem = e.what();
    code = e.code();
  } catch (const std::exception& e) {
    failed = true;
    problem = e.what();
  }
  bool go_on = dispatcher.claim_ended(step, started, claimed_ahead());
  if (failed) {
    // Nothing was claimed (the transaction rolled back): try again after a pause.
    store_failed(StoreHealth::Writer::claim, problem, code);
    co_await sleep(store.retry_delay());
    co_return;
  }
  store_succeeded(StoreHealth::Writer::claim);
  if (go_on) co_return;
  // Idle: sleep until woken, the next due time, or the periodic check.
  auto wait = Dispatcher::idle_check;
  std::optional<std::int64_t> next;
  try {
    next = co_await db.call([](WorkQueue& s) { return s.next_due_at(); });
  } catch (const std::exception& e) {
    spdlog::debug("next due time: {}", e.what());  // the periodic check covers it
  }
  if (next)
    wait = std::min(wait, std::chrono::milliseconds(std::max<std::int64_t>(0, *next - unix_ms())));
  co_await sleep(wait);
}

// Claims polls first, then deliveries, and starts what the claim's tokens cover; the rest wait
// in the ready queues for their tokens; `started` counts the calls started, also when the second
// transaction throws (what the first one started runs on).
net::awaitable<void> Scheduler::Impl::claim_and_start(const DispatchStep& step,
                                                      std::size_t& started) {
  std::int64_t now = unix_ms();
  std::int64_t lease = poll_lease_until(now);
  auto due_polls = co_await db.call([now, lease, n = step.size.total()](WorkQueue& s) {
    return s.claim_for_poll(now, lease, n);
  });
  // A 401 or a TLS failure may have closed the gate while the claim ran: then what was claimed
  // waits (and is given back by the next turn of the loop).
  Placement place = dispatcher.place(step, due_polls.size(), 0);
  start_or_hold(due_polls, step, place.polls_now, ready_polls);
  started = place.polls_now;
  dispatcher.claimed(due_polls.size());  // now in flight, or waiting in ready_polls
  if (std::size_t want = step.size.total() - due_polls.size(); want > 0 && !stopping) {
    // A replace-form job whose key is gone fails in the claim, and may spend a budget.
    auto claim = [now, want](WorkQueue& s) {
      std::vector<BatchStop> stopped;
      auto claimed = s.claim_for_delivery(now, want, &stopped);
      return std::pair{std::move(claimed), std::move(stopped)};
    };
    auto [work, stops] = co_await db.call(std::move(claim));
    for (const BatchStop& stop : stops) announce(stop);
    place = dispatcher.place(step, started, work.size());
    start_or_hold(work, step, place.deliveries_now, ready);
    started += place.deliveries_now;
    spdlog::trace("claimed {} job(s), {} of them ahead of their rate tokens", work.size(),
                  ready.size());
  }
  if (step.probe && started > 0) spdlog::debug("calls held: probe sent");
}

// The first `now` of what a claim returned start; the rest wait in `ready` for their tokens.
template <class Work>
void Scheduler::Impl::start_or_hold(std::vector<Work>& claimed, const DispatchStep& step,
                                    std::size_t now, std::deque<Dispatched<Work>>& ready_queue) {
  for (std::size_t i = 0; i < claimed.size(); ++i) {
    Dispatched<Work> call{std::move(claimed[i]), step.probe, step.sent_at};
    if (i < now) {
      spawn(std::move(call));
    } else {
      ready_queue.push_back(std::move(call));
    }
  }
}

// Calls claimed ahead but not sent go back as if never claimed: deliveries to the queue (no
// attempt used, their open attempt rows deleted), polls to `delivered` with their lease given
// up. Nothing was sent for them.
void Scheduler::Impl::release_ready(std::string_view why) {
  if (claimed_ahead() == 0) return;
  spdlog::debug("{} job(s) claimed ahead go back to the queue: {}", claimed_ahead(), why);
  std::int64_t now = unix_ms();
  auto held = std::exchange(ready, {});
  auto held_polls = std::exchange(ready_polls, {});
  for (auto& call : held) record(claim_released(call.work, now));
  for (auto& call : held_polls) record(lease_released(call.work, now));
}

// The slot is given back when the coroutine ends, however it ends, so a stop never waits for a
// call that died with an exception (its job stays `running` until the next start).
void Scheduler::Impl::spawn(Dispatched<DeliveryWork> call) {
  ++in_flight;
  net::co_spawn(
      executor, deliver(std::move(call)),
      [self = shared_from_this()](std::exception_ptr e) { self->call_ended("delivery", e); });
}

void Scheduler::Impl::spawn(Dispatched<PollWork> call) {
  ++in_flight;
  net::co_spawn(executor, poll(std::move(call)), [self = shared_from_this()](std::exception_ptr e) {
    self->call_ended("task poll", e);
  });
}

void Scheduler::Impl::call_ended(std::string_view what, std::exception_ptr e) {
  log_exception(what, e);
  --in_flight;
  wake();
}

void Scheduler::Impl::store_failed(StoreHealth::Writer writer, const std::string& problem,
                                   int code) {
  if (is_malformed_database(code)) {
    if (!fatal_error.empty()) return;
    fatal_error = problem;
    spdlog::critical(
        "the database is malformed ({}): kpsd cannot record outcomes and stops; restore it "
        "from a backup or move it aside",
        problem);
    stopping = true;
    aborted = true;
    client.cancel_all();
    wake();
    return;
  }
  if (store.failed(writer, problem, unix_ms()) == StoreHealth::Change::went_down) {
    ++metrics.store_outages;
    spdlog::error(
        "job store cannot be written: {}; no new calls until it can ({} outcomes wait in "
        "memory; retrying)",
        problem, outcomes_waiting());
    health_changed();
  }
}

void Scheduler::Impl::store_succeeded(StoreHealth::Writer writer) {
  if (store.succeeded(writer, unix_ms()) == StoreHealth::Change::recovered) {
    spdlog::warn("job store writable again after {} ms; resuming", store.last_outage_ms());
    health_changed();
    wake();
  }
}

void Scheduler::Impl::health_changed() {
  if (on_health_change) on_health_change();
}

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
  impl_->pacing.limiter.set_ceiling(fresh.queue.rate_per_second);
  impl_->apply_settings(fresh);
  impl_->wake();  // a higher concurrency or ceiling has free slots at once
}

void Scheduler::probe_now() {
  if (!impl_->pacing.gate.holding()) return;
  impl_->pacing.gate.probe_now(std::chrono::steady_clock::now());
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
  s.rate_per_second = impl_->pacing.limiter.rate(now);
  s.configured_rate_per_second = impl_->pacing.limiter.ceiling();
  s.throttled_share = impl_->pacing.limiter.throttled_share(now);
  s.holding_for_quota = impl_->pacing.limiter.holding();
  if (auto w = impl_->pacing.limiter.window()) {
    s.quota_window_ms = std::chrono::duration_cast<std::chrono::milliseconds>(*w).count();
    s.quota_calls = impl_->pacing.limiter.window_quota();
  }
  s.stopping = impl_->stopping;
  s.paused = impl_->paused;
  s.store_writable = impl_->store.writable();
  s.store_problem = impl_->store.problem();
  s.store_down_since_ms = impl_->store.writable() ? 0 : impl_->store.down_since_ms();
  s.outcomes_waiting = static_cast<std::int64_t>(impl_->outcomes_waiting());
  s.blocked_reason = impl_->pacing.gate.blocked_reason();
  s.blocked_cause = impl_->pacing.gate.blocked_cause();
  s.send_rate_per_second = impl_->pacing.limiter.observed_send_rate(now);
  s.blocked_since_ms = impl_->pacing.gate.blocked_since_ms();
  return s;
}

const std::string& Scheduler::fatal_error() const { return impl_->fatal_error; }

void Scheduler::on_health_change(std::function<void()> listener) {
  impl_->on_health_change = std::move(listener);
}

}  // namespace kpsd
