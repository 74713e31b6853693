#include "control_server.hpp"

#include "clock.hpp"
#include "control_protocol.hpp"
#include "db_worker.hpp"
#include "logging.hpp"
#include "scheduler.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/json.hpp>

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <list>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kpsd {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace json = boost::json;
using local = net::local::stream_protocol;

namespace {

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
// A client may sit quietly (kpsctl wait polls every few hundred ms); one that stays silent this
// long is gone. A client that does not read its reply within write_deadline is dropped.
constexpr std::chrono::seconds idle_deadline{600};
constexpr std::chrono::seconds write_deadline{10};

using Stream = beast::basic_stream<local, net::any_io_executor, beast::unlimited_rate_policy>;

struct PeerCred {
  pid_t pid = 0;
  uid_t uid = 0;
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
  Impl(net::any_io_executor ex, const ControlConfig& cfg, DbWorker& d, Scheduler& s)
      : executor(ex), config(cfg), db(d), scheduler(s), acceptor(ex) {}

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
    while (!stopped) {
      auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
      if (ec) {
        if (stopped || ec == net::error::operation_aborted) break;
        spdlog::warn("control socket accept: {}", ec.message());
        continue;
      }
      auto it = clients.emplace(clients.end(), std::move(socket));
      net::co_spawn(executor, serve(it),
                    [self](std::exception_ptr e) { log_exception("control client", e); });
    }
  }

  net::awaitable<void> serve(std::list<Stream>::iterator it) {
    auto self = shared_from_this();
    Stream& stream = *it;
    PeerCred peer = peer_of(stream.socket());
    std::string buffer;
    while (!stopped) {
      stream.expires_after(idle_deadline);
      auto [ec, n] = co_await net::async_read_until(
          stream, net::dynamic_buffer(buffer, max_request_line + 1), '\n', use_tuple);
      if (ec == net::error::not_found) {
        const std::string refusal = error_reply("request line longer than 1 MiB; closing");
        co_await send(stream, refusal);
        break;
      }
      if (ec) break;  // EOF, idle deadline, or stop()
      std::string line = buffer.substr(0, n - 1);
      OPENSSL_cleanse(buffer.data(), n);  // the line may carry a job's key
      buffer.erase(0, n);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      std::string reply = co_await handle(line, peer);
      OPENSSL_cleanse(line.data(), line.size());
      if (!co_await send(stream, reply)) break;
    }
    boost::system::error_code ignored;
    stream.socket().close(ignored);
    clients.erase(it);
  }

  net::awaitable<bool> send(Stream& stream, const std::string& reply) {
    stream.expires_after(write_deadline);
    auto [ec, n] = co_await net::async_write(stream, net::buffer(reply), use_tuple);
    co_return !ec;
  }

  net::awaitable<std::string> handle(const std::string& line, PeerCred peer) {
    std::string error;
    auto request = parse_control_request(line, error);
    if (!request) co_return error_reply(error);
    if (changes_state(*request) && !std::holds_alternative<EnqueueRequest>(*request)) {
      // Who changed what: the peer's credentials, as the kernel vouches for them.
      spdlog::info("control: uid {} pid {}: {}", peer.uid, peer.pid, summary(*request));
    }
    try {
      json::object reply = co_await std::visit(
          [&](auto& r) -> net::awaitable<json::object> { return execute(r, peer); }, *request);
      // An execute() that could not do what was asked answers {"error": ...}.
      reply.emplace("ok", !reply.contains("error"));
      co_return json::serialize(reply) + "\n";
    } catch (const std::exception& e) {
      // A store failure (disk full, corrupt file) is reported, not hidden; the daemon lives on.
      spdlog::error("control request failed: {}", e.what());
      co_return error_reply(std::string("internal error: ") + e.what());
    }
  }

  net::awaitable<json::object> execute(EnqueueRequest& r, PeerCred peer) {
    std::int64_t now = unix_ms();
    std::size_t count = r.jobs.size();
    // Named, not a temporary inside co_await (see DbWorker::call on GCC 12).
    auto store_jobs = [jobs = std::move(r.jobs), now](JobStore& s) { return s.enqueue(jobs, now); };
    auto results = co_await db.call(std::move(store_jobs));
    std::size_t existing = 0;
    json::array out;
    out.reserve(results.size());
    for (const auto& res : results) {
      existing += res.existing ? 1 : 0;
      out.push_back(json::object{{"id", res.id}, {"existing", res.existing}});
    }
    spdlog::info("enqueue from uid {} pid {}: {} jobs ({} new, {} already queued)", peer.uid,
                 peer.pid, count, count - existing, existing);
    scheduler.wake();
    co_return json::object{{"jobs", std::move(out)}};
  }

  net::awaitable<json::object> execute(ListRequest& r, PeerCred) {
    auto list_jobs = [q = r.query](JobStore& s) { return s.list(q); };
    auto jobs = co_await db.call(std::move(list_jobs));
    json::array out;
    out.reserve(jobs.size());
    for (const Job& j : jobs) out.push_back(job_to_json(j));
    json::object reply{{"jobs", std::move(out)}};
    if (!jobs.empty() && static_cast<std::int64_t>(jobs.size()) == r.query.limit) {
      reply["next_after_id"] = jobs.back().id;
    }
    co_return reply;
  }

  net::awaitable<json::object> execute(ShowRequest& r, PeerCred) {
    auto [job, attempts] = co_await db.call([id = r.id](JobStore& s) {
      return std::pair{s.find(id), s.attempts_of(id)};
    });
    if (!job) co_return json::object{{"error", "no job with id " + std::to_string(r.id)}};
    json::array out;
    for (const Attempt& a : attempts) out.push_back(attempt_to_json(a));
    co_return json::object{{"job", job_to_json(*job)}, {"attempts", std::move(out)}};
  }

  net::awaitable<json::object> execute(StatsRequest&, PeerCred) {
    auto [counts, oldest] = co_await db.call([](JobStore& s) {
      return std::pair{s.count_by_state(), s.oldest_queued_due()};
    });
    json::object states;
    std::int64_t total = 0;
    for (const auto& [state, n] : counts) {
      states[to_string(state)] = n;
      total += n;
    }
    auto sched = scheduler.stats();
    co_return json::object{
        {"states", std::move(states)},
        {"total", total},
        {"in_flight", sched.in_flight},
        {"rate_per_second", sched.rate_per_second},
        {"configured_rate_per_second", sched.configured_rate_per_second},
        {"paused", sched.paused},
        {"oldest_queued_ms", oldest ? json::value(std::max<std::int64_t>(0, unix_ms() - *oldest))
                                    : json::value(nullptr)},
        {"stopping", sched.stopping}};
  }

  static std::string summary(const ControlRequest& r) {
    if (auto* q = std::get_if<RetryRequest>(&r)) {
      return q->id ? "retry job " + std::to_string(*q->id)
                   : "retry all " + std::string(to_string(*q->state)) + " jobs";
    }
    if (auto* c = std::get_if<CancelRequest>(&r)) return "cancel job " + std::to_string(c->id);
    if (auto* p = std::get_if<PauseRequest>(&r)) return p->pause ? "pause" : "resume";
    return "request";
  }

  net::awaitable<json::object> execute(RetryRequest& r, PeerCred) {
    std::int64_t now = unix_ms();
    if (r.id) {
      auto outcome = co_await db.call([id = *r.id, now](JobStore& s) { return s.retry(id, now); });
      if (outcome != RetryOutcome::requeued && outcome != RetryOutcome::rechecking) {
        co_return json::object{
            {"error", "job " + std::to_string(*r.id) + ": " + std::string(describe(outcome))}};
      }
      scheduler.wake();
      co_return json::object{{"id", *r.id}, {"result", describe(outcome)}};
    }
    auto counts =
        co_await db.call([state = *r.state, now](JobStore& s) { return s.retry_all(state, now); });
    scheduler.wake();
    co_return json::object{{"requeued", counts[RetryOutcome::requeued]},
                           {"rechecking", counts[RetryOutcome::rechecking]},
                           {"skipped_key_gone", counts[RetryOutcome::key_gone]}};
  }

  net::awaitable<json::object> execute(CancelRequest& r, PeerCred) {
    std::int64_t now = unix_ms();
    auto outcome = co_await db.call([id = r.id, now](JobStore& s) { return s.cancel(id, now); });
    switch (outcome) {
      case CancelOutcome::cancelled:
        co_return json::object{{"id", r.id}, {"result", "cancelled"}};
      case CancelOutcome::not_found:
        co_return json::object{{"error", "no job with id " + std::to_string(r.id)}};
      case CancelOutcome::already_ended:
        co_return json::object{{"error", "job " + std::to_string(r.id) + " has already ended"}};
    }
    co_return json::object{{"error", "unknown cancel outcome"}};
  }

  net::awaitable<json::object> execute(PauseRequest& r, PeerCred) {
    // Committed first, so a restart keeps the operator's choice.
    co_await db.call([pause = r.pause](JobStore& s) { s.set_paused(pause); });
    scheduler.set_paused(r.pause);
    co_return json::object{{"paused", r.pause}};
  }

  void stop() {
    stopped = true;
    boost::system::error_code ignored;
    acceptor.close(ignored);
    for (auto& c : clients) c.socket().close(ignored);
  }

  net::any_io_executor executor;
  ControlConfig config;
  DbWorker& db;
  Scheduler& scheduler;
  local::acceptor acceptor;
  std::list<Stream> clients;
  bool stopped = false;
  bool bound = false;
};

ControlServer::ControlServer(net::any_io_executor executor, const ControlConfig& config,
                             DbWorker& db, Scheduler& scheduler)
    : impl_(std::make_shared<Impl>(executor, config, db, scheduler)) {
  impl_->listen();
}

ControlServer::~ControlServer() {
  if (impl_->bound) ::unlink(impl_->config.socket.c_str());
}

net::awaitable<void> ControlServer::run() { return impl_->accept_loop(); }

void ControlServer::stop() { impl_->stop(); }

}  // namespace kpsd
