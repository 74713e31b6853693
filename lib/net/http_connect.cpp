#include "net/http_client_impl.hpp"
#include "net/proxy_tunnel.hpp"
#include "net/use_tuple.hpp"

namespace kpsd {

HttpClient::Impl::Impl(net::any_io_executor ex, Endpoint ep, const std::string& ca_file,
                       std::chrono::milliseconds t, std::optional<ProxyRoute> p)
    : executor(ex),
      endpoint(std::move(ep)),
      timeout(t),
      resolver(ex),
      proxy(std::move(p)),
      proxy_auth(proxy ? proxy_authorization(*proxy) : Secret()) {
  host_header = endpoint.host;
  bool default_port = (endpoint.scheme == "http" && endpoint.port == 80) ||
                      (endpoint.scheme == "https" && endpoint.port == 443);
  if (!default_port) host_header += ":" + std::to_string(endpoint.port);
  if (endpoint.scheme == "https") {
    auto ctx = detail::make_tls_context(ca_file);
    if (!ctx) throw std::runtime_error(ctx.error().message);  // a start-up failure
    tls_context = std::move(*ctx);
  }
}

// A TLS verification failure is logged once per distinct cause, not once per call.
void HttpClient::Impl::report_tls(const std::string& message) {
  if (message == last_tls_error) return;
  last_tls_error = message;
  // The scheduler says it once for everyone ("calls paused: ..."); this is for tracing.
  spdlog::debug("{}", message);
}

// Running out of descriptors is said once per episode too.
void HttpClient::Impl::report_no_descriptors(const std::string& message) {
  if (no_descriptors_reported) return;
  no_descriptors_reported = true;
  spdlog::error(
      "{}; calls wait without using up attempts (raise LimitNOFILE= or lower "
      "queue.concurrency)",
      message);
}

auto HttpClient::Impl::connect()
    -> net::awaitable<std::pair<std::unique_ptr<Connection>, HttpResult>> {
  auto conn = std::make_unique<Connection>();
  const std::string port = std::to_string(endpoint.port);
  // Through a proxy, the TCP connection goes to it (and a failure names it).
  const std::string& dial_host = proxy ? proxy->host : endpoint.host;
  const std::string dial_port = proxy ? std::to_string(proxy->port) : port;
  const std::string where = proxy ? "proxy " + proxy->text() : endpoint.host + ":" + port;
  auto [rec, endpoints] = co_await resolver.async_resolve(dial_host, dial_port, use_tuple);
  if (rec) {
    co_return std::pair{nullptr,
                        detail::failure(HttpResult::Transport::connect_failed,
                                        std::string("cannot resolve ") + (proxy ? "proxy " : "") +
                                            dial_host + ": " + rec.message())};
  }
  conn->plain.emplace(executor);
  ActiveGuard guard(*this, conn.get());
  conn->plain->expires_after(timeout);
  // Each address in turn, opening the socket here: a failed open (EMFILE at the open-file
  // limit) is then seen for what it is, not as a cancelled connect.
  boost::system::error_code cec = net::error::host_not_found;
  for (const auto& entry : endpoints) {
    auto& socket = conn->plain->socket();
    boost::system::error_code ignored;
    if (socket.is_open()) socket.close(ignored);
    socket.open(entry.endpoint().protocol(), cec);
    if (cec == net::error::no_descriptors || cec.value() == ENFILE) {
      std::string message =
          "no free file descriptor for a connection to " + where + " (" + cec.message() + ")";
      report_no_descriptors(message);
      co_return std::pair{nullptr, detail::failure(HttpResult::Transport::no_descriptors, message)};
    }
    if (cec) continue;
    std::tie(cec) = co_await conn->plain->async_connect(entry.endpoint(), use_tuple);
    if (!cec || cec == beast::error::timeout || cancelled) break;
  }
  if (cec) {
    auto kind = cec == beast::error::timeout ? HttpResult::Transport::timed_out
                                             : HttpResult::Transport::connect_failed;
    co_return std::pair{nullptr, detail::failure(kind, (proxy ? where + " unreachable: connect: "
                                                              : "connect to " + where + ": ") +
                                                           cec.message())};
  }
  no_descriptors_reported = false;
  conn->plain->socket().set_option(tcp::no_delay(true));
  if (!tls_context) co_return std::pair{std::move(conn), HttpResult{}};
  if (proxy) {
    std::string authority = endpoint.host + ":" + port;  // named: not a temporary (GCC 12)
    auto tunnel_op =
        detail::open_tunnel(*conn->plain, *proxy, authority, proxy_auth.reveal(), timeout);
    HttpResult tunnel = co_await std::move(tunnel_op);
    if (tunnel.transport != HttpResult::Transport::ok) co_return std::pair{nullptr, tunnel};
  }
  co_return co_await handshake(std::move(conn));
}

// TLS over the connection (direct, or the proxy's tunnel), verified against the endpoint's
// name or address.
auto HttpClient::Impl::handshake(std::unique_ptr<Connection> conn)
    -> net::awaitable<std::pair<std::unique_ptr<Connection>, HttpResult>> {
  const std::string port = std::to_string(endpoint.port);
  ActiveGuard guard(*this, conn.get());
  conn->context = tls_context;
  conn->tls.emplace(std::move(*conn->plain), *conn->context);
  conn->plain.reset();
  SSL* ssl_handle = conn->tls->native_handle();
  // SNI, and the name (or address) the certificate must carry.
  boost::system::error_code addr_ec;
  net::ip::make_address(endpoint.host, addr_ec);
  if (addr_ec) {
    SSL_set_tlsext_host_name(ssl_handle, endpoint.host.c_str());
    SSL_set1_host(ssl_handle, endpoint.host.c_str());
  } else {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_handle), endpoint.host.c_str());
  }
  detail::set_deadline(*conn->tls, timeout);
  auto [hec] = co_await conn->tls->async_handshake(ssl::stream_base::client, use_tuple);
  if (hec) {
    std::string why = hec.message();
    long verify = SSL_get_verify_result(ssl_handle);
    if (verify != X509_V_OK) why = X509_verify_cert_error_string(verify);
    std::string message = "TLS handshake with " + endpoint.host + ":" + port +
                          (proxy ? " through proxy " + proxy->text() : "") + " failed: " + why;
    if (hec == beast::error::timeout) {
      co_return std::pair{nullptr, detail::failure(HttpResult::Transport::timed_out, message)};
    }
    report_tls(message);
    co_return std::pair{nullptr, detail::failure(HttpResult::Transport::tls_failed, message)};
  }
  last_tls_error.clear();
  co_return std::pair{std::move(conn), HttpResult{}};
}

}  // namespace kpsd
