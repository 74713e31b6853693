#pragma once
// KPS's two task lists (running-tasks, failed-tasks), each read in full and shared: every job
// that needs a list while one fetch runs waits for the next fetch, which serves them all, and a
// fetch is reused by jobs that accept a listing that old. So the list requests grow with the
// fetches, not with the jobs: one page-through of N failed tasks costs ceil(N / 1,000) requests
// (1,000 is the API's page limit, docs/vendor-api.md) and serves every job whose task failed
// before it started. At most one fetch per list runs at a time.
#include "kps/task_look.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <functional>
#include <memory>

namespace kpsd {

enum class TaskList { running, failed };

// One fetch reads at most this many pages of 1,000 (20,000 failed tasks): a list longer than
// that is read in part (the lookup says so), and a poll's lease is sized by it.
inline constexpr int max_task_list_pages = 20;
// A task list page: the API's most (and default) per request.
inline constexpr int task_list_page_size = 1000;

class TaskLists {
 public:
  using Clock = std::chrono::steady_clock;
  // Reads one whole list (every page). Expected failures are values (TaskListing::error).
  using Fetch = std::function<boost::asio::awaitable<TaskListing>(TaskList)>;

  TaskLists(boost::asio::any_io_executor executor, Fetch fetch);

  // A listing of `list` whose fetch started at or after `not_before` (steady clock): the newest
  // one if it is that fresh, else the next fetch (started now, or after the one running ends).
  boost::asio::awaitable<std::shared_ptr<const TaskListing>> get(TaskList list,
                                                                 Clock::time_point not_before);

  int fetches(TaskList list) const { return slot(list).fetches; }

 private:
  struct Slot {
    explicit Slot(boost::asio::any_io_executor ex);
    std::shared_ptr<const TaskListing> latest;
    Clock::time_point latest_started{};
    bool fetching = false;
    Clock::time_point fetch_started{};
    boost::asio::steady_timer done;  // cancelled when a fetch ends: wakes every waiter
    int fetches = 0;
  };
  Slot& slot(TaskList list) { return *slots_[static_cast<std::size_t>(list)]; }
  const Slot& slot(TaskList list) const { return *slots_[static_cast<std::size_t>(list)]; }
  boost::asio::awaitable<void> fetch_into(TaskList list, Slot& s);

  Fetch fetch_;
  std::array<std::unique_ptr<Slot>, 2> slots_;
};

}  // namespace kpsd
