#include "daemon.hpp"

#include "clock.hpp"
#include "control_server.hpp"
#include "credentials.hpp"
#include "db_lock.hpp"
#include "db_worker.hpp"
#include "fd_limit.hpp"
#include "http_client.hpp"
#include "kps_client.hpp"
#include "logging.hpp"
#include "metrics.hpp"
#include "metrics_server.hpp"
#include "pruning.hpp"
#include "scheduler.hpp"
#include "sd_notify.hpp"
#include "sqlite.hpp"
#include "store_health.hpp"

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
  c.client = std::make_unique<KpsClient>(executor, config.kps);
  c.credentials = make_credentials(executor, config, c.client->host_header());
  c.client->set_credentials(*c.credentials);
  return c;
}

}  // namespace

std::string check_startup_files(const Config& config) {
  try {
    net::io_context io(1);  // never run: the checks only read files
    make_connection(io.get_executor(), config);
  } catch (const std::exception& e) {
    return e.what();
  }
  return {};
}

int run_daemon(const Config& config, const std::string& config_path) {
  FdLimit fds = raise_fd_limit();
  if (std::uint64_t need = descriptors_needed(config); need > fds.soft) {
    spdlog::critical(
        "queue.concurrency = {} with control.max_clients = {} needs up to {} open files, but "
        "the limit is {} (hard limit {}): lower queue.concurrency or raise LimitNOFILE= in the "
        "unit",
        config.queue.concurrency, config.control.max_clients, need, fds.soft, fds.hard);
    return exit_config;
  }

  // One daemon per database, decided before anything opens the file: a second kpsd must not
  // run crash recovery on the first one's jobs, or switch the file's journal mode.
  std::optional<DatabaseLock> db_lock;
  if (config.queue.database != ":memory:") {
    std::string lock_error;
    bool held_by_other = false;
    db_lock = DatabaseLock::acquire(config.queue.database, lock_error, held_by_other);
    if (!db_lock) {
      spdlog::critical("{}", lock_error);
      return held_by_other ? exit_temp_fail : exit_cant_create;
    }
  }

  net::io_context io(1);
  std::unique_ptr<KpsClient> client;
  std::unique_ptr<Credentials> credentials;
  try {
    auto connection = make_connection(io.get_executor(), config);
    client = std::move(connection.client);
    credentials = std::move(connection.credentials);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return exit_config;
  }
  if (config.kps.endpoint.scheme == "http" && !is_loopback_host(config.kps.endpoint.host)) {
    spdlog::warn(
        "kps.endpoint {} is plain http to another host: credentials and job keys cross "
        "the network unencrypted. Use https:// outside tests.",
        config.kps.endpoint.text);
  }

  std::unique_ptr<DbWorker> db;
  bool start_paused = false;
  try {
    // Another writer (an sqlite3 shell inserting jobs) may hold the write lock for a while:
    // wait for it rather than fail, since a unit that keeps failing to start helps nobody.
    std::unique_ptr<JobStore> store;
    int requeued = 0;
    for (bool said = false;;) {
      try {
        store = std::make_unique<JobStore>(config.queue.database);
        requeued = store->recover_after_restart(unix_ms(), config.queue.max_attempts);
        break;
      } catch (const sql::Error& e) {
        if (!is_lock_conflict(e.code())) throw;
        store.reset();
        if (!said) {
          spdlog::warn("{}: another process holds the database's write lock; waiting for it",
                       e.what());
          said = true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
    }
    start_paused = store->paused();
    spdlog::info("database {} at schema version {}{}", config.queue.database,
                 store->schema_version(),
                 requeued ? fmt::format("; {} interrupted jobs back in the queue", requeued) : "");
    db = std::make_unique<DbWorker>(std::move(store));
  } catch (const sql::Error& e) {
    if (is_malformed_database(e.code())) {
      spdlog::critical(
          "the database {} is malformed ({}): kpsd cannot use it; restore it from a backup or "
          "move it aside",
          config.queue.database, e.what());
      return exit_data_err;
    }
    spdlog::critical("{}", e.what());
    return exit_cant_create;
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return exit_cant_create;
  }

  Metrics metrics;
  Scheduler scheduler(io.get_executor(), config, *db, *client, metrics);
  // What SIGHUP compares a fresh read with: the keys as written that are in force, and the
  // concurrency in force (a refused one keeps the old value).
  Config running_config = config;
  if (start_paused) {
    spdlog::warn("starting paused (kpsctl pause was in effect): no calls until kpsctl resume");
    scheduler.set_paused(true);
  }
  std::unique_ptr<ControlServer> control;
  std::unique_ptr<MetricsServer> metrics_server;
  try {
    control =
        std::make_unique<ControlServer>(io.get_executor(), config.control, *db, scheduler, metrics);
    if (config.metrics.enabled) {
      metrics_server = std::make_unique<MetricsServer>(
          io.get_executor(), config.metrics.host, config.metrics.port, *db, scheduler, metrics);
    }
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return exit_cant_create;
  }

  SdNotifier systemd;
  net::steady_timer status_timer(io);
  bool stopping = false;
  bool finished = false;
  // STATUS= for `systemctl status`, and WATCHDOG=1 when WatchdogSec= asks for it: both from one
  // loop on the network thread, so a stuck network thread also stops the keep-alives. A store
  // that cannot be read still gets a status line (and the watchdog its keep-alive).
  auto status_interval = std::chrono::duration_cast<std::chrono::milliseconds>(
      systemd.watchdog_interval().value_or(std::chrono::seconds(5)));
  status_interval = std::min<std::chrono::milliseconds>(status_interval, std::chrono::seconds(5));
  auto report_status = [&]() -> net::awaitable<void> {
    std::string counts_text = "job counts unavailable";
    try {
      auto counts = co_await db->call([](JobStore& s) { return s.count_by_state(); });
      counts_text = fmt::format(
          "queued {}, running {}, retrying {}, delivered {}, succeeded {}, failed {}, "
          "cancelled {}",
          counts[JobState::queued], counts[JobState::running], counts[JobState::retrying],
          counts[JobState::delivered], counts[JobState::succeeded], counts[JobState::failed],
          counts[JobState::cancelled]);
    } catch (const std::exception& e) {
      spdlog::debug("status: {}", e.what());
    }
    if (finished) co_return;
    auto st = scheduler.stats();
    std::string prefix =
        !st.store_writable           ? fmt::format("STORE UNAVAILABLE ({}); {} outcomes waiting; ",
                                                   st.store_problem, st.outcomes_waiting)
        : !st.blocked_reason.empty() ? fmt::format("BLOCKED: {}; ", st.blocked_reason)
        : st.paused                  ? "PAUSED; "
        : stopping                   ? "stopping; "
                                     : "";
    std::string msg = fmt::format("STATUS={}{}; {} in flight", prefix, counts_text, st.in_flight);
    if (systemd.watchdog_interval()) msg += "\nWATCHDOG=1";
    systemd.notify(msg);
  };
  auto status_loop = [&]() -> net::awaitable<void> {
    while (!finished) {
      co_await report_status();
      status_timer.expires_after(status_interval);
      co_await status_timer.async_wait(net::as_tuple(net::use_awaitable));
    }
  };
  // A store outage or recovery is said at once, not at the next tick.
  scheduler.on_health_change([&] {
    if (systemd.enabled() && !finished) {
      net::co_spawn(io, report_status(), log_failure("status reporting"));
    }
  });

  // Stopping, in three steps: the first SIGTERM/SIGINT stops new calls and lets those in flight
  // finish for drain_grace; the end of the grace or a second signal cancels what is left (those
  // jobs go back to `queued`); a third signal stops at once. SIGHUP reloads the log level and
  // the token file.
  net::signal_set signals(io, SIGTERM, SIGINT, SIGHUP);
  net::steady_timer grace(io);
  int stop_signals = 0;
  auto cancel_in_flight = [&](std::string_view why) {
    auto in_flight = scheduler.stats().in_flight;
    if (in_flight > 0) spdlog::warn("{}: cancelling {} calls in flight", why, in_flight);
    scheduler.abort();
  };
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int signo) {
        if (ec) return;
        if (signo == SIGHUP) {
          reload(config_path, running_config, *credentials, *client, scheduler, fds.soft);
          scheduler.probe_now();
          signals.async_wait(on_signal);
          return;
        }
        ++stop_signals;
        if (stop_signals == 1) {
          spdlog::info("signal {}: stopping; calls in flight get up to {} ms to finish", signo,
                       config.queue.drain_grace.count());
          stopping = true;
          systemd.notify("STOPPING=1\nSTATUS=stopping: finishing calls in flight");
          scheduler.stop();
          grace.expires_after(config.queue.drain_grace);
          grace.async_wait([&](const boost::system::error_code& gec) {
            if (!gec) cancel_in_flight("grace period over");
          });
        } else if (stop_signals == 2) {
          cancel_in_flight("signal " + std::to_string(signo) + " again");
        } else {
          // Like a crash, and as safe: every committed transition stands, and calls whose
          // outcome was not recorded become "outcome lost" attempts at the next start. No
          // destructor runs, so no coroutine can outlive what it uses.
          spdlog::warn("signal {} a third time: exiting now", signo);
          spdlog::default_logger()->flush();
          std::_Exit(exit_ok);
        }
        signals.async_wait(on_signal);
      };
  signals.async_wait(on_signal);

  std::optional<Retention> retention;
  if (config.queue.retention_days > 0) {
    retention.emplace(io.get_executor(), *db, std::chrono::hours(24) * config.queue.retention_days,
                      std::chrono::hours(1), [&](std::int64_t n) {
                        metrics.jobs_pruned += static_cast<std::uint64_t>(n);
                        spdlog::info("retention: deleted {} finished jobs older than {} days", n,
                                     config.queue.retention_days);
                      });
    net::co_spawn(io, retention->run(), log_failure("retention"));
  }
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
    finished = true;
    if (e) scheduler.abort();
    control->stop();
    if (retention) retention->stop();
    if (metrics_server) metrics_server->stop();
    signals.cancel();
    grace.cancel();
    status_timer.cancel();
  });
  spdlog::info(
      "kpsd {} ready: endpoint {}, control socket {}, concurrency {}, rate {}{}", KPSD_VERSION,
      config.kps.endpoint.text, config.control.socket, config.queue.concurrency,
      config.queue.rate_per_second > 0
          ? fmt::format("at most {}/s (below it, found from 429s)", config.queue.rate_per_second)
          : std::string("auto (found from 429s)"),
      metrics_server ? fmt::format(", metrics on http://{}:{}/metrics", config.metrics.host,
                                   metrics_server->port())
                     : "");
  systemd.notify("READY=1\nSTATUS=ready");
  if (systemd.enabled()) net::co_spawn(io, status_loop(), log_failure("status reporting"));
  io.run();
  if (!scheduler.fatal_error().empty()) {
    spdlog::info("kpsd stopped (exit {}: malformed database)", exit_data_err);
    return exit_data_err;
  }
  spdlog::info("kpsd stopped");
  return scheduler_failed ? exit_software : exit_ok;
}

