#include "control/control_server.hpp"

#include "control/control_handlers.hpp"
#include "core/logging.hpp"
#include "model/metrics.hpp"
#include "net/accept_loop.hpp"
#include "net/use_tuple.hpp"
#include "protocol/control_protocol.hpp"
#include "scheduling/scheduler.hpp"
#include "store/db_worker.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/json.hpp>

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <array>
#include <list>
#include <optional>
#include <sys/socket.h>
#include <sys/stat.h>
#include <tuple>
#include <unistd.h>

namespace kpsd {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace json = boost::json;
using local = net::local::stream_protocol;

namespace {

// A client may sit quietly (kpsctl wait polls every few hundred ms); one that stays silent this
// long is gone. A client that does not read its reply within write_deadline is dropped.
constexpr std::chrono::seconds idle_deadline{600};
constexpr std::chrono::seconds write_deadline{10};
// Unfinished request lines across all clients are held up to this much memory (one line may
// be 1 MiB); a client whose next read would pass it gets an error line and is closed.
constexpr std::size_t max_buffered_input = 16 * 1024 * 1024;
constexpr std::size_t read_chunk = 16 * 1024;
// Over-limit connections are said once per this period, with a count, not once each.
constexpr std::chrono::seconds refusal_log_period{10};

using Stream = beast::basic_stream<local, net::any_io_executor, beast::unlimited_rate_policy>;

struct Client {
  explicit Client(local::socket s) : stream(std::move(s)) {}
  Stream stream;
  bool busy = false;     // a request is being answered: never evicted
  bool evicted = false;  // closed to make room for a newer client
  std::chrono::steady_clock::time_point last_active = std::chrono::steady_clock::now();
};

PeerCred peer_of(local::socket& s) {
  PeerCred p;
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(s.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    p.pid = cred.pid;
    p.uid = cred.uid;
  }
  return p;
}

}  // namespace

struct ControlServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(net::any_io_executor ex, const ControlConfig& cfg, DbWorker& d, Scheduler& s, Metrics& m)
      : executor(ex),
        config(cfg),
        db(d),
        scheduler(s),
        metrics(m),
        acceptor(ex),
        accept_retry(ex),
        handlers(d, s, m) {}

