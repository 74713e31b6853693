#include "ctl/control_client.hpp"

#include <boost/json.hpp>

#include <openssl/crypto.h>

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace kpsd::ctl {

namespace json = boost::json;

ControlClient::ControlClient(const std::string& path) : path_(path) {
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw Unreachable(std::string("socket: ") + std::strerror(errno));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) throw Unreachable("socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    ::close(fd_);
    fd_ = -1;
    if (err == EACCES || err == EPERM) {
      throw NotPermitted("permission denied on kpsd's control socket " + path +
                         " (or a folder above it): run kpsctl as root or as a member of the "
                         "socket's group (ls -l " +
                         path + "; control.socket_mode in kpsd.conf)");
    }
    // A file or a folder where the socket should be: a wrong path, not a kpsd that is down.
    struct stat st {};
    if (err == ECONNREFUSED && ::stat(path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode)) {
      throw Unreachable("cannot reach kpsd at " + path + ": it is " +
                        (S_ISDIR(st.st_mode) ? "a directory" : "not a socket") +
                        " (kpsd's socket is control.socket in kpsd.conf; set --socket or "
                        "KPSD_SOCKET)");
    }
    throw Unreachable("cannot reach kpsd at " + path + ": " + std::strerror(err) +
                      " (is kpsd running? set --socket or KPSD_SOCKET)");
  }
  timeval tv{60, 0};  // a reply that takes a minute means the daemon is stuck
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}
ControlClient::~ControlClient() {
  if (fd_ >= 0) ::close(fd_);
}

json::object ControlClient::request(const json::object& req) {
  std::string line = json::serialize(req) + "\n";
  // The line may carry a job's key: clear it once sent.
  struct Wipe {
    std::string& s;
    ~Wipe() { OPENSSL_cleanse(s.data(), s.size()); }
  } wipe{line};
  std::size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::send(fd_, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Unreachable("lost connection to kpsd at " + path_);
    off += static_cast<std::size_t>(n);
  }
  std::string reply;
  for (;;) {
    if (auto nl = pending_.find('\n'); nl != std::string::npos) {
      reply = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      break;
    }
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Unreachable("kpsd at " + path_ + " closed the connection or did not answer");
    pending_.append(buf, static_cast<std::size_t>(n));
  }
  boost::system::error_code ec;
  json::value v = json::parse(reply, ec);
  if (ec || !v.is_object()) throw Unreachable("kpsd sent a reply that is not JSON");
  return std::move(v.as_object());
}

}  // namespace kpsd::ctl
