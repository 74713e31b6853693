#include "web/metrics_server.hpp"

#include "control/overview.hpp"
#include "core/clock.hpp"
#include "core/logging.hpp"
#include "core/url.hpp"
#include "model/metrics.hpp"
#include "net/accept_loop.hpp"
#include "net/fd_limit.hpp"
#include "net/http_slots.hpp"
#include "net/use_tuple.hpp"
#include "scheduling/scheduler.hpp"
#include "store/db_worker.hpp"
#include "web/status_api.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <list>
#include <tuple>
#include <vector>

namespace kpsd {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {
constexpr std::size_t first_read = 4096;  // what a request's first read may take at most

struct ScrapeClient {
  explicit ScrapeClient(tcp::socket s) : stream(std::move(s)) {}
  beast::tcp_stream stream;
  SlotState slot{SlotState::Phase::waiting, std::chrono::steady_clock::now()};
  bool closed() const { return slot.phase == SlotState::Phase::closed; }
  void enter(SlotState::Phase phase) {
    if (!closed()) slot = SlotState{phase, std::chrono::steady_clock::now()};
  }
};
}  // namespace

struct MetricsServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(net::any_io_executor ex, DbWorker& d, Scheduler& s, Metrics& m)
      : executor(ex),
        acceptor(ex),
        accept_retry(ex),
        db(d),
        scheduler(s),
        metrics(m),
        status(d, s, m) {}

