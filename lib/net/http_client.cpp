#include "net/http_client.hpp"

#include "net/answer_reader.hpp"
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

namespace {

// Bytes asked of the socket per read: an answer's header and body usually arrive in one.
constexpr std::size_t read_chunk = 16 * 1024;

// An idle connection older than this is not reused: servers close idle keep-alive connections
// (typically after 60 s or more). A request written into one that closed anyway fails before
// any answer and is sent again on a fresh connection (exchange), which costs a round trip.
constexpr auto max_idle_reuse = std::chrono::seconds(4);

using detail::closed_by_peer;
using detail::Connection;
using detail::make_tls_context;
using detail::Request;
using detail::tls_unread;

HttpResult failure(HttpResult::Transport kind, std::string detail) {
  HttpResult r;
  r.transport = kind;
  r.transport_detail = std::move(detail);
  return r;
}

// RFC 9110 §9.2.2: methods whose repetition has the effect of one request.
bool idempotent(http::verb method) {
  return method == http::verb::get || method == http::verb::head || method == http::verb::put ||
         method == http::verb::delete_ || method == http::verb::options;
}

HttpResult::Transport transport_kind(const boost::system::error_code& ec) {
  if (ec == beast::error::timeout) return HttpResult::Transport::timed_out;
  return HttpResult::Transport::io_error;
}

template <class Stream>
void set_deadline(Stream& s, std::chrono::milliseconds d) {
  beast::get_lowest_layer(s).expires_after(d);
}

}  // namespace

