#include "net/accept_backoff.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace kpsd {

std::chrono::milliseconds AcceptBackoff::failed(const std::string& why) {
  if (failures_++ == 0) {
    spdlog::error("{}: accept failed: {}; retrying with backoff (is the open-file limit reached?)",
                  listener_, why);
  }
  delay_ = delay_.count() == 0 ? first_delay : std::min(delay_ * 2, max_delay);
  return delay_;
}

void AcceptBackoff::succeeded() {
  if (failures_ > 0) {
    spdlog::warn("{}: accepting again after {} failed tries", listener_, failures_);
  }
  failures_ = 0;
  delay_ = std::chrono::milliseconds(0);
}

}  // namespace kpsd
