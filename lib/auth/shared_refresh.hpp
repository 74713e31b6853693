#pragma once
// One credential refresh at a time: the first caller runs it; callers that arrive while it
// runs wait for it and get its result, so a burst of calls (or of 401s) makes one request to
// IAM or the metadata service, not one each. Network thread only.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <functional>
#include <string>
#include <vector>

namespace kpsd {

class SharedRefresh {
 public:
  using Work = std::function<boost::asio::awaitable<std::string>()>;
  explicit SharedRefresh(boost::asio::any_io_executor executor) : executor_(executor) {}

  // Runs `work` (empty string: success; else why not), or waits for the one running.
  boost::asio::awaitable<std::string> run(Work work);
  bool running() const noexcept { return running_; }

 private:
  boost::asio::any_io_executor executor_;
  bool running_ = false;
  std::string last_error_;
  std::vector<boost::asio::steady_timer*> waiters_;
};

}  // namespace kpsd
