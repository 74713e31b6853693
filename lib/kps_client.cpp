#include "kps_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <spdlog/spdlog.h>

#include <sys/socket.h>

#include <cerrno>
#include <set>
#include <vector>

namespace kpsd {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
constexpr std::size_t max_response_body = 1024 * 1024;  // KPS answers are a few hundred bytes

// One keep-alive connection. TLS will wrap `stream` in an ssl_stream here; the exchange code
// below only needs async_write/async_read on it.
struct Connection {
  explicit Connection(net::any_io_executor ex) : stream(ex) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  std::chrono::steady_clock::time_point idle_since;
};

HttpResult::Transport transport_kind(const boost::system::error_code& ec) {
  if (ec == beast::error::timeout) return HttpResult::Transport::timed_out;
  return HttpResult::Transport::io_error;
}

HttpResult failure(HttpResult::Transport kind, std::string detail) {
  HttpResult r;
  r.transport = kind;
  r.transport_detail = std::move(detail);
  return r;
}

// An idle connection older than this is not reused: servers close idle keep-alive connections
// (typically after 60 s or more), and a request written into one that is closing fails. kpsd
// does not resend a failed request on its own (that would be a call without its attempt row),
// so it avoids connections likely to be stale instead.
constexpr auto max_idle_reuse = std::chrono::seconds(4);

// True when the server has closed (or reset) an idle connection: a non-blocking peek sees EOF
// or an error instead of "nothing to read yet".
bool closed_by_peer(Connection& c) {
  char byte;
  ssize_t n = ::recv(c.stream.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;
  if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
  return true;  // unsolicited bytes on an idle connection: not a state to reuse
}

}  // namespace

std::string percent_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

struct KpsClient::Impl {
  Impl(net::any_io_executor ex, const KpsConfig& cfg, TokenSource& tok)
      : executor(ex), config(cfg), tokens(tok), resolver(ex) {
    host_header = config.endpoint.host;
    bool default_port = (config.endpoint.scheme == "http" && config.endpoint.port == 80) ||
                        (config.endpoint.scheme == "https" && config.endpoint.port == 443);
    if (!default_port) host_header += ":" + std::to_string(config.endpoint.port);
    base_path = "/v3/" + config.project_id;
  }

  net::awaitable<std::pair<std::unique_ptr<Connection>, HttpResult>> connect() {
    auto conn = std::make_unique<Connection>(executor);
    ActiveGuard guard(*this, conn.get());
    const std::string port = std::to_string(config.endpoint.port);
    auto [rec, endpoints] = co_await resolver.async_resolve(config.endpoint.host, port, use_tuple);
    if (rec) {
      co_return std::pair{nullptr, failure(HttpResult::Transport::connect_failed,
                                           "cannot resolve " + config.endpoint.host + ": " +
                                               rec.message())};
    }
    conn->stream.expires_after(config.request_timeout);
    auto [cec, ep] = co_await conn->stream.async_connect(endpoints, use_tuple);
    if (cec) {
      auto kind = cec == beast::error::timeout ? HttpResult::Transport::timed_out
                                               : HttpResult::Transport::connect_failed;
      co_return std::pair{nullptr, failure(kind, "connect to " + config.endpoint.host + ":" +
                                                     std::to_string(config.endpoint.port) +
                                                     ": " + cec.message())};
    }
    conn->stream.socket().set_option(tcp::no_delay(true));
    co_return std::pair{std::move(conn), HttpResult{}};
  }

  // Keeps a connection in `active` while a call uses it, so cancel_all() can reach it.
  struct ActiveGuard {
    Impl& impl;
    Connection* conn;
    ActiveGuard(Impl& i, Connection* c) : impl(i), conn(c) { impl.active.insert(conn); }
    ~ActiveGuard() { impl.active.erase(conn); }
  };

