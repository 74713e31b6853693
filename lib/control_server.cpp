#include "control_server.hpp"

#include "accept_backoff.hpp"
#include "clock.hpp"
#include "control_protocol.hpp"
#include "db_worker.hpp"
#include "logging.hpp"
#include "metrics.hpp"
#include "pruning.hpp"
#include "scheduler.hpp"
#include "stats_json.hpp"

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
#include <map>
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

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
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
  Impl(net::any_io_executor ex, const ControlConfig& cfg, DbWorker& d, Scheduler& s, Metrics& m)
      : executor(ex),
        config(cfg),
        db(d),
        scheduler(s),
        metrics(m),
        acceptor(ex),
        accept_retry(ex) {}

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
    AcceptBackoff backoff("control socket");
    while (!stopped) {
      auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
      if (ec) {
        if (stopped || ec == net::error::operation_aborted) break;
        // EMFILE and friends: the pending connection stays in the backlog; try again later
        // rather than at once (an immediate retry fails the same way, at full CPU).
        accept_retry.expires_after(backoff.failed(ec.message()));
        co_await accept_retry.async_wait(use_tuple);
        continue;
      }
      backoff.succeeded();
      if (clients.size() >= config.max_clients && !evict_idle_client()) {
        note_refusal();
        net::co_spawn(executor, refuse(std::move(socket)),
                      [self](std::exception_ptr e) { log_exception("control client", e); });
        continue;
      }
      auto it = clients.emplace(clients.end(), std::move(socket));
      net::co_spawn(executor, serve(it),
                    [self](std::exception_ptr e) { log_exception("control client", e); });
    }
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
      std::string reply = co_await handle(line, peer);
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
    auto store_jobs = [jobs = std::move(r.jobs), now, batch = r.batch](JobStore& s) {
      return s.enqueue(jobs, now, batch);
    };
    auto results = co_await db.call(std::move(store_jobs));
    if (!results.error.empty()) co_return json::object{{"error", results.error}};
    std::size_t existing = 0;
    json::array out;
    out.reserve(results.jobs.size());
    for (const auto& res : results.jobs) {
      existing += res.existing ? 1 : 0;
      out.push_back(json::object{{"id", res.id}, {"existing", res.existing}});
    }
    spdlog::info("enqueue from uid {} pid {}: {} jobs ({} new, {} already queued) into batch {}",
                 peer.uid, peer.pid, count, count - existing, existing, results.batch_id);
    scheduler.wake();
    co_return json::object{{"jobs", std::move(out)}, {"batch_id", results.batch_id}};
  }

  net::awaitable<json::object> execute(ListRequest& r, PeerCred) {
    // The batch is resolved in the same DB call as the list: one round trip.
    auto list_jobs = [q = r.query, batch = r.batch](JobStore& s) mutable {
      std::optional<std::vector<Job>> jobs;
      if (batch) {
        auto found = s.find_batch(*batch, /*count=*/false);
        if (!found) return jobs;
        q.batch_id = found->id;
      }
      jobs = s.list(q);
      return jobs;
    };
    auto found_jobs = co_await db.call(std::move(list_jobs));
    if (!found_jobs) co_return json::object{{"error", "no batch " + *r.batch}};
    const std::vector<Job>& jobs = *found_jobs;
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

  // What a stats request reads from the store, in one DB call.
  struct StoreStats {
    std::map<JobState, std::int64_t> counts;
    std::optional<std::int64_t> oldest;
    std::optional<Batch> batch;
    bool batch_missing = false;
    std::int64_t max_id = 0;
    std::optional<std::int64_t> min_unfinished_id;
    bool waiting = false;  // a wait request whose jobs are not all finished: nothing counted
  };

  net::awaitable<json::object> execute(StatsRequest& r, PeerCred) {
    StoreStats read;
    std::string read_problem;
    std::int64_t now = unix_ms();
    try {
      auto read_stats = [r](JobStore& s) {
        StoreStats out;
        out.max_id = s.max_job_id();
        out.min_unfinished_id = s.min_unfinished_id();
        out.oldest = s.oldest_queued_due();
        if (r.batch) {
          out.batch = s.find_batch(*r.batch, /*count=*/false);
          out.batch_missing = !out.batch;
          if (out.batch) {
            out.waiting = r.wait && s.batch_unfinished(out.batch->id);
            if (!out.waiting) out.batch->states = s.count_batch(out.batch->id);
            out.counts = out.batch->states;
          }
        } else if (r.unfinished_since) {
          const auto& u = *r.unfinished_since;
          out.waiting = r.wait && s.any_unfinished_between(u.min_id, u.max_id);
          out.counts = out.waiting ? s.count_by_state()
                                   : s.count_unfinished_since(u.min_id, u.max_id, u.since);
        } else {
          out.counts = s.count_by_state();
        }
        return out;
      };
      read = co_await db.call(std::move(read_stats));
    } catch (const std::exception& e) {
      // Stats are what an operator asks for during an outage: answer with what is known.
      read_problem = e.what();
    }
    if (read.batch_missing) co_return json::object{{"error", "no batch " + *r.batch}};
    json::object reply = stats_json(read.counts, read.oldest, read_problem, scheduler.stats(), now);
    reply["now_ms"] = now;
    reply["max_id"] = read.max_id;
    reply["min_unfinished_id"] =
        read.min_unfinished_id ? json::value(*read.min_unfinished_id) : json::value(nullptr);
    if (read.batch) reply["batch"] = batch_to_json(*read.batch);
    if (r.wait) reply["waiting"] = read.waiting;
    co_return reply;
  }

  net::awaitable<json::object> execute(BatchesRequest& r, PeerCred) {
    auto recent =
        co_await db.call([limit = r.limit](JobStore& s) { return s.list_batches(limit); });
    json::array out;
    for (const Batch& b : recent) out.push_back(batch_to_json(b));
    co_return json::object{{"batches", std::move(out)}};
  }

  net::awaitable<json::object> execute(PruneRequest& r, PeerCred) {
    std::int64_t before = r.before_ms ? *r.before_ms : unix_ms() - r.older_than_ms;
    // Well inside kpsctl's 60 s reply timeout; kpsctl asks again while "more" is true.
    PruneProgress p = co_await prune_finished_jobs(db, before, std::chrono::seconds(20));
    metrics.jobs_pruned += static_cast<std::uint64_t>(p.pruned);
    co_return json::object{{"pruned", p.pruned}, {"more", p.more}, {"before_ms", before}};
  }

  net::awaitable<json::object> execute(VersionRequest&, PeerCred) {
    int schema = co_await db.call([](JobStore& s) { return s.schema_version(); });
    co_return json::object{{"version", KPSD_VERSION},
                           {"schema_version", schema},
                           {"pid", static_cast<std::int64_t>(::getpid())}};
  }

  static std::string summary(const ControlRequest& r) {
    if (auto* q = std::get_if<RetryRequest>(&r)) {
      return q->id ? "retry job " + std::to_string(*q->id)
                   : "retry all " + std::string(to_string(*q->state)) + " jobs";
    }
    if (auto* c = std::get_if<CancelRequest>(&r)) return "cancel job " + std::to_string(c->id);
    if (auto* p = std::get_if<PauseRequest>(&r)) return p->pause ? "pause" : "resume";
    if (auto* p = std::get_if<PruneRequest>(&r)) {
      return p->before_ms ? "prune finished jobs that ended before " + std::to_string(*p->before_ms)
                          : "prune finished jobs older than " +
                                std::to_string(p->older_than_ms / 1000) + " s";
    }
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
                           {"skipped_key_gone", counts[RetryOutcome::key_gone]},
                           {"skipped_call_in_flight", counts[RetryOutcome::call_in_flight]}};
  }

  net::awaitable<json::object> execute(CancelRequest& r, PeerCred) {
    std::int64_t now = unix_ms();
    auto outcome = co_await db.call([id = r.id, now](JobStore& s) { return s.cancel(id, now); });
    switch (outcome) {
      case CancelOutcome::cancelled:
        ++metrics.jobs_finished[JobState::cancelled];
        metrics.history.finished(JobState::cancelled, unix_ms());
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

}  // namespace kpsd
