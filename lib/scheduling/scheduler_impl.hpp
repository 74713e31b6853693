#pragma once
// The scheduler's coroutine shell, shared by the files that implement it (not a public header):
//   scheduler.cpp         the dispatch loop: does what the Dispatcher's steps say (sleep, send
//                         calls claimed ahead, claim), spawns calls, keeps the slot count
//   scheduler_calls.cpp   one call or task poll: send, classify, decide, report, record
//   scheduler_commit.cpp  group commit of outcomes (with a claim for the slots they free) and
//                         the release of claimed work that must not go out
// Beside it: CallPacing (the rate controller and the gate, told every answer) and TaskFinder
// (the task lists' reads and the looks). The decisions live in plain code: Dispatcher
// (dispatch_plan), CallGate, RateLimiter, job_policy, outcome_records and StoreHealth; this
// shell holds their state and the I/O.
#include "kps/classify.hpp"
#include "kps/kps_client.hpp"
#include "kps/task_look.hpp"
#include "model/metrics.hpp"
#include "scheduling/call_pacing.hpp"
#include "scheduling/dispatcher.hpp"
#include "scheduling/job_policy.hpp"
#include "scheduling/scheduler.hpp"
#include "scheduling/scheduler_log.hpp"
#include "scheduling/task_finder.hpp"
#include "store/db_worker.hpp"
#include "store/store_health.hpp"
#include "store/work_queue.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace kpsd {

// A claimed call as the scheduler carries it: the store's work plus the dispatch bookkeeping
// (the store knows neither).
template <class Work>
struct Dispatched {
  Work work;
  bool probe = false;                        // the one probe while the gate holds calls
  RateLimiter::Clock::time_point sent_at{};  // its rate token's time (for the rate controller)
  // What the look before this call found (after an unknown outcome), for its attempt record.
  std::string look{};
  std::string task_error_code{}, task_error_msg{};  // a failed task it found
};

// Outcomes waiting for their commit, and whether a commit loop runs for them.
template <class Finish>
struct Outbox {
  std::vector<Finish> pending;
  bool flushing = false;
  std::string_view what;  // for log lines: "call outcomes", "task poll outcomes"
};

struct Scheduler::Impl : std::enable_shared_from_this<Impl> {
  Impl(boost::asio::any_io_executor ex, const Config& cfg, DbWorker& d, KpsClient& c, Metrics& m);

  // --- scheduler.cpp: the loop and its slots ---
  void apply_settings(const Config& cfg);
  std::int64_t poll_lease_until(std::int64_t now_ms) const;
  double uniform();
  void wake();
  boost::asio::awaitable<void> sleep(std::chrono::milliseconds wait);
  DispatchView view() const;
  SlotCount slot_count() const;
  std::size_t claimed_ahead() const { return ready.size() + ready_polls.size(); }
  std::size_t outcomes_waiting() const;
  boost::asio::awaitable<void> run();
  void send_ready(const DispatchStep& step);
  template <class Work>
  std::size_t send_from(std::deque<Dispatched<Work>>& queue, std::size_t n,
                        RateLimiter::Clock::time_point sent_at);
  boost::asio::awaitable<void> claim(const DispatchStep& step);
  boost::asio::awaitable<void> claim_and_start(const DispatchStep& step, std::size_t& started);
  template <class Work>
  void start_or_hold(std::vector<Work>& claimed, const DispatchStep& step, std::size_t now,
                     std::deque<Dispatched<Work>>& ready_queue);
  void release_ready(std::string_view why);
  void spawn(Dispatched<DeliveryWork> call);
  void spawn(Dispatched<PollWork> call);
  void call_ended(std::string_view what, std::exception_ptr e);
  void store_failed(StoreHealth::Writer writer, const std::string& problem, int code);
  void store_succeeded(StoreHealth::Writer writer);
  void health_changed();

  // --- scheduler_calls.cpp: one call or poll ---
  // A call or poll: its exchange's record to the committer (an exception: a retryable one).
  boost::asio::awaitable<void> deliver(Dispatched<DeliveryWork> call);
  boost::asio::awaitable<void> poll(Dispatched<PollWork> call);
  // The I/O of one call or poll, to the record of how it ended (nothing recorded here).
  boost::asio::awaitable<AttemptFinish> exchange(Dispatched<DeliveryWork>& call);
  boost::asio::awaitable<PollFinish> exchange(Dispatched<PollWork>& call);
  AttemptFinish call_finish(const Dispatched<DeliveryWork>& call, const HttpResult& result);
  // Decided without a call (its record), or nothing: send.
  boost::asio::awaitable<std::optional<AttemptFinish>> look_before_sending(
      Dispatched<DeliveryWork>& call);

  // --- scheduler_commit.cpp: outcomes to the store ---
  void record(AttemptFinish f);
  void record(PollFinish f);
  struct ClaimPlan {
    ClaimRequest request;
    RateLimiter::Clock::time_point sent_at{};
  };
  ClaimPlan plan_claim(std::size_t outcomes);
  void start_claimed(const ClaimPlan& plan, Claimed claimed);
  void announce(const BatchStop& stop);  // a batch stopped itself: said once
  template <class Finish>
  void start_flush(Outbox<Finish>& box);
  template <class Finish>
  boost::asio::awaitable<void> flush(Outbox<Finish>& box);

  boost::asio::any_io_executor executor;
  const Config& config;
  DbWorker& db;
  KpsClient& client;
  Metrics& metrics;
  boost::asio::steady_timer timer;
  RetrySettings settings;
  LookSettings look_settings;
  bool stopping = false;
  bool aborted = false;
  CallPacing pacing;  // the rate controller and the call gate, told every answer
  Dispatcher dispatcher{pacing.limiter, pacing.gate};
  TaskFinder tasks;  // failed tasks' reasons and the looks: the task lists, read and shared
  std::mt19937_64 rng;
  // queue.concurrency, changed by SIGHUP. Lowered, it takes effect as calls end: no call is
  // cut short, and calls in flight never exceed the value they were started under.
  std::size_t concurrency;
  std::size_t in_flight = 0;
  bool paused = false;
  bool wake_pending = false;
  std::deque<Dispatched<DeliveryWork>> ready;    // claimed ahead of their rate tokens (paced)
  std::deque<Dispatched<PollWork>> ready_polls;  // ... polls, which go first
  Outbox<AttemptFinish> attempts{{}, false, "call outcomes"};
  Outbox<PollFinish> polls{{}, false, "task poll outcomes"};
  std::size_t recording = 0;  // outcomes in the commit now running
  StoreHealth store;
  std::string fatal_error;  // the database is malformed: run() ends
  std::function<void()> on_health_change;
};

}  // namespace kpsd