  void listen() {
    const std::string& path = config.socket;
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        throw std::runtime_error("control socket " + path + " exists and is not a socket");
      }
      // A socket file left by a killed kpsd can be replaced; a live one means kpsd is running.
      local::socket probe(executor);
      boost::system::error_code ec;
      probe.connect(local::endpoint(path), ec);
      if (!ec) throw std::runtime_error("another kpsd is already listening on " + path);
      ::unlink(path.c_str());
    }
    // bind() creates the file with the umask applied; make it private until chmod sets the
    // configured mode, so there is no moment when it is more open than configured.
    mode_t old = ::umask(0177);
    boost::system::error_code ec;
    acceptor.open(local(), ec);
    if (!ec) acceptor.bind(local::endpoint(path), ec);
    ::umask(old);
    if (ec) throw std::runtime_error("cannot create control socket " + path + ": " + ec.message());
    if (::chmod(path.c_str(), config.socket_mode) != 0) {
      throw std::runtime_error("cannot set mode of control socket " + path);
    }
    acceptor.listen(net::socket_base::max_listen_connections, ec);
    if (ec)
      throw std::runtime_error("cannot listen on control socket " + path + ": " + ec.message());
    bound = true;
  }

  net::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    // Named, not temporaries inside co_await: GCC 12 destroys those twice (see DbWorker::call).
    auto loop = accept_each(acceptor, accept_retry, stopped, "control socket",
                            [this, self](local::socket socket) { admit(std::move(socket), self); });
    co_await std::move(loop);
  }

  void admit(local::socket socket, const std::shared_ptr<Impl>& self) {
    if (clients.size() >= config.max_clients && !evict_idle_client()) {
      note_refusal();
      net::co_spawn(executor, refuse(std::move(socket)),
                    [self](std::exception_ptr e) { log_exception("control client", e); });
      return;
    }
    auto it = clients.emplace(clients.end(), std::move(socket));
    net::co_spawn(executor, serve(it),
                  [self](std::exception_ptr e) { log_exception("control client", e); });
  }

  // Makes room for a new client by closing the one idle longest (none mid-request). The
  // closed client is told why before its connection ends.
  bool evict_idle_client() {
    Client* oldest = nullptr;
    for (Client& c : clients) {
      if (c.busy || c.evicted) continue;
      if (!oldest || c.last_active < oldest->last_active) oldest = &c;
    }
    if (!oldest) return false;
    note_refusal();
    oldest->evicted = true;
    boost::system::error_code ignored;
    oldest->stream.socket().cancel(ignored);  // its serve() wakes, says why and closes
    return true;
  }

  void note_refusal() {
    ++metrics.control_clients_refused;
    ++refusals_unlogged;
    auto now = std::chrono::steady_clock::now();
    if (now - last_refusal_log >= refusal_log_period) {
      spdlog::warn(
          "control socket: more than {} clients (control.max_clients); {} connection(s) closed "
          "since the last report (kpsd_control_clients_refused_total counts them all)",
          config.max_clients, refusals_unlogged);
      refusals_unlogged = 0;
      last_refusal_log = now;
    }
  }

  std::string over_limit_reply() const {
    return error_reply("too many control clients (limit " + std::to_string(config.max_clients) +
                       ", control.max_clients); closing this connection, try again");
  }

  net::awaitable<void> refuse(local::socket socket) {
    Stream stream(std::move(socket));
    const std::string reply = over_limit_reply();
    co_await send(stream, reply);
    boost::system::error_code ignored;
    stream.socket().close(ignored);
  }

  net::awaitable<void> serve(std::list<Client>::iterator it) {
    auto self = shared_from_this();
    Client& client = *it;
    Stream& stream = client.stream;
    PeerCred peer = peer_of(stream.socket());
    std::string buffer;  // unfinished input; counted in buffered_input
    std::size_t scanned = 0;
    std::array<char, read_chunk> chunk;
    while (!stopped) {
      std::size_t newline = buffer.find('\n', scanned);
      if (newline == std::string::npos) {
        scanned = buffer.size();
        if (buffer.size() > max_request_line) {
          const std::string refusal = error_reply("request line longer than 1 MiB; closing");
          co_await send(stream, refusal);
          break;
        }
        if (buffered_input + read_chunk > max_buffered_input) {
          const std::string refusal =
              error_reply("control input from all clients is over its limit; closing");
          co_await send(stream, refusal);
          break;
        }
        stream.expires_after(idle_deadline);
        auto [ec, n] = co_await stream.async_read_some(net::buffer(chunk), use_tuple);
        if (client.evicted) {
          const std::string refusal = over_limit_reply();
          co_await send(stream, refusal);
          break;
        }
        if (ec) break;  // EOF, idle deadline, or stop()
        buffer.append(chunk.data(), n);
        buffered_input += n;
        OPENSSL_cleanse(chunk.data(), n);  // the line may carry a job's key
        continue;
      }
      std::string line = buffer.substr(0, newline);
      OPENSSL_cleanse(buffer.data(), newline + 1);
      buffer.erase(0, newline + 1);
      buffered_input -= newline + 1;
      scanned = 0;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      client.busy = true;
      std::string reply = co_await handlers.handle(line, peer);
      OPENSSL_cleanse(line.data(), line.size());
      bool sent = co_await send(stream, reply);
      client.busy = false;
      client.last_active = std::chrono::steady_clock::now();
      if (!sent) break;
    }
    OPENSSL_cleanse(buffer.data(), buffer.size());
    buffered_input -= buffer.size();
    boost::system::error_code ignored;
    stream.socket().close(ignored);
    clients.erase(it);
  }

  net::awaitable<bool> send(Stream& stream, const std::string& reply) {
    stream.expires_after(write_deadline);
    auto [ec, n] = co_await net::async_write(stream, net::buffer(reply), use_tuple);
    co_return !ec;
  }

  void stop() {
    stopped = true;
    boost::system::error_code ignored;
    acceptor.close(ignored);
    accept_retry.cancel();
    for (auto& c : clients) c.stream.socket().close(ignored);
  }

  net::any_io_executor executor;
  ControlConfig config;
  DbWorker& db;
  Scheduler& scheduler;
  Metrics& metrics;
  local::acceptor acceptor;
  net::steady_timer accept_retry;
  std::list<Client> clients;
  std::size_t buffered_input = 0;  // bytes of unfinished request lines, all clients
  std::uint64_t refusals_unlogged = 0;
  std::chrono::steady_clock::time_point last_refusal_log{};
  ControlHandlers handlers;
  bool stopped = false;
  bool bound = false;
};

ControlServer::ControlServer(net::any_io_executor executor, const ControlConfig& config,
                             DbWorker& db, Scheduler& scheduler, Metrics& metrics)
    : impl_(std::make_shared<Impl>(executor, config, db, scheduler, metrics)) {
  impl_->listen();
}

ControlServer::~ControlServer() {
  if (impl_->bound) ::unlink(impl_->config.socket.c_str());
}

net::awaitable<void> ControlServer::run() { return impl_->accept_loop(); }

void ControlServer::stop() { impl_->stop(); }

void ControlServer::set_reload(std::function<ReloadOutcome()> reload) {
  impl_->handlers.set_reload(std::move(reload));
}

void ControlServer::set_default_brakes(const Brakes& brakes) {
  impl_->handlers.set_default_brakes(brakes);
}

}  // namespace kpsd
