#pragma once
// The accept loop both listeners run (the control socket and the metrics/status port): accept
// until the acceptor is closed or `stopped` is set, hand each connection to `on_accept`, and
// wait as AcceptBackoff says when accept() fails. I/O glue over AcceptBackoff (unit-tested);
// covered end to end by the descriptor-limit tests (prlimit).
#include "net/accept_backoff.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <string>
#include <utility>

namespace kpsd {

// `acceptor`, `retry` and `stopped` must outlive the loop (members of the caller's object,
// which the caller keeps alive). `listener` names it in log lines ("control socket").
template <class Acceptor, class OnAccept>
boost::asio::awaitable<void> accept_each(Acceptor& acceptor, boost::asio::steady_timer& retry,
                                         const bool& stopped, std::string listener,
                                         OnAccept on_accept) {
  constexpr auto use_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);
  AcceptBackoff backoff(std::move(listener));
  while (!stopped) {
    auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
    if (ec) {
      if (stopped || ec == boost::asio::error::operation_aborted) break;
      // EMFILE and friends: the pending connection stays in the backlog; try again later rather
      // than at once (an immediate retry fails the same way, at full CPU).
      retry.expires_after(backoff.failed(ec.message()));
      co_await retry.async_wait(use_tuple);
      continue;
    }
    backoff.succeeded();
    on_accept(std::move(socket));
  }
}

}  // namespace kpsd
