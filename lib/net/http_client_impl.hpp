#pragma once
// HttpClient's insides (not a public header): the pool, the proxy and TLS state, and the steps of
// one exchange. net/http_client.cpp sends and reads; net/http_connect.cpp opens connections.
#include "net/answer_reader.hpp"
#include "net/http_client.hpp"
#include "net/http_connection.hpp"
#include "net/proxy_tunnel.hpp"
#include "net/use_tuple.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <deque>
#include <optional>
#include <set>
#include <sys/socket.h>
#include <tuple>

namespace kpsd {

namespace net = boost::asio;
namespace ssl = net::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace detail {

// Bytes asked of the socket per read: an answer's header and body usually arrive in one.
inline constexpr std::size_t read_chunk = 16 * 1024;

// An idle connection older than this is not reused: servers close idle keep-alive connections
// (typically after 60 s or more). A request written into one that closed anyway fails before
// any answer and is sent again on a fresh connection (exchange), which costs a round trip.
inline constexpr auto max_idle_reuse = std::chrono::seconds(4);

inline HttpResult failure(HttpResult::Transport kind, std::string detail) {
  HttpResult r;
  r.transport = kind;
  r.transport_detail = std::move(detail);
  return r;
}

// RFC 9110 §9.2.2: methods whose repetition has the effect of one request.
inline bool idempotent(http::verb method) {
  return method == http::verb::get || method == http::verb::head || method == http::verb::put ||
         method == http::verb::delete_ || method == http::verb::options;
}

inline HttpResult::Transport transport_kind(const boost::system::error_code& ec) {
  if (ec == beast::error::timeout) return HttpResult::Transport::timed_out;
  return HttpResult::Transport::io_error;
}

template <class Stream>
void set_deadline(Stream& s, std::chrono::milliseconds d) {
  beast::get_lowest_layer(s).expires_after(d);
}

}  // namespace detail

struct HttpClient::Impl {
  using Connection = detail::Connection;
  using Request = detail::Request;

  Impl(net::any_io_executor ex, Endpoint ep, const std::string& ca_file,
       std::chrono::milliseconds t, std::optional<ProxyRoute> p);

  // Keeps a connection in `active` while a call uses it, so cancel_all() can reach it.
  struct ActiveGuard {
    Impl& impl;
    Connection* conn;
    ActiveGuard(Impl& i, Connection* c) : impl(i), conn(c) { impl.active.insert(conn); }
    ~ActiveGuard() { impl.active.erase(conn); }
  };

  // A TLS verification failure is logged once per distinct cause, not once per call.
  void report_tls(const std::string& message);

  // Running out of descriptors is said once per episode too.
  void report_no_descriptors(const std::string& message);

  // A fresh connection to the endpoint (through the proxy, TLS verified), or why not.
  net::awaitable<std::pair<std::unique_ptr<Connection>, HttpResult>> connect();

  // TLS over the connection (direct, or the proxy's tunnel), verified against the endpoint's
  // name or address.
  net::awaitable<std::pair<std::unique_ptr<Connection>, HttpResult>> handshake(
      std::unique_ptr<Connection> conn);

  // How one request on one connection went, beyond its result.
  struct SendOutcome {
    HttpResult result;
    bool keep = false;   // the connection may go back to the pool (keep_connection)
    bool stale = false;  // it failed before one byte of answer, as a connection the server
                         // closed while idle does (EOF, reset, broken pipe)
    // The write failed before one byte of the request left kpsd: none of it can have reached
    // the peer, so it may be sent again, whatever its method.
    bool nothing_written = false;
  };

  static bool closed_under_us(const boost::system::error_code& ec) {
    return ec == net::error::eof || ec == net::error::connection_reset ||
           ec == net::error::broken_pipe || ec == ssl::error::stream_truncated ||
           ec == http::error::end_of_stream;
  }

  template <class Stream>
  net::awaitable<SendOutcome> send_on(Stream& stream, Connection& conn, const Request& req);

  // Reads the final answer to the request just written (interim 1xx answers read past), with
  // one deadline for the whole answer.
  template <class Stream>
  net::awaitable<HttpResult> read_answer(Stream& stream, Connection& conn, SendOutcome& out);

  // The most recently used idle connection that is still open, or null (http_client.cpp).
  std::unique_ptr<Connection> take_idle();

  // One request on `conn` (a reused one, or fresh); the connection goes back to the pool only
  // when keep_connection allows.
  net::awaitable<SendOutcome> send(std::unique_ptr<Connection> conn, const Request& req);

  net::awaitable<HttpResult> exchange(const HttpRequest& request);
  // The request as sent: Host, User-Agent, Accept-Encoding: identity, the proxy's form.
  Request make_request(const HttpRequest& request, bool forward) const;

  net::any_io_executor executor;
  Endpoint endpoint;
  std::chrono::milliseconds timeout;
  tcp::resolver resolver;
  std::string host_header;
  std::shared_ptr<ssl::context> tls_context;     // null for http://
  std::deque<std::unique_ptr<Connection>> idle;  // oldest first
  std::set<Connection*> active;
  bool cancelled = false;
  std::string last_tls_error;
  bool no_descriptors_reported = false;
  std::optional<ProxyRoute> proxy;  // null: direct
  Secret proxy_auth;                // Proxy-Authorization; empty without credentials
};

}  // namespace kpsd
