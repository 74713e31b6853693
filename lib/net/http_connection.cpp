#include "net/http_connection.hpp"

#include <openssl/ssl.h>

#include <cerrno>
#include <sys/socket.h>

namespace kpsd::detail {

std::size_t tls_unread(Connection& c) {
  if (!c.tls) return 0;
  SSL* ssl = c.tls->native_handle();
  return static_cast<std::size_t>(SSL_pending(ssl)) + BIO_ctrl_pending(SSL_get_rbio(ssl));
}

bool closed_by_peer(Connection& c) {
  if (tls_unread(c) > 0) return true;  // unsolicited bytes: not a state to reuse
  char byte;
  ssize_t n = ::recv(c.lowest().socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;
  if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
  return true;  // unsolicited bytes on an idle connection: not a state to reuse
}

Result<std::shared_ptr<ssl::context>> make_tls_context(const std::string& ca_file) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  boost::system::error_code ec;
  ctx->set_default_verify_paths(ec);  // the system trust store ...
  if (!ca_file.empty()) {
    ctx->load_verify_file(ca_file, ec);  // ... plus a private CA
    if (ec) return fail("cannot load CA file " + ca_file + ": " + ec.message());
  }
  ctx->set_verify_mode(ssl::verify_peer);
  return ctx;
}

}  // namespace kpsd::detail
