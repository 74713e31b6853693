#include "metrics_server.hpp"

#include "accept_backoff.hpp"
#include "clock.hpp"
#include "db_worker.hpp"
#include "fd_limit.hpp"
#include "logging.hpp"
#include "metrics.hpp"
#include "scheduler.hpp"
#include "status_api.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <spdlog/spdlog.h>

#include <list>

namespace kpsd {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
constexpr std::chrono::seconds deadline{10};  // a scraper that stalls longer is dropped
}  // namespace

struct MetricsServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(net::any_io_executor ex, DbWorker& d, Scheduler& s, const Metrics& m)
      : executor(ex),
        acceptor(ex),
        accept_retry(ex),
        db(d),
        scheduler(s),
        metrics(m),
        status(d, s, m) {}

  net::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    AcceptBackoff backoff("metrics listener");
    while (!stopped) {
      auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
      if (ec) {
        if (stopped || ec == net::error::operation_aborted) break;
        accept_retry.expires_after(backoff.failed(ec.message()));
        co_await accept_retry.async_wait(use_tuple);
        continue;
      }
      backoff.succeeded();
      if (clients.size() >= max_metrics_clients) {
        // Scrapers are few; more at once is a fault: close, keeping descriptors for calls.
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      auto it = clients.emplace(clients.end(), std::move(socket));
      net::co_spawn(executor, serve(it),
                    [self](std::exception_ptr e) { log_exception("metrics client", e); });
    }
  }

  static void not_found(http::response<http::string_body>& res) {
    res.result(http::status::not_found);
    res.set(http::field::content_type, "text/plain");
    res.body() = "kpsd serves /metrics, the status page at / and /api/\n";
  }

  net::awaitable<void> serve(std::list<beast::tcp_stream>::iterator it) {
    auto self = shared_from_this();
    beast::tcp_stream& stream = *it;
    beast::flat_buffer buffer;
    while (!stopped) {
      http::request<http::empty_body> req;
      stream.expires_after(deadline);
      auto [ec, n] = co_await http::async_read(stream, buffer, req, use_tuple);
      if (ec) break;
      http::response<http::string_body> res{http::status::ok, req.version()};
      res.keep_alive(req.keep_alive());
      if (req.method() == http::verb::get && req.target() == "/metrics") {
        Metrics::Gauges g;
        try {
          auto read = co_await db.call([](JobStore& s) {
            return std::pair{s.count_by_state(), s.oldest_queued_due()};
          });
          g.jobs = std::move(read.first);
          if (read.second) {
            g.oldest_queued_age_s =
                static_cast<double>(std::max<std::int64_t>(0, unix_ms() - *read.second)) / 1000;
          }
        } catch (const std::exception& e) {
          g.jobs_known = false;  // the rest still tells the story (kpsd_store_writable ...)
          spdlog::debug("metrics: job counts unavailable: {}", e.what());
        }
        auto st = scheduler.stats();
        g.store_writable = st.store_writable;
        g.blocked = !st.blocked_reason.empty();
        g.blocked_cause = std::string(st.blocked_cause);
        g.send_rate_per_second = st.send_rate_per_second;
        g.outcomes_waiting = st.outcomes_waiting;
        g.in_flight = st.in_flight;
        g.rate_per_second = st.rate_per_second;
        g.configured_rate_per_second = st.configured_rate_per_second;
        g.throttled_share = st.throttled_share;
        g.holding_for_quota = st.holding_for_quota;
        g.paused = st.paused;
        res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        res.body() = metrics.render(g);
      } else if (req.method() == http::verb::get) {
        std::optional<WebAnswer> page;
        std::string target(req.target());  // named: no temporary inside co_await (GCC 12)
        try {
          page = co_await status.get(target);
        } catch (const std::exception& e) {
          page = WebAnswer{500, "application/json", "{\"error\":\"internal error\"}\n", false};
          spdlog::warn("status page: {}", e.what());
        }
        if (page) {
          res.result(page->status);
          res.set(http::field::content_type, page->content_type);
          res.set(http::field::cache_control, page->is_page ? "max-age=60" : "no-store");
          // The page loads only its own files and talks only to this server; nothing it shows
          // can run as script (every value is set as text by app.js).
          res.set("Content-Security-Policy",
                  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                  "connect-src 'self'; base-uri 'none'; form-action 'none'; "
                  "frame-ancestors 'none'");
          res.set("X-Content-Type-Options", "nosniff");
          res.set("Referrer-Policy", "no-referrer");
          res.body() = std::move(page->body);
        } else {
          not_found(res);
        }
      } else {
        not_found(res);
      }
      res.prepare_payload();
      stream.expires_after(deadline);
      auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
      if (wec || !res.keep_alive()) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    clients.erase(it);
  }

  net::any_io_executor executor;
  tcp::acceptor acceptor;
  net::steady_timer accept_retry;
  DbWorker& db;
  Scheduler& scheduler;
  const Metrics& metrics;
  StatusApi status;
  std::list<beast::tcp_stream> clients;
  bool stopped = false;
};

MetricsServer::MetricsServer(net::any_io_executor executor, const std::string& host,
                             std::uint16_t port, DbWorker& db, Scheduler& scheduler,
                             const Metrics& metrics)
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
  for (auto& c : impl_->clients) c.socket().close(ignored);
}

}  // namespace kpsd
