#include "auth/shared_refresh.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace kpsd {

namespace net = boost::asio;

net::awaitable<Result<void>> SharedRefresh::run(Work work) {
  if (running_) {
    net::steady_timer wait(executor_, std::chrono::steady_clock::time_point::max());
    waiters_.push_back(&wait);
    co_await wait.async_wait(net::as_tuple(net::use_awaitable));
    co_return last_;
  }
  running_ = true;
  Result<void> result;
  try {
    auto op = work();  // named, not a temporary inside co_await (GCC 12)
    result = co_await std::move(op);
  } catch (const std::exception& e) {
    result = fail(e.what());  // the waiters must still be woken
  }
  running_ = false;
  last_ = result;
  for (auto* w : waiters_) w->cancel();
  waiters_.clear();
  co_return result;
}

}  // namespace kpsd
