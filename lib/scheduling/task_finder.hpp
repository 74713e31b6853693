#pragma once
// The task lists kpsd reads for its own purposes (docs/vendor-api.md, "Task lists"): the reason
// of a task a poll saw end FAILED_* (GET failed-tasks), and the look before a job is sent again
// after a call whose outcome was lost (GET running-tasks, then failed-tasks). Each list is read
// in full and shared (kps/task_lists.hpp); what the look decides is plain code
// (kps/task_look.hpp). Every page takes a rate token and tells the rate controller its answer,
// through the CallPace the scheduler gives it.
#include "kps/kps_client.hpp"
#include "kps/task_lists.hpp"
#include "kps/task_look.hpp"
#include "model/metrics.hpp"
#include "scheduling/rate_limiter.hpp"
#include "store/job_store.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string>

namespace kpsd {

// What a list read needs of the scheduler's pacing.
class CallPace {
 public:
  virtual ~CallPace() = default;
  // A rate token for one request (its time, steady clock), or nothing once kpsd aborts.
  virtual boost::asio::awaitable<std::optional<RateLimiter::Clock::time_point>> list_token() = 0;
  // The answer to a request that took its token at `sent_at` (the rate controller, counters).
  virtual void list_answered(RateLimiter::Clock::time_point sent_at, const HttpResult& r) = 0;
};

class TaskFinder {
 public:
  using Clock = TaskLists::Clock;

  TaskFinder(boost::asio::any_io_executor executor, KpsClient& client, Metrics& metrics,
             CallPace& pace);

  // The server's reason for FAILED_* task `task_id`, from a failed-tasks page-through that
  // started at or after `seen_at` (when the poll saw the failure), shared with every poll that
  // saw one meanwhile. Best effort: nothing when it is not listed or the read failed (logged).
  boost::asio::awaitable<std::optional<FailedTaskEntry>> failed_task(std::string task_id,
                                                                     Clock::time_point seen_at);

  // Reads the lists for one job's look and decides (task_look.hpp); counts it in kpsd_looks.
  boost::asio::awaitable<LookDecision> look(const DeliveryWork& w, const LookSettings& settings);

  int fetches(TaskList list) const { return lists_.fetches(list); }

 private:
  boost::asio::awaitable<TaskListing> fetch(TaskList list);  // every page of one list

  KpsClient& client_;
  Metrics& metrics_;
  CallPace& pace_;
  TaskLists lists_;
};

}  // namespace kpsd
