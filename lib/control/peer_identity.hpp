#pragma once
// Who sent a control request, for the audit line of every state change: the uid and pid the
// kernel vouches for (SO_PEERCRED on the control socket, see unix(7)) and the user name.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <map>
#include <string>
#include <sys/types.h>

namespace kpsd {

struct PeerCred {
  pid_t pid = 0;
  uid_t uid = 0;
  std::string name;  // the user's name, when known (filled in for state changes)
};

// "uid 1001 (alice) pid 4242", or "uid 1001 pid 4242" when the name is not known.
std::string describe(const PeerCred& peer);

// The name of `uid` from the system's user database (getpwuid_r, so NSS: files, sssd, LDAP).
// Blocks while NSS answers; empty when there is no such user or the lookup fails.
std::string user_name(uid_t uid);

// User names for the audit line, looked up off the network thread: a lookup runs on its own
// thread and is waited for up to `deadline`; past it the line carries the uid alone. Names are
// kept for `keep` (a renamed user shows under the new name after that).
class PeerNames {
 public:
  explicit PeerNames(std::chrono::milliseconds deadline = std::chrono::milliseconds(500),
                     std::chrono::minutes keep = std::chrono::minutes(10));
  // The name of `uid`, or empty (unknown, or not answered within the deadline).
  boost::asio::awaitable<std::string> name_of(uid_t uid);

 private:
  struct Known {
    std::string name;
    std::chrono::steady_clock::time_point at;
  };
  std::chrono::milliseconds deadline_;
  std::chrono::minutes keep_;
  std::map<uid_t, Known> known_;
};

}  // namespace kpsd
