#pragma once
// The scheduler's coroutine shell, shared by the files that implement it (not a public header):
//   scheduler.cpp         the dispatch loop: does what the Dispatcher's steps say (sleep, send
//                         calls claimed ahead, claim), spawns calls, keeps the slot count
//   scheduler_calls.cpp   one call or task poll: send, classify, decide, report, record
//   scheduler_commit.cpp  group commit of outcomes (with a claim for the slots they free) and
//                         the release of claimed work that must not go out
// The decisions live in plain code: Dispatcher (dispatch_plan), CallGate, RateLimiter,
// job_policy, outcome_records and StoreHealth; this shell holds their state and the I/O.
#include "kps/classify.hpp"
#include "kps/kps_client.hpp"
#include "kps/task_lists.hpp"
#include "kps/task_look.hpp"
#include "model/metrics.hpp"
#include "scheduling/call_gate.hpp"
#include "scheduling/dispatcher.hpp"
#include "scheduling/job_policy.hpp"
#include "scheduling/rate_limiter.hpp"
#include "scheduling/scheduler.hpp"
#include "scheduling/scheduler_log.hpp"
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
  boost::asio::awaitable<void> claim_and_start(const DispatchStep& step, std::size_t& claiming,
                                               std::size_t& started);
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
  boost::asio::awaitable<void> deliver(Dispatched<DeliveryWork> call);
  boost::asio::awaitable<void> deliver_and_record(Dispatched<DeliveryWork>& call, bool& recorded);
  Decision decide_delivery(const Dispatched<DeliveryWork>& call, const HttpResult& result,
                           AttemptOutcome& outcome, std::int64_t now);
  boost::asio::awaitable<void> poll(Dispatched<PollWork> call);
  boost::asio::awaitable<void> poll_and_record(Dispatched<PollWork>& call, bool& recorded);
  PollDecision decide_poll(const Dispatched<PollWork>& call, const PollOutcome& p,
                           std::int64_t now);
  void tell_gate(const HttpResult& r, bool probe, std::string_view blocked_reason_text);
  void count_transport(const HttpResult& r);
  void answered(RateLimiter::Clock::time_point sent_at, const HttpResult& r,
                std::optional<std::chrono::milliseconds> retry_after);
  enum class Until { abort, stop };  // what ends a wait for a token
  boost::asio::awaitable<std::optional<RateLimiter::Clock::time_point>> acquire_token(Until until);
  boost::asio::awaitable<std::optional<FailedTaskEntry>> find_failed_task(
      std::string task_id, TaskLists::Clock::time_point seen_at);
  boost::asio::awaitable<TaskListing> fetch_task_list(TaskList list);
  boost::asio::awaitable<bool> look_before_sending(Dispatched<DeliveryWork>& call, bool& recorded);
  boost::asio::awaitable<LookDecision> look(const DeliveryWork& w);

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
  RateLimiter limiter;
  CallGate gate;  // open, verifying the credentials, or blocked; starts verifying
  Dispatcher dispatcher{limiter, gate};
  TaskLists task_lists;  // running-tasks and failed-tasks, read in full and shared
  LookSettings look_settings;
  RateReport rate_report;
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
  std::deque<Dispatched<DeliveryWork>> ready;    // claimed ahead of their rate tokens (paced)
  std::deque<Dispatched<PollWork>> ready_polls;  // ... polls, which go first
  std::size_t reserved = 0;  // slots a claim in progress (loop or outcome commit) may fill
  Outbox<AttemptFinish> attempts{{}, false, "call outcomes"};
  Outbox<PollFinish> polls{{}, false, "task poll outcomes"};
  std::size_t recording = 0;  // outcomes in the commit now running
  StoreHealth store;
  std::string fatal_error;  // the database is malformed: run() ends
  std::function<void()> on_health_change;
};

}  // namespace kpsd
