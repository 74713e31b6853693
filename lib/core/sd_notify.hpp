#pragma once
// systemd's notify protocol (sd_notify(3)) spoken directly: one datagram per message to the
// unix socket named by $NOTIFY_SOCKET. Without that variable (not under systemd) it does
// nothing. No libsystemd: the protocol is one sendto().
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace kpsd {

class SdNotifier {
 public:
  // Reads NOTIFY_SOCKET and WATCHDOG_USEC (and WATCHDOG_PID) from the environment.
  SdNotifier();
  explicit SdNotifier(std::string socket_path);  // for tests
  ~SdNotifier();
  SdNotifier(const SdNotifier&) = delete;
  SdNotifier& operator=(const SdNotifier&) = delete;

  bool enabled() const noexcept { return fd_ >= 0; }
  bool notify(std::string_view message);  // e.g. "READY=1\nSTATUS=..." ; false if not sent

  // Half of WatchdogSec, when systemd asked for keep-alives; nullopt otherwise.
  std::optional<std::chrono::microseconds> watchdog_interval() const noexcept {
    return watchdog_interval_;
  }

 private:
  void open(const std::string& path);
  int fd_ = -1;
  std::string path_;
  std::optional<std::chrono::microseconds> watchdog_interval_;
};

}  // namespace kpsd
