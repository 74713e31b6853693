#include "control/peer_identity.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <doctest/doctest.h>

namespace net = boost::asio;
using namespace kpsd;

TEST_CASE("peer identity: the audit line's words - names from the user database") {
  CHECK(describe(PeerCred{4242, 1001, "alice"}) == "uid 1001 (alice) pid 4242");
  CHECK(describe(PeerCred{7, 65534, ""}) == "uid 65534 pid 7");
  CHECK(user_name(0) == "root");          // every Debian system has it
  CHECK(user_name(4000000000u).empty());  // no such user: no name, no error

  net::io_context io;
  PeerNames names;
  std::string root, nobody_known;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        root = co_await names.name_of(0);
        nobody_known = co_await names.name_of(4000000000u);
      },
      net::detached);
  io.run();
  CHECK(root == "root");
  CHECK(nobody_known.empty());
}
