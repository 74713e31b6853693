#pragma once
// Signals before kpsd's handlers are in place. systemd counts a death by SIGHUP (or SIGTERM,
// SIGINT, SIGPIPE) as a clean exit (systemd.service(5), SuccessExitStatus=), so
// Restart=on-failure would leave a kpsd that died of one during its start down for good; and a
// closed stderr (`kpsd 2>&1 | head -1`) must not kill it at the next log line.

#include <chrono>

namespace kpsd {

// First thing in main, before any thread starts (threads inherit the mask): SIGPIPE is
// ignored for the whole process (a write to a closed pipe or socket returns EPIPE instead);
// SIGTERM, SIGINT and SIGHUP are blocked, so the kernel holds one that arrives while kpsd
// starts (waits for the database lock, asks IAM for its project) until the daemon's own
// handlers take it. Errors: none that can happen with these arguments (POSIX).
void hold_signals_until_handled() noexcept;

// While signals are held (a wait before the daemon's handlers run): waits up to `wait` for a
// SIGTERM or SIGINT and takes it. Returns its number, or 0 when none came (a SIGHUP stays held
// for the daemon's handler).
int take_stop_signal(std::chrono::milliseconds wait) noexcept;

// Unblocks SIGTERM, SIGINT and SIGHUP in the calling thread: one that arrived meanwhile is
// delivered now, to the handlers installed by then (the daemon's asio::signal_set), or with
// the default action (a one-shot command such as --check-config).
void release_held_signals() noexcept;

}  // namespace kpsd
