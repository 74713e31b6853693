#pragma once
// One credential refresh at a time: the first caller runs it; callers that arrive while it
// runs wait for it and get its result, so a burst of calls (or of 401s) makes one request to
// IAM or the metadata service, not one each. Network thread only.
#include "core/result.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <functional>
#include <string>
#include <vector>

namespace kpsd {

class SharedRefresh {
 public:
  using Work = std::function<boost::asio::awaitable<Result<void>>()>;
  explicit SharedRefresh(boost::asio::any_io_executor executor) : executor_(executor) {}

  // Runs `work`, or waits for the one running; either way, its result.
  boost::asio::awaitable<Result<void>> run(Work work);
  bool running() const noexcept { return running_; }

 private:
  boost::asio::any_io_executor executor_;
  bool running_ = false;
  Result<void> last_;
  std::vector<boost::asio::steady_timer*> waiters_;
};

}  // namespace kpsd
