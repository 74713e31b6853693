#include "net/fd_limit.hpp"

#include <algorithm>
#include <sys/resource.h>

namespace kpsd {

std::uint64_t descriptors_needed(const Config& config) noexcept {
  return std::uint64_t{config.queue.concurrency} + config.control.max_clients +
         (config.metrics.enabled ? max_metrics_clients : 0) + reserved_descriptors;
}

FdLimit raise_fd_limit() noexcept {
  FdLimit out;
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return out;
  rlim_t target = lim.rlim_max == RLIM_INFINITY ? rlim_t{1} << 20
                                                : std::min<rlim_t>(lim.rlim_max, rlim_t{1} << 20);
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < target) {
    rlimit raised = lim;
    raised.rlim_cur = target;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      lim = raised;
      out.raised = true;
    }
  }
  out.soft = lim.rlim_cur == RLIM_INFINITY ? UINT64_MAX : lim.rlim_cur;
  out.hard = lim.rlim_max == RLIM_INFINITY ? UINT64_MAX : lim.rlim_max;
  return out;
}

}  // namespace kpsd
