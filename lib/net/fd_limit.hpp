#pragma once
// Open-file descriptors: kpsd raises its soft RLIMIT_NOFILE to the hard limit at start and
// refuses a configuration that cannot fit, rather than failing calls one by one later.
#include "config/config.hpp"

#include <cstdint>

namespace kpsd {

// Control and metrics connections beside the calls, and a reserve for the database (file,
// WAL, shared memory, lock), the listeners, the log, credential refreshes and the resolver.
inline constexpr std::uint64_t max_metrics_clients = 16;
inline constexpr std::uint64_t reserved_descriptors = 64;

// Descriptors kpsd may need at once with this configuration.
std::uint64_t descriptors_needed(const Config& config) noexcept;

struct FdLimit {
  std::uint64_t soft = 0, hard = 0;  // after raising
  bool raised = false;               // the soft limit was below the hard one
};
// Raises the soft limit to the hard limit (capped at 1 << 20: a huge hard limit buys nothing).
FdLimit raise_fd_limit() noexcept;

}  // namespace kpsd
