// Outcomes to the store: group commit (outcomes that arrive while a commit runs go into the
// next one), a claim for the slots they free in the same transaction while calls flow unpaced,
// and retries of a commit that fails. See scheduler_impl.hpp.
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

void Scheduler::Impl::record(AttemptFinish f) {
  attempts.pending.push_back(std::move(f));
  start_flush(attempts);
}

void Scheduler::Impl::record(PollFinish f) {
  polls.pending.push_back(std::move(f));
  start_flush(polls);
}

template <class Finish>
void Scheduler::Impl::start_flush(Outbox<Finish>& box) {
  if (box.flushing) return;
  box.flushing = true;
  net::co_spawn(executor, flush(box),
                [self = shared_from_this(), what = box.what](std::exception_ptr e) {
                  log_exception(std::string("recording ") + std::string(what), e);
                });
}

// Group commit: outcomes that arrive while a commit is running go into the next one. A commit
// that fails keeps its outcomes (oldest first) and is tried again after a pause, for as long as
// it takes; only abort() (the end of a stop's grace) or a malformed database gives up, and then
// the jobs' open attempt rows become "outcome lost" at the next start.
template <class Finish>
net::awaitable<void> Scheduler::Impl::flush(Outbox<Finish>& box) {
  auto self = shared_from_this();
  net::steady_timer retry_timer(executor);
  while (!box.pending.empty()) {
    if (dispatcher.gather_outcomes(view(), box.pending.size(), RateLimiter::Clock::now())) {
      // Paced and with slots to spare: wait a moment so one commit covers several outcomes.
      retry_timer.expires_after(std::chrono::milliseconds(50));
      co_await retry_timer.async_wait(net::as_tuple(net::use_awaitable));
    }
    auto batch = std::make_shared<std::vector<Finish>>(std::exchange(box.pending, {}));
    recording += batch->size();
    ClaimPlan plan = plan_claim(batch->size());
    std::string problem;
    int code = 0;
    bool committed = false;
    Claimed claimed;
    try {
      // Named, not a temporary inside co_await (see DbWorker::call on GCC 12).
      auto commit = [batch, next = plan.request](WorkQueue& s) {
        return s.finish_and_claim(*batch, next);
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
    for (const BatchStop& stop : claimed.stops) announce(stop);
    start_claimed(plan, std::move(claimed));
    if (committed) {
      store_succeeded(StoreHealth::Writer::outcomes);
      wake();
      continue;
    }
    batch->insert(batch->end(), std::make_move_iterator(box.pending.begin()),
                  std::make_move_iterator(box.pending.end()));
    box.pending = std::move(*batch);
    store_failed(StoreHealth::Writer::outcomes, problem, code);
    if (aborted || !fatal_error.empty()) {
      spdlog::error(
          "{} {} could not be recorded ({}); their jobs are recorded as \"outcome lost\" and "
          "queued again at the next start",
          box.pending.size(), box.what, problem);
      box.pending.clear();
      break;
    }
    retry_timer.expires_after(store.retry_delay());
    co_await retry_timer.async_wait(net::as_tuple(net::use_awaitable));
  }
  box.flushing = false;
  wake();
}

// While calls flow unpaced, the commit that records outcomes also claims jobs for the slots
// they free (and any other free ones): one transaction and one fsync per cycle instead of two,
// and no wait for the dispatch loop in between. The slots are reserved meanwhile.
Scheduler::Impl::ClaimPlan Scheduler::Impl::plan_claim(std::size_t outcomes) {
  ClaimPlan plan;
  plan.request.now = unix_ms();  // also when nothing is claimed: the brakes date a pause by it
  auto now = RateLimiter::Clock::now();
  std::size_t tokens = dispatcher.commit_claim(view(), outcomes, now);
  if (tokens == 0) return plan;
  std::int64_t unix_now = unix_ms();
  plan.request = {unix_now, poll_lease_until(unix_now), tokens};
  plan.sent_at = now;
  return plan;
}

// A batch stopped itself (its failure budget spent) or its canary ended: said once, here,
// where the transaction that decided it committed; STATUS= and the page show it from the store.
void Scheduler::Impl::announce(const BatchStop& stop) {
  spdlog::warn("{}", describe(stop));
  if (on_health_change) on_health_change();  // STATUS= at once, not at the next tick
}

// After the commit: starts what it claimed (or gives back the slots and tokens of a commit that
// failed, when nothing was claimed).
void Scheduler::Impl::start_claimed(const ClaimPlan& plan, Claimed claimed) {
  std::size_t asked = plan.request.limit;
  if (asked == 0) return;
  dispatcher.commit_claim_ended(asked);
  std::size_t got = claimed.polls.size() + claimed.deliveries.size();
  pacing.limiter.give_back(asked - got);
  // Stopping, paused or blocked meanwhile: what was claimed must not go out.
  bool hold_back = dispatcher.hold_committed_claim(view());
  for (auto& w : claimed.polls) {
    if (hold_back) {
      record(lease_released(w, unix_ms()));
    } else {
      spawn(Dispatched<PollWork>{std::move(w), false, plan.sent_at});
    }
  }
  for (auto& w : claimed.deliveries) {
    Dispatched<DeliveryWork> call{std::move(w), false, plan.sent_at};
    if (hold_back) {
      ready.push_back(std::move(call));
    } else {
      spawn(std::move(call));
    }
  }
  if (hold_back) release_ready("stopping, paused or blocked");
  if (got > 0) store_succeeded(StoreHealth::Writer::claim);
}

}  // namespace kpsd
