#pragma once
// Plain POSIX clients for tests: a unix-socket NDJSON client, a raw TCP client to 127.0.0.1, and
// one HTTP GET over TCP.
#include <chrono>
#include <cstdint>
#include <cstring>
#include <netinet/in.h>
#include <optional>
#include <poll.h>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace kpsd::test {

// A connected stream socket: send, read lines, see the server close it.
class StreamClient {
 public:
  ~StreamClient() { ::close(fd_); }
  StreamClient(const StreamClient&) = delete;
  StreamClient& operator=(const StreamClient&) = delete;

  bool send_all(const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }

  // One reply line, or nullopt on EOF / timeout.
  std::optional<std::string> read_line(
      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto nl = pending_.find('\n'); nl != std::string::npos) {
        std::string line = pending_.substr(0, nl);
        pending_.erase(0, nl + 1);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
      char buf[65536];
      ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return std::nullopt;
      pending_.append(buf, static_cast<std::size_t>(n));
    }
  }

  std::optional<std::string> request(const std::string& line) {
    if (!send_all(line + "\n")) return std::nullopt;
    return read_line();
  }

  // Reads and discards until the server closes the connection (EOF or reset) or `timeout`
  // passes; true if it closed.
  bool closed_by_server(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[65536];
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
      ssize_t n = ::recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
      if (n == 0) return true;
      if (n < 0 && errno != EAGAIN && errno != EINTR) return true;
    }
  }

  int fd() const { return fd_; }

 protected:
  StreamClient() = default;
  // Opens a stream socket of `family` and connects it to `addr`; `where` names it in the error.
  void open(int family, const sockaddr* addr, socklen_t size, const std::string& where) {
    fd_ = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(fd_, addr, size) != 0) {
      int error = errno;
      ::close(fd_);
      fd_ = -1;
      throw std::runtime_error("connect " + where + ": " + std::strerror(error));
    }
  }

 private:
  int fd_ = -1;
  std::string pending_;
};

inline sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

inline sockaddr_in loopback_address(std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

class UnixClient : public StreamClient {
 public:
  explicit UnixClient(const std::string& path) {
    sockaddr_un addr = unix_address(path);
    open(AF_UNIX, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr), path);
  }
};

// A TCP connection to 127.0.0.1:port.
class TcpClient : public StreamClient {
 public:
  explicit TcpClient(std::uint16_t port) {
    sockaddr_in addr = loopback_address(port);
    open(AF_INET, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr),
         "127.0.0.1:" + std::to_string(port));
  }
};

// METHOD http://127.0.0.1:port/path with Connection: close; returns status line + headers +
// body.
inline std::string http_request(std::uint16_t port, const std::string& method,
                                const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = loopback_address(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    throw std::runtime_error("connect to metrics port failed");
  }
  std::string req =
      method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) break;
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

inline std::string http_get(std::uint16_t port, const std::string& path) {
  return http_request(port, "GET", path);
}

}  // namespace kpsd::test
