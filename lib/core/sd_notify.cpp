#include "core/sd_notify.hpp"

#include <cstdlib>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace kpsd {

SdNotifier::SdNotifier() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  if (socket && *socket) open(socket);
  const char* usec = std::getenv("WATCHDOG_USEC");
  const char* pid = std::getenv("WATCHDOG_PID");
  bool for_us = !pid || std::atoll(pid) == static_cast<long long>(::getpid());
  if (usec && for_us) {
    long long v = std::atoll(usec);
    if (v > 0) watchdog_interval_ = std::chrono::microseconds(v / 2);
  }
}

SdNotifier::SdNotifier(std::string socket_path) { open(socket_path); }

SdNotifier::~SdNotifier() {
  if (fd_ >= 0) ::close(fd_);
}

void SdNotifier::open(const std::string& path) {
  // "@name" is an abstract socket; anything else a path.
  if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path)) return;
  if (path[0] != '/' && path[0] != '@') return;
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  path_ = path;
}

bool SdNotifier::notify(std::string_view message) {
  if (fd_ < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path_.data(), path_.size());
  if (path_[0] == '@') addr.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path_.size());
  ssize_t n = ::sendto(fd_, message.data(), message.size(), MSG_NOSIGNAL,
                       reinterpret_cast<sockaddr*>(&addr), len);
  return n == static_cast<ssize_t>(message.size());
}

}  // namespace kpsd