  net::awaitable<HttpResult> exchange(http::verb method, std::string target, std::string body) {
    auto started = std::chrono::steady_clock::now();
    if (cancelled) co_return failure(HttpResult::Transport::io_error, "cancelled: kpsd is stopping");
    std::string token_error;
    auto token = tokens.current(token_error);
    if (!token) co_return failure(HttpResult::Transport::connect_failed, token_error);

    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, host_header);
    req.set(http::field::user_agent, "kpsd/0.1");
    req.set(http::field::accept, "application/json");
    req.set("X-Auth-Token", token->reveal());
    if (method == http::verb::post) {
      req.set(http::field::content_type, "application/json");
      req.body() = std::move(body);
    }
    req.keep_alive(true);
    req.prepare_payload();

    {
      std::unique_ptr<Connection> conn;
      auto now = std::chrono::steady_clock::now();
      std::erase_if(idle, [&](const std::unique_ptr<Connection>& c) {
        return now - c->idle_since > max_idle_reuse || closed_by_peer(*c);
      });
      if (!idle.empty()) {
        conn = std::move(idle.back());
        idle.pop_back();
      } else {
        auto [fresh, err] = co_await connect();
        if (!fresh) {
          err.latency = std::chrono::duration_cast<std::chrono::milliseconds>(
              std::chrono::steady_clock::now() - started);
          co_return err;
        }
        conn = std::move(fresh);
      }

      ActiveGuard guard(*this, conn.get());
      conn->stream.expires_after(config.request_timeout);
      auto [wec, written] = co_await http::async_write(conn->stream, req, use_tuple);
      if (wec) co_return failure(transport_kind(wec), "write: " + wec.message());

      http::response_parser<http::string_body> parser;
      parser.body_limit(max_response_body);
      conn->stream.expires_after(config.request_timeout);
      auto [rec, read] = co_await http::async_read(conn->stream, conn->buffer, parser, use_tuple);
      if (rec) {
        HttpResult r = failure(transport_kind(rec), "read: " + rec.message());
        r.latency = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - started);
        co_return r;
      }

      auto& res = parser.get();
      HttpResult r;
      r.status = res.result_int();
      r.body = std::move(res.body());
      if (auto it = res.find("X-Request-Id"); it != res.end()) r.request_id = std::string(it->value());
      if (auto it = res.find(http::field::retry_after); it != res.end()) {
        r.retry_after = std::string(it->value());
      }
      r.latency = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - started);
      if (res.keep_alive() && !cancelled) {
        conn->stream.expires_never();
        conn->idle_since = std::chrono::steady_clock::now();
        idle.push_back(std::move(conn));
      }
      co_return r;
    }
  }

  net::any_io_executor executor;
  KpsConfig config;
  TokenSource& tokens;
  tcp::resolver resolver;
  std::string host_header;
  std::string base_path;
  std::vector<std::unique_ptr<Connection>> idle;
  std::set<Connection*> active;
  bool cancelled = false;
};

KpsClient::KpsClient(net::any_io_executor executor, const KpsConfig& config, TokenSource& tokens)
    : impl_(std::make_unique<Impl>(executor, config, tokens)) {}

KpsClient::~KpsClient() = default;

net::awaitable<HttpResult> KpsClient::disassociate(std::string body) {
  return impl_->exchange(http::verb::post, impl_->base_path + "/keypairs/disassociate",
                         std::move(body));
}

net::awaitable<HttpResult> KpsClient::get_task(std::string task_id) {
  return impl_->exchange(http::verb::get, impl_->base_path + "/tasks/" + percent_encode(task_id),
                         {});
}

net::awaitable<HttpResult> KpsClient::get_failed_tasks(int limit, std::int64_t offset) {
  return impl_->exchange(http::verb::get,
                         impl_->base_path + "/failed-tasks?limit=" + std::to_string(limit) +
                             "&offset=" + std::to_string(offset),
                         {});
}

void KpsClient::close_idle() { impl_->idle.clear(); }

void KpsClient::cancel_all() {
  impl_->cancelled = true;
  impl_->idle.clear();
  impl_->resolver.cancel();
  for (Connection* c : impl_->active) {
    boost::system::error_code ignored;
    c->stream.socket().cancel(ignored);
    c->stream.socket().close(ignored);
  }
}

}  // namespace kpsd
