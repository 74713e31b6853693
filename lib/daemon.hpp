#pragma once
#include "config.hpp"

namespace kpsd {

// Exit codes (sysexits.h).
inline constexpr int exit_ok = 0;
inline constexpr int exit_usage = 64;
inline constexpr int exit_unavailable = 69;
inline constexpr int exit_software = 70;
inline constexpr int exit_cant_create = 73;
inline constexpr int exit_config = 78;

// Runs kpsd until SIGTERM/SIGINT; returns the process exit code. Start-up failures are logged
// as one line and mapped to an exit code.
int run_daemon(const Config& config);

}  // namespace kpsd
