#include "app/daemon.hpp"

#include "app/daemon_parts.hpp"
#include "auth/credentials.hpp"
#include "config/proxy.hpp"
#include "control/control_server.hpp"
#include "control/reload.hpp"
#include "core/clock.hpp"
#include "core/logging.hpp"
#include "core/process_signals.hpp"
#include "core/sd_notify.hpp"
#include "kps/kps_client.hpp"
#include "model/metrics.hpp"
#include "net/fd_limit.hpp"
#include "net/http_client.hpp"
#include "scheduling/scheduler.hpp"
#include "store/db_lock.hpp"
#include "store/db_worker.hpp"
#include "store/pruning.hpp"
#include "store/sqlite.hpp"
#include "store/store_health.hpp"
#include "web/metrics_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <optional>
#include <thread>

namespace kpsd {

namespace net = boost::asio;

namespace {

auto log_failure(std::string what) {
  return [what = std::move(what) + " stopped"](std::exception_ptr e) { log_exception(what, e); };
}

}  // namespace

namespace {

// The KPS client with its credentials, as kpsd starts them: reads the CA and credential files
// (no call is made). Throws what make_credentials and the client throw.
struct Connection {
  std::unique_ptr<KpsClient> client;
  std::unique_ptr<Credentials> credentials;
};
Connection make_connection(net::any_io_executor executor, const Config& config) {
  Connection c;
  c.client = std::make_unique<KpsClient>(executor, config.kps,
                                         proxy_for(config.kps, config.kps.endpoint).route);
  c.credentials = make_credentials(executor, config, c.client->host_header());
  c.client->set_credentials(*c.credentials);
  return c;
}

}  // namespace

Result<void> check_startup_files(const Config& config) {
  try {
    net::io_context io(1);  // never run: the checks only read files
    make_connection(io.get_executor(), config);
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  return {};
}

std::vector<std::string> startup_warnings(const Config& config) {
  std::vector<std::string> lines = loose_secret_files(config);
  if (config.metrics.enabled && !is_loopback_host(config.metrics.host)) {
    lines.push_back("metrics.listen = " + config.metrics.host + ":" +
                    std::to_string(config.metrics.port) +
                    " is reachable from other hosts: job data (server ids, reasons, batches) goes "
                    "to whoever reaches that port; keep it on 127.0.0.1 (or put an "
                    "authenticating proxy in front)");
  }
  return lines;
}

namespace {

// Enough open files for queue.concurrency calls and control.max_clients clients (else 78).
Result<void> check_descriptors(const Config& config, const FdLimit& fds) {
  std::uint64_t need = descriptors_needed(config);
  if (need <= fds.soft) return {};
  return fail(fmt::format(
      "queue.concurrency = {} with control.max_clients = {} needs up to {} open files, but "
      "the limit is {} (hard limit {}): lower queue.concurrency or raise LimitNOFILE= in the "
      "unit",
      config.queue.concurrency, config.control.max_clients, need, fds.soft, fds.hard));
}

// One daemon per database, decided before anything opens the file: a second kpsd must not run
// crash recovery on the first one's jobs, or switch the file's journal mode. No lock for an
// in-memory database. Refused: 75 when another kpsd holds it, else 73.
Result<std::optional<DatabaseLock>, LockRefusal> lock_database(const Config& config) {
  if (config.queue.database == ":memory:") return std::optional<DatabaseLock>();
  auto taken = DatabaseLock::acquire(config.queue.database);
  if (!taken) return taken.error();
  return std::optional<DatabaseLock>(std::move(*taken));
}

// The KPS client and credentials from the configuration (files read, no call made); else 78.
// A plain http:// endpoint to another host is refused with the configuration (config.cpp).
Result<Connection> connect_kps(net::io_context& io, const Config& config) {
  try {
    return make_connection(io.get_executor(), config);
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}

// [queue] retention_days: deletes finished jobs older than that, hourly (null when 0).
std::unique_ptr<Retention> start_retention(net::io_context& io, const Config& config, DbWorker& db,
                                           Metrics& metrics) {
  if (config.queue.retention_days <= 0) return nullptr;
  auto retention = std::make_unique<Retention>(
      io.get_executor(), db, std::chrono::hours(24) * config.queue.retention_days,
      std::chrono::hours(1), [&metrics, days = config.queue.retention_days](std::int64_t n) {
        metrics.jobs_pruned += static_cast<std::uint64_t>(n);
        spdlog::info("retention: deleted {} finished jobs older than {} days", n, days);
      });
  net::co_spawn(io, retention->run(), log_failure("retention"));
  return retention;
}

void log_ready(const Config& config, const MetricsServer* metrics_server) {
  try {
    for (const auto& line : describe_routes(config)) spdlog::info("{}", line);
  } catch (const std::exception& e) {
    spdlog::warn("routes: {}", e.what());  // make_connection chose them already
  }
  spdlog::info(
      "kpsd {} ready: endpoint {}, control socket {}, concurrency {}, rate {}{}", KPSD_VERSION,
      config.kps.endpoint.text, config.control.socket, config.queue.concurrency,
      config.queue.rate_per_second > 0
          ? fmt::format("at most {}/s (below it, found from 429s)", config.queue.rate_per_second)
          : std::string("auto (found from 429s)"),
      metrics_server ? ", " + served_at(config.metrics.host, metrics_server->port()) : "");
}

struct Servers {
  std::unique_ptr<ControlServer> control;
  std::unique_ptr<MetricsServer> metrics;
};

// The control socket and, when configured, the metrics port; else 73 (EX_CANTCREAT).
Result<Servers> open_servers(net::io_context& io, const Config& config, DbWorker& db,
                             Scheduler& scheduler, Metrics& metrics) {
  try {
    Servers out;
    out.control =
        std::make_unique<ControlServer>(io.get_executor(), config.control, db, scheduler, metrics);
    if (config.metrics.enabled) {
      out.metrics = std::make_unique<MetricsServer>(io.get_executor(), config.metrics.host,
                                                    config.metrics.port, db, scheduler, metrics);
    }
    return out;
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}

// A start-up failure: said once at critical; `exit_code` is the one run_daemon chose for it.
int startup_failed(const Failure& failure, int exit_code) {
  spdlog::critical("{}", failure.message);
  return exit_code;
}

// READY, then the network thread until the scheduler has ended and everything after it; the
// exit code: 65 (EX_DATAERR) for a malformed database, 70 (EX_SOFTWARE) when the scheduler
// failed, else 0.
int serve(net::io_context& io, Scheduler& scheduler, SdNotifier& systemd, StatusReporter& status,
          const bool& scheduler_failed) {
  systemd.notify("READY=1\nSTATUS=ready");
  status.start();
  // The handlers are in place (stop_sequence): a signal held since main's first line is
  // delivered now and acted on as io.run() starts.
  release_held_signals();
  io.run();
  if (!scheduler.fatal_error().empty()) {
    spdlog::info("kpsd stopped (exit {}: malformed database)", exit_data_err);
    return exit_data_err;
  }
  spdlog::info("kpsd stopped");
  return scheduler_failed ? exit_software : exit_ok;
}

}  // namespace

// A short script of named parts: limits, the lock, the KPS client, the store, the servers, the
// status reporter and the stop sequence; then the network thread runs until the scheduler ends.
int run_daemon(const Config& config, const std::string& config_path) {
  keep_freed_memory();
  FdLimit fds = raise_fd_limit();
  // Each start-up step says what failed; the exit code for it is chosen here, and only here.
  if (auto fits = check_descriptors(config, fds); !fits)
    return startup_failed(fits.error(), exit_config);
  auto db_lock = lock_database(config);
  if (!db_lock) {
    return startup_failed(db_lock.error(),
                          db_lock.error().held_by_other ? exit_temp_fail : exit_cant_create);
  }
  net::io_context io(1);
  auto kps = connect_kps(io, config);
  if (!kps) return startup_failed(kps.error(), exit_config);
  for (const auto& line : startup_warnings(config)) spdlog::warn("{}", line);
  std::unique_ptr<KpsClient>& client = kps->client;
  std::unique_ptr<Credentials>& credentials = kps->credentials;

  OpenedStore opened = open_store(config);
  if (!opened.db) return opened.exit_code;
  std::unique_ptr<DbWorker> db = std::move(opened.db);
  bool start_paused = opened.paused;

  Metrics metrics;
  metrics.endings = opened.endings;  // every ending, counted where the store commits it
  Scheduler scheduler(io.get_executor(), config, *db, *client, metrics);
  // What SIGHUP compares a fresh read with: the keys as written that are in force, and the
  // concurrency in force (a refused one keeps the old value).
  Config running_config = config;
  if (start_paused) {
    spdlog::warn("starting paused (kpsctl pause was in effect): no calls until kpsctl resume");
    scheduler.set_paused(true);
  }
  auto servers = open_servers(io, config, *db, scheduler, metrics);
  if (!servers) return startup_failed(servers.error(), exit_cant_create);
  std::unique_ptr<ControlServer>& control = servers->control;
  std::unique_ptr<MetricsServer>& metrics_server = servers->metrics;

  SdNotifier systemd;
  StatusReporter status(io, *db, scheduler, systemd);
  // A store outage or recovery is said at once, not at the next tick.
  scheduler.on_health_change([&] { status.report_now(); });
  auto reload_as = [&](const std::string& origin) {
    ReloadOutcome outcome =
        reload(config_path, running_config, *credentials, *client, scheduler, fds.soft, origin);
    scheduler.probe_now();
    return outcome;
  };
  StopSequence stop_sequence(io, scheduler, status, systemd, config.queue.drain_grace,
                             [&] { reload_as("SIGHUP"); });
  control->set_reload([&] { return reload_as("reload"); });
  Brakes default_brakes = config.queue.default_brakes;
  if (config.queue.default_canary > 0) default_brakes.canary = config.queue.default_canary;
  control->set_default_brakes(default_brakes);
  stop_sequence.start();
  WallClockWatch wall_clock(io);
  wall_clock.start();

  std::unique_ptr<Retention> retention = start_retention(io, config, *db, metrics);
  net::co_spawn(io, control->run(), log_failure("control socket"));
  if (metrics_server) net::co_spawn(io, metrics_server->run(), log_failure("metrics server"));
  // The scheduler is the daemon's purpose: when it ends (a stop, or a malformed database),
  // everything else is stopped too, and io.run() returns once the last coroutine has ended.
  // Nothing calls io.stop(): a coroutine left suspended would be destroyed after the objects it
  // uses (the KPS client, the store) are gone.
  bool scheduler_failed = false;
  net::co_spawn(io, scheduler.run(), [&](std::exception_ptr e) {
    log_failure("scheduler")(e);
    scheduler_failed = e != nullptr;
    status.finish();
    if (e) scheduler.abort();
    control->stop();
    if (retention) retention->stop();
    if (metrics_server) metrics_server->stop();
    stop_sequence.cancel();
    wall_clock.stop();
  });
  log_ready(config, metrics_server.get());
  return serve(io, scheduler, systemd, status, scheduler_failed);
}

}  // namespace kpsd
