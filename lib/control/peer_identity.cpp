#include "control/peer_identity.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <future>
#include <pwd.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace kpsd {

namespace net = boost::asio;

std::string describe(const PeerCred& peer) {
  std::string out = "uid " + std::to_string(peer.uid);
  if (!peer.name.empty()) out += " (" + peer.name + ")";
  return out + " pid " + std::to_string(peer.pid);
}

std::string user_name(uid_t uid) {
  long hint = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buffer(hint > 0 ? static_cast<std::size_t>(hint) : 4096);
  passwd entry{};
  passwd* found = nullptr;
  for (;;) {
    int rc = ::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found);
    if (rc == ERANGE && buffer.size() < 1024 * 1024) {
      buffer.resize(buffer.size() * 2);
      continue;
    }
    if (rc != 0 || !found || !found->pw_name) return {};
    return found->pw_name;
  }
}

PeerNames::PeerNames(std::chrono::milliseconds deadline, std::chrono::minutes keep)
    : deadline_(deadline), keep_(keep) {}

net::awaitable<std::string> PeerNames::name_of(uid_t uid) {
  auto now = std::chrono::steady_clock::now();
  if (auto it = known_.find(uid); it != known_.end() && now - it->second.at < keep_) {
    co_return it->second.name;
  }
  // A detached thread, not a pool: a lookup stuck in NSS (an LDAP server gone) must hold up
  // neither the network thread nor kpsd's exit. The thread touches only the shared state.
  std::promise<std::string> promise;
  std::future<std::string> answer = promise.get_future();
  std::thread([p = std::move(promise), uid]() mutable { p.set_value(user_name(uid)); }).detach();
  net::steady_timer tick(co_await net::this_coro::executor);
  constexpr auto step = std::chrono::milliseconds(5);
  for (auto waited = std::chrono::milliseconds(0); waited < deadline_; waited += step) {
    if (answer.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      std::string name = answer.get();
      known_[uid] = Known{name, std::chrono::steady_clock::now()};
      co_return name;
    }
    tick.expires_after(step);
    co_await tick.async_wait(net::as_tuple(net::use_awaitable));
  }
  co_return std::string{};
}

}  // namespace kpsd