struct HttpClient::Impl {
  Impl(net::any_io_executor ex, Endpoint ep, const std::string& ca_file,
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
      std::string error;
      tls_context = make_tls_context(ca_file, error);
      if (!tls_context) throw std::runtime_error(error);
    }
  }

  // Keeps a connection in `active` while a call uses it, so cancel_all() can reach it.
  struct ActiveGuard {
    Impl& impl;
    Connection* conn;
    ActiveGuard(Impl& i, Connection* c) : impl(i), conn(c) { impl.active.insert(conn); }
    ~ActiveGuard() { impl.active.erase(conn); }
  };

  // A TLS verification failure is logged once per distinct cause, not once per call.
  void report_tls(const std::string& message) {
    if (message == last_tls_error) return;
    last_tls_error = message;
    // The scheduler says it once for everyone ("calls paused: ..."); this is for tracing.
    spdlog::debug("{}", message);
  }

  // Running out of descriptors is said once per episode too.
  void report_no_descriptors(const std::string& message) {
    if (no_descriptors_reported) return;
    no_descriptors_reported = true;
    spdlog::error(
        "{}; calls wait without using up attempts (raise LimitNOFILE= or lower "
        "queue.concurrency)",
        message);
  }

  net::awaitable<std::pair<std::unique_ptr<Connection>, HttpResult>> connect() {
    auto conn = std::make_unique<Connection>();
    const std::string port = std::to_string(endpoint.port);
    // Through a proxy, the TCP connection goes to it (and a failure names it).
    const std::string& dial_host = proxy ? proxy->host : endpoint.host;
    const std::string dial_port = proxy ? std::to_string(proxy->port) : port;
    const std::string where = proxy ? "proxy " + proxy->text() : endpoint.host + ":" + port;
    auto [rec, endpoints] = co_await resolver.async_resolve(dial_host, dial_port, use_tuple);
    if (rec) {
      co_return std::pair{
          nullptr, failure(HttpResult::Transport::connect_failed,
                           std::string("cannot resolve ") + (proxy ? "proxy " : "") + dial_host +
                               ": " + rec.message())};
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
        co_return std::pair{nullptr, failure(HttpResult::Transport::no_descriptors, message)};
      }
      if (cec) continue;
      std::tie(cec) = co_await conn->plain->async_connect(entry.endpoint(), use_tuple);
      if (!cec || cec == beast::error::timeout || cancelled) break;
    }
    if (cec) {
      auto kind = cec == beast::error::timeout ? HttpResult::Transport::timed_out
                                               : HttpResult::Transport::connect_failed;
      co_return std::pair{nullptr, failure(kind, (proxy ? where + " unreachable: connect: "
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
  net::awaitable<std::pair<std::unique_ptr<Connection>, HttpResult>> handshake(
      std::unique_ptr<Connection> conn) {
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
    set_deadline(*conn->tls, timeout);
    auto [hec] = co_await conn->tls->async_handshake(ssl::stream_base::client, use_tuple);
    if (hec) {
      std::string why = hec.message();
      long verify = SSL_get_verify_result(ssl_handle);
      if (verify != X509_V_OK) why = X509_verify_cert_error_string(verify);
      std::string message = "TLS handshake with " + endpoint.host + ":" + port +
                            (proxy ? " through proxy " + proxy->text() : "") + " failed: " + why;
      if (hec == beast::error::timeout) {
        co_return std::pair{nullptr, failure(HttpResult::Transport::timed_out, message)};
      }
      report_tls(message);
      co_return std::pair{nullptr, failure(HttpResult::Transport::tls_failed, message)};
    }
    last_tls_error.clear();
    co_return std::pair{std::move(conn), HttpResult{}};
  }

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
  net::awaitable<SendOutcome> send_on(Stream& stream, Connection& conn, const Request& req) {
    SendOutcome out;
    set_deadline(stream, timeout);
    auto [wec, written] = co_await http::async_write(stream, req, use_tuple);
    if (wec) {
      // Not sent in full: the server cannot have acted on it.
      out.stale = closed_under_us(wec);
      out.nothing_written = written == 0;
      out.result = failure(transport_kind(wec), "write: " + wec.message());
      co_return out;
    }
    out.result = co_await read_answer(stream, conn, out);
    out.result.request_sent = true;
    co_return out;
  }

  // Reads the final answer to the request just written (interim 1xx answers read past), with
  // one deadline for the whole answer.
  template <class Stream>
  net::awaitable<HttpResult> read_answer(Stream& stream, Connection& conn, SendOutcome& out) {
    AnswerReader reader;
    set_deadline(stream, timeout);
    bool closed = false;  // the peer closed: what is buffered is all there will be
    for (;;) {
      AnswerReader::Step step = AnswerReader::Step::need_more;
      if (conn.buffer.size() > 0) {
        std::size_t used = 0;
        auto data = conn.buffer.data();
        step = reader.put({static_cast<const char*>(data.data()), data.size()}, used);
        conn.buffer.consume(used);
      }
      if (step == AnswerReader::Step::need_more && closed) {
        step = reader.put_eof();
        out.stale = step == AnswerReader::Step::failed && !reader.got_bytes();
      } else if (step == AnswerReader::Step::need_more) {
        auto [rec, n] = co_await stream.async_read_some(conn.buffer.prepare(read_chunk), use_tuple);
        conn.buffer.commit(n);
        if (rec && !closed_under_us(rec)) {
          co_return failure(transport_kind(rec), "read: " + rec.message());
        }
        closed = static_cast<bool>(rec);
        continue;
      }
      if (step == AnswerReader::Step::failed) {
        co_return failure(HttpResult::Transport::io_error, "read: " + reader.error());
      }
      if (step == AnswerReader::Step::done) break;
    }
    HttpResult r;
    reader.take(r);
    out.keep = keep_connection(
        {true, reader.keep_alive(), conn.buffer.size() + tls_unread(conn), cancelled});
    co_return r;
  }

  // The most recently used idle connection that is still open, or null. Only the one about to
  // be reused is peeked at (one syscall per call, whatever the pool's size), however briefly
  // it was idle: the peek is what sees bytes a server sent unasked (which must never be read
  // as the next answer), and it costs about a microsecond. Connections idle too long are
  // dropped from the old end without a syscall.
  std::unique_ptr<Connection> take_idle() {
    auto now = std::chrono::steady_clock::now();
    while (!idle.empty() && now - idle.front()->idle_since > max_idle_reuse) idle.pop_front();
    while (!idle.empty()) {
      std::unique_ptr<Connection> c = std::move(idle.back());
      idle.pop_back();
      if (!closed_by_peer(*c)) return c;
    }
    return nullptr;
  }

  // One request on `conn` (a reused one, or fresh); the connection goes back to the pool only
  // when keep_connection allows.
  net::awaitable<SendOutcome> send(std::unique_ptr<Connection> conn, const Request& req) {
    ActiveGuard guard(*this, conn.get());
    // Two statements, not `?:` with a co_await in each branch: GCC 12 mishandles temporaries
    // of co_await inside conditional expressions.
    SendOutcome out;
    if (conn->tls) {
      out = co_await send_on(*conn->tls, *conn, req);
    } else {
      out = co_await send_on(*conn->plain, *conn, req);
    }
    if (out.keep && !cancelled) {
      conn->lowest().expires_never();
      conn->idle_since = std::chrono::steady_clock::now();
      idle.push_back(std::move(conn));
    }
    co_return out;
  }

  net::awaitable<HttpResult> exchange(const HttpRequest& request) {
    auto started = std::chrono::steady_clock::now();
    auto finish = [&](HttpResult r) {
      r.latency = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - started);
      return r;
    };
    if (cancelled)
      co_return failure(HttpResult::Transport::io_error, "cancelled: kpsd is stopping");

    // Plain HTTP through a proxy: the absolute form, and the proxy's credentials on each
    // request (RFC 9112 §3.2.2); HTTPS goes through the tunnel as if direct.
    bool forward = proxy && !tls_context;
    Request req{http::string_to_verb(request.method),
                forward ? "http://" + host_header + request.target : request.target, 11};
    req.set(http::field::host, host_header);
    req.set(http::field::user_agent, "kpsd/" KPSD_VERSION);
    // kpsd reads no content coding: a gzipped answer would be unreadable (RFC 9110 §12.5.3).
    req.set(http::field::accept_encoding, "identity");
    if (forward && !proxy_auth.empty())
      req.set(http::field::proxy_authorization, proxy_auth.reveal());
    for (const auto& [name, value] : request.headers) req.set(name, value);
    req.body() = request.body;
    req.keep_alive(true);
    req.prepare_payload();

    std::unique_ptr<Connection> conn = take_idle();
    bool reused = conn != nullptr;
    SendOutcome out;
    bool resent = false;
    for (int tries = 0; tries < 2; ++tries) {
      if (!conn) {
        auto [fresh, err] = co_await connect();
        if (!fresh) {
          out.result = std::move(err);
          break;
        }
        conn = std::move(fresh);
      }
      out = co_await send(std::move(conn), req);
      if (!(out.stale && reused && tries == 0 && !cancelled)) break;
      // A keep-alive connection the server closed while it sat idle fails before one byte of
      // answer, and so does one the server closed right after it read (and maybe acted on)
      // the request: kpsd cannot tell them apart. RFC 9112 §9.3.1: only a request known not
      // to have been applied, or an idempotent one, is sent again on its own; a POST that
      // left kpsd is an unknown outcome for the caller to record and look up (as Go's
      // net/http, which resends a POST only when none of it was written).
      if (!out.nothing_written && !idempotent(req.method())) {
        if (out.result.request_sent)
          out.result.transport_detail =
              "the server closed the reused connection after the request, before any answer";
        break;
      }
      spdlog::debug(
          "{}: the reused connection was closed under the request ({}); sending it "
          "again on a fresh connection",
          host_header, out.result.transport_detail);
      resent = true;
      reused = false;
    }
    out.result.resent_on_fresh_connection = resent;
    // A 407 comes from the proxy, not the API: nothing was forwarded.
    if (forward && out.result.transport == HttpResult::Transport::ok && out.result.status == 407)
      out.result = detail::credentials_refused(*proxy, "HTTP 407");
    // The request may hold a token or a job's key: do not leave it in freed memory.
    OPENSSL_cleanse(req.body().data(), req.body().size());
    co_return finish(std::move(out.result));
  }

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

HttpClient::HttpClient(net::any_io_executor executor, Endpoint endpoint, std::string ca_file,
                       std::chrono::milliseconds timeout, std::optional<ProxyRoute> proxy)
    : impl_(std::make_unique<Impl>(executor, std::move(endpoint), ca_file, timeout,
                                   std::move(proxy))) {}

HttpClient::~HttpClient() = default;

net::awaitable<HttpResult> HttpClient::exchange(const HttpRequest& request) {
  return impl_->exchange(request);
}

const std::string& HttpClient::host_header() const { return impl_->host_header; }
const Endpoint& HttpClient::endpoint() const { return impl_->endpoint; }

std::string HttpClient::reload_ca(const std::string& ca_file) {
  if (!impl_->tls_context) return {};
  std::string error;
  auto ctx = make_tls_context(ca_file, error);
  if (!ctx) return error;
  impl_->tls_context = std::move(ctx);
  impl_->idle.clear();  // new connections verify against the new store
  impl_->last_tls_error.clear();
  return {};
}

void HttpClient::close_idle() { impl_->idle.clear(); }

void HttpClient::cancel_all() {
  impl_->cancelled = true;
  impl_->idle.clear();
  impl_->resolver.cancel();
  for (Connection* c : impl_->active) {
    boost::system::error_code ignored;
    c->lowest().socket().cancel(ignored);
    c->lowest().socket().close(ignored);
  }
}

}  // namespace kpsd