void reload(const std::string& config_path, Config& running, Credentials& credentials,
            KpsClient& client, Scheduler& scheduler, std::uint64_t open_file_limit) {
  // What can change safely while running: the log level, the credential files, the CA file,
  // concurrency, the rate ceiling and the retry and poll settings. Other changes are named and
  // need a restart.
  std::string error = credentials.reload();
  if (!error.empty()) spdlog::error("SIGHUP: {}; keeping the credentials in use", error);
  Config fresh;
  try {
    fresh = load_config(config_path);
  } catch (const ConfigError& e) {
    spdlog::error("SIGHUP: {}; keeping the running configuration", e.what());
    return;
  }
  spdlog::set_level(spdlog::level::from_str(fresh.log.level));
  if (auto ca_error = client.reload_ca(fresh.kps.ca_file); !ca_error.empty()) {
    spdlog::error("SIGHUP: {}; keeping the CA in use", ca_error);
  }
  spdlog::info("SIGHUP: reloaded log level ({}), credentials and CA file", fresh.log.level);

  std::vector<std::string> applied, need_restart;
  bool concurrency_fits = descriptors_needed(fresh) <= open_file_limit;
  for (const std::string& key : changed_keys(running, fresh)) {
    auto value_of = [&key](const Config& c) {
      auto it = c.written.find(key);
      return it == c.written.end() ? std::string("(default)") : it->second;
    };
    std::string change = key + " " + value_of(running) + " -> " + value_of(fresh);
    if (!applies_on_reload(key)) {
      need_restart.push_back(change);
      continue;
    }
    if (key == "queue.concurrency" && !concurrency_fits) {
      spdlog::error(
          "SIGHUP: queue.concurrency = {} needs up to {} open files, but the limit is {}; "
          "keeping {}",
          fresh.queue.concurrency, descriptors_needed(fresh), open_file_limit,
          running.queue.concurrency);
      continue;
    }
    applied.push_back(change);
    if (auto it = fresh.written.find(key); it != fresh.written.end()) {
      running.written[key] = it->second;
    } else {
      running.written.erase(key);
    }
  }
  // The scheduler reads only live keys: it takes them all from the fresh read, except a
  // concurrency refused above.
  Config live = fresh;
  if (!concurrency_fits) live.queue.concurrency = running.queue.concurrency;
  scheduler.apply(live);
  running.queue.concurrency = live.queue.concurrency;
  auto joined = [](const std::vector<std::string>& items) {
    std::string out;
    for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
    return out;
  };
  if (!applied.empty()) spdlog::info("SIGHUP: applied {}", joined(applied));
  if (!need_restart.empty()) {
    spdlog::warn("SIGHUP: these changes need a restart (systemctl restart kpsd): {}",
                 joined(need_restart));
  }
}

}  // namespace kpsd
