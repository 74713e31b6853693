#include "net/proxy_tunnel.hpp"

#include "net/http_connection.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>

namespace kpsd::detail {

namespace net = boost::asio;

namespace {

HttpResult tunnel_failure(HttpResult::Transport kind, std::string detail) {
  HttpResult r;
  r.transport = kind;
  r.transport_detail = std::move(detail);
  return r;
}

}  // namespace

HttpResult credentials_refused(const ProxyRoute& proxy, const std::string& answer) {
  std::string who = "proxy " + proxy.text();
  return tunnel_failure(
      HttpResult::Transport::proxy_refused,
      proxy.credentials.empty()
          ? who + " asks for credentials (" + answer + "): set kps.proxy_credentials_file"
          : who + " refused the credentials (" + answer + ")");
}

namespace {

// What a CONNECT answer that is not 2xx means for the calls behind it.
HttpResult refused(unsigned status, std::string_view reason, const ProxyRoute& proxy,
                   const std::string& authority) {
  std::string who = "proxy " + proxy.text();
  std::string answer =
      "HTTP " + std::to_string(status) + (reason.empty() ? "" : " ") + std::string(reason);
  // 407 is the standard answer; tinyproxy answers a CONNECT with wrong credentials 401. Either
  // comes from the proxy here: nothing reached the API yet.
  if (status == 407 || status == 401) return credentials_refused(proxy, answer);
  if (status >= 500) {
    return tunnel_failure(HttpResult::Transport::connect_failed,
                          who + " could not reach " + authority + " (" + answer + ")");
  }
  return tunnel_failure(HttpResult::Transport::proxy_refused,
                        who + " refused CONNECT to " + authority + " (" + answer + ")");
}

}  // namespace

net::awaitable<HttpResult> open_tunnel(beast::tcp_stream& stream, const ProxyRoute& proxy,
                                       const std::string& authority,
                                       std::string_view proxy_authorization,
                                       std::chrono::milliseconds timeout) {
  constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
  std::string who = "proxy " + proxy.text();
  // The request holds the proxy's credentials: its header storage is zeroed when freed.
  http::request<http::empty_body, http::basic_fields<ZeroingAllocator<char>>> req{
      http::verb::connect, authority, 11};
  req.set(http::field::host, authority);
  req.set(http::field::user_agent, "kpsd/" KPSD_VERSION);
  if (!proxy_authorization.empty()) req.set(http::field::proxy_authorization, proxy_authorization);
  stream.expires_after(timeout);
  auto [wec, written] = co_await http::async_write(stream, req, use_tuple);
  if (wec) {
    co_return tunnel_failure(wec == beast::error::timeout ? HttpResult::Transport::timed_out
                                                          : HttpResult::Transport::connect_failed,
                             who + ": sending CONNECT: " + wec.message());
  }
  beast::flat_buffer buffer;
  http::response_parser<http::empty_body> parser;
  parser.skip(true);  // a refusal's body is not read: the connection is dropped anyway
  parser.header_limit(64 * 1024);
  auto [rec, read] = co_await http::async_read_header(stream, buffer, parser, use_tuple);
  if (rec) {
    co_return tunnel_failure(rec == beast::error::timeout ? HttpResult::Transport::timed_out
                                                          : HttpResult::Transport::connect_failed,
                             who + ": no answer to CONNECT " + authority + ": " + rec.message());
  }
  unsigned status = parser.get().result_int();
  if (status / 100 != 2) co_return refused(status, parser.get().reason(), proxy, authority);
  // The server speaks first in nothing: TLS starts with kpsd's ClientHello. Bytes already here
  // would be read as the handshake's answer: a broken proxy, not one to trust.
  if (buffer.size() > 0) {
    co_return tunnel_failure(HttpResult::Transport::connect_failed,
                             who + " sent data after its CONNECT answer");
  }
  co_return HttpResult{};
}

}  // namespace kpsd::detail
