#include "kps/task_lists.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace kpsd {

namespace net = boost::asio;

TaskLists::Slot::Slot(net::any_io_executor ex) : done(ex, Clock::time_point::max()) {}

TaskLists::TaskLists(net::any_io_executor executor, Fetch fetch) : fetch_(std::move(fetch)) {
  for (auto& s : slots_) s = std::make_unique<Slot>(executor);
}

net::awaitable<std::shared_ptr<const TaskListing>> TaskLists::get(TaskList list,
                                                                  Clock::time_point not_before) {
  Slot& s = slot(list);
  for (;;) {
    if (s.latest && s.latest_started >= not_before) co_return s.latest;
    if (!s.fetching) {
      co_await fetch_into(list, s);
      continue;
    }
    // A fetch runs: it serves this caller if it started late enough; if not, the next one
    // (started once it ends) will.
    co_await s.done.async_wait(net::as_tuple(net::use_awaitable));
  }
}

net::awaitable<void> TaskLists::fetch_into(TaskList list, Slot& s) {
  s.fetching = true;
  s.fetch_started = Clock::now();
  ++s.fetches;
  TaskListing listing;
  try {
    auto op = fetch_(list);  // named: see DbWorker::call on GCC 12
    listing = co_await std::move(op);
  } catch (const std::exception& e) {
    listing.error = std::string("internal error: ") + e.what();
  }
  listing.read_started = s.fetch_started;
  s.latest = std::make_shared<const TaskListing>(std::move(listing));
  s.latest_started = s.fetch_started;
  s.fetching = false;
  s.done.expires_at(Clock::time_point::max());  // cancels the waits: everyone looks again
}

}  // namespace kpsd