  net::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    // Named, not temporaries inside co_await: GCC 12 destroys those twice (see DbWorker::call).
    auto loop = accept_each(acceptor, accept_retry, stopped, "metrics listener",
                            [this, self](tcp::socket socket) { admit(std::move(socket), self); });
    co_await std::move(loop);
  }

  // Scrapers are few, and the slots (max_metrics_clients) keep descriptors for calls. When
  // every one is taken, the connection that has waited longest for a request (an idle or slow
  // client) makes room; when each is being answered, the newcomer is closed.
  void admit(tcp::socket socket, const std::shared_ptr<Impl>& self) {
    if (slots_in_use() >= max_metrics_clients && !make_room()) {
      boost::system::error_code ignored;
      socket.close(ignored);
      return;
    }
    auto it = clients.emplace(clients.end(), std::move(socket));
    net::co_spawn(executor, serve(it),
                  [self](std::exception_ptr e) { log_exception("metrics client", e); });
  }

  std::size_t slots_in_use() const {
    return static_cast<std::size_t>(std::count_if(
        clients.begin(), clients.end(), [](const ScrapeClient& c) { return !c.closed(); }));
  }

  bool make_room() {
    std::vector<ScrapeClient*> open;
    std::vector<SlotState> slots;
    for (ScrapeClient& c : clients) {
      if (c.closed()) continue;
      open.push_back(&c);
      slots.push_back(c.slot);
    }
    ++metrics.http_clients_refused;
    if (house.closed_one()) {
      spdlog::warn(
          "metrics port: all {} connections in use; each new one closes the connection that has "
          "waited longest for a request (idle or slow clients; kpsd_http_clients_refused_total "
          "counts them)",
          max_metrics_clients);
    }
    auto victim = slot_to_evict(slots);
    if (!victim) return false;
    ScrapeClient& c = *open[*victim];
    c.slot.phase = SlotState::Phase::closed;
    boost::system::error_code ignored;
    c.stream.socket().close(ignored);  // its serve() wakes and ends; the descriptor is free now
    return true;
  }

  using Request = http::request<http::empty_body>;
  using Response = http::response<http::string_body>;

  net::awaitable<void> serve(std::list<ScrapeClient>::iterator it) {
    auto self = shared_from_this();
    ScrapeClient& client = *it;
    beast::flat_buffer buffer;
    while (!stopped) {
      Request req;
      bool got = co_await read_request(client, buffer, req);  // named: GCC 12 (see above)
      if (!got) break;
      client.enter(SlotState::Phase::answering);
      Response res = co_await handle_request(req);
      client.stream.expires_after(http_write_deadline);
      auto [wec, wn] = co_await http::async_write(client.stream, res, use_tuple);
      if (wec || !res.keep_alive() || client.closed()) break;
    }
    boost::system::error_code ignored;
    client.stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    clients.erase(it);
    if (auto closed = house.in_use(slots_in_use())) {
      spdlog::info("metrics port: connections free again ({} closed to make room)", *closed);
    }
  }

  // The next request: its first byte within http_idle_timeout, then its whole header within
  // http_header_deadline. False when the client left or stalled, or was closed to make room.
  net::awaitable<bool> read_request(ScrapeClient& client, beast::flat_buffer& buffer,
                                    Request& req) {
    client.enter(SlotState::Phase::waiting);
    if (buffer.size() == 0) {
      client.stream.expires_after(http_idle_timeout);
      auto space = buffer.prepare(first_read);
      auto [ec, n] = co_await client.stream.async_read_some(space, use_tuple);
      if (ec || client.closed()) co_return false;
      buffer.commit(n);
    }
    client.stream.expires_after(http_header_deadline);
    auto [ec, n] = co_await http::async_read(client.stream, buffer, req, use_tuple);
    co_return !ec && !client.closed();
  }

  // The port's routes: GET /metrics (Prometheus text), every other GET to the status page
  // (StatusApi::get: its files and /api/...), an unknown path 404. HEAD answers as GET without
  // the body (RFC 9110 9.3.2); other methods get 405 with Allow.
  net::awaitable<Response> handle_request(const Request& req) {
    Response res{http::status::ok, req.version()};
    res.keep_alive(req.keep_alive());
    if (!host_header_allowed(req[http::field::host])) {
      // DNS rebinding: a page under another name must not read job data (issue 31).
      res.result(http::status::misdirected_request);
      res.set(http::field::content_type, "text/plain");
      res.body() = "kpsd answers requests for its address (or localhost), not for a name\n";
      res.prepare_payload();
      co_return res;
    }
    bool head = req.method() == http::verb::head;
    if (req.method() != http::verb::get && !head) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "GET, HEAD");
      res.set(http::field::content_type, "text/plain");
      res.body() = "kpsd's port is read-only: GET and HEAD\n";
      res.prepare_payload();
      co_return res;
    }
    bool get = true;
    bool metrics_route = get && req.target() == "/metrics";
    std::optional<WebAnswer> answer;
    if (get && !metrics_route) {
      std::string target(req.target());  // named: no temporary inside co_await (GCC 12)
      answer = co_await status_page(std::move(target));
    }
    if (metrics_route) {
      res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      res.body() = co_await metrics_page();
    } else if (answer) {
      status_page_answer(res, std::move(*answer));
    } else {
      res.result(http::status::not_found);
      res.set(http::field::content_type, "text/plain");
      res.body() = "kpsd serves /metrics, the status page at / and /api/\n";
    }
    res.prepare_payload();
    if (head) std::string().swap(res.body());  // Content-Length stays: the size GET would send
    co_return res;
  }

  net::awaitable<std::optional<WebAnswer>> status_page(std::string target) {
    try {
      co_return co_await status.get(std::move(target));
    } catch (const std::exception& e) {
      spdlog::warn("status page: {}", e.what());
    }
    co_return WebAnswer{500, "application/json", "{\"error\":\"internal error\"}\n", false};
  }

  // The store's counts (one DB call) and the scheduler's state, as gauges (overview.hpp).
  net::awaitable<std::string> metrics_page() {
    Overview o;
    try {
      auto read = co_await db.call([](JobQueries& s) {
        return std::tuple{s.count_by_state(), s.oldest_queued_due(), s.paused_batches()};
      });
      o.counts = std::move(std::get<0>(read));
      o.oldest_queued_due = std::get<1>(read);
      o.paused_batches = std::move(std::get<2>(read));
    } catch (const std::exception& e) {
      o.read_problem =
          *e.what() ? e.what()
                    : "read failed";  // the rest still tells the story (kpsd_store_writable ...)
      spdlog::debug("metrics: job counts unavailable: {}", e.what());
    }
    o.scheduler = scheduler.stats();
    co_return metrics.render(metrics_gauges(o, unix_ms()));
  }

  static void status_page_answer(Response& res, WebAnswer page) {
    res.result(page.status);
    res.set(http::field::content_type, page.content_type);
    res.set(http::field::cache_control, page.is_page ? "max-age=60" : "no-store");
    // The page loads only its own files and talks only to this server; nothing it shows can
    // run as script (every value is set as text by app.js).
    res.set("Content-Security-Policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    res.set("X-Content-Type-Options", "nosniff");
    res.set("Referrer-Policy", "no-referrer");
    res.body() = std::move(page.body);
  }

  net::any_io_executor executor;
  tcp::acceptor acceptor;
  net::steady_timer accept_retry;
  DbWorker& db;
  Scheduler& scheduler;
  Metrics& metrics;
  StatusApi status;
  std::list<ScrapeClient> clients;
  FullHouse house{max_metrics_clients};
  bool stopped = false;
};

std::string served_at(const std::string& host, std::uint16_t port) {
  std::string base = "http://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) +
                     ":" + std::to_string(port) + "/";
  return "metrics on " + base + "metrics, status page on " + base;
}

MetricsServer::MetricsServer(net::any_io_executor executor, const std::string& host,
                             std::uint16_t port, DbWorker& db, Scheduler& scheduler,
                             Metrics& metrics)
    : impl_(std::make_shared<Impl>(executor, db, scheduler, metrics)) {
  boost::system::error_code ec;
  auto address = net::ip::make_address(host, ec);
  if (ec) throw std::runtime_error("metrics listen address `" + host + "` is not an IP address");
  tcp::endpoint ep(address, port);
  impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    throw std::runtime_error("cannot listen for metrics on " + host + ":" + std::to_string(port) +
                             ": " + ec.message());
  }
}

MetricsServer::~MetricsServer() = default;

std::uint16_t MetricsServer::port() const { return impl_->acceptor.local_endpoint().port(); }

net::awaitable<void> MetricsServer::run() { return impl_->accept_loop(); }

void MetricsServer::stop() {
  impl_->stopped = true;
  boost::system::error_code ignored;
  impl_->acceptor.close(ignored);
  impl_->accept_retry.cancel();
  for (auto& c : impl_->clients) c.stream.socket().close(ignored);
}

}  // namespace kpsd
