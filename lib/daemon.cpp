#include "daemon.hpp"

#include "clock.hpp"
#include "control_server.hpp"
#include "credentials.hpp"
#include "db_worker.hpp"
#include "http_client.hpp"
#include "kps_client.hpp"
#include "logging.hpp"
#include "metrics.hpp"
#include "metrics_server.hpp"
#include "scheduler.hpp"
#include "sd_notify.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <spdlog/spdlog.h>

namespace kpsd {

namespace net = boost::asio;

namespace {

auto log_failure(std::string what) {
  return [what = std::move(what) + " stopped"](std::exception_ptr e) { log_exception(what, e); };
}

}  // namespace

int run_daemon(const Config& config, const std::string& config_path) {
  net::io_context io(1);
  std::unique_ptr<KpsClient> client;
  std::unique_ptr<Credentials> credentials;
  try {
    client = std::make_unique<KpsClient>(io.get_executor(), config.kps);
    credentials = make_credentials(io.get_executor(), config, client->host_header());
    client->set_credentials(*credentials);
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
    auto store = std::make_unique<JobStore>(config.queue.database);
    int requeued = store->recover_after_restart(unix_ms());
    start_paused = store->paused();
    spdlog::info("database {} at schema version {}{}", config.queue.database,
                 store->schema_version(),
                 requeued ? fmt::format("; {} interrupted jobs back in the queue", requeued) : "");
    db = std::make_unique<DbWorker>(std::move(store));
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return exit_cant_create;
  }

  Metrics metrics;
  Scheduler scheduler(io.get_executor(), config, *db, *client, metrics);
  if (start_paused) {
    spdlog::warn("starting paused (kpsctl pause was in effect): no calls until kpsctl resume");
    scheduler.set_paused(true);
  }
  std::unique_ptr<ControlServer> control;
  std::unique_ptr<MetricsServer> metrics_server;
  try {
    control = std::make_unique<ControlServer>(io.get_executor(), config.control, *db, scheduler);
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
  // timer on the network thread, so a stuck network thread also stops the keep-alives.
  auto status_interval = std::chrono::duration_cast<std::chrono::milliseconds>(
      systemd.watchdog_interval().value_or(std::chrono::seconds(5)));
  status_interval = std::min<std::chrono::milliseconds>(status_interval, std::chrono::seconds(5));
  std::function<void()> send_status = [&] {
    if (!systemd.enabled()) return;
    net::co_spawn(
        io,
        [&]() -> net::awaitable<void> {
          auto counts = co_await db->call([](JobStore& s) { return s.count_by_state(); });
          auto st = scheduler.stats();
          std::string msg = fmt::format(
              "STATUS={}queued {}, running {}, retrying {}, delivered {}, succeeded {}, failed {}, "
              "cancelled {}; {} in flight",
              st.paused  ? "PAUSED; "
              : stopping ? "stopping; "
                         : "",
              counts[JobState::queued], counts[JobState::running], counts[JobState::retrying],
              counts[JobState::delivered], counts[JobState::succeeded], counts[JobState::failed],
              counts[JobState::cancelled], st.in_flight);
          if (systemd.watchdog_interval()) msg += "\nWATCHDOG=1";
          if (finished) co_return;  // the daemon is ending: arm nothing that keeps io alive
          systemd.notify(msg);
          status_timer.expires_after(status_interval);
          status_timer.async_wait([&](const boost::system::error_code& ec) {
            if (!ec) send_status();
          });
        },
        log_failure("status reporting"));
  };

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
          reload(config_path, *credentials, *client);
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
          spdlog::warn("signal {} a third time: exiting now", signo);
          io.stop();
          return;
        }
        signals.async_wait(on_signal);
      };
  signals.async_wait(on_signal);

  net::co_spawn(io, control->run(), log_failure("control socket"));
  if (metrics_server) net::co_spawn(io, metrics_server->run(), log_failure("metrics server"));
  bool scheduler_failed = false;
  net::co_spawn(io, scheduler.run(), [&](std::exception_ptr e) {
    log_failure("scheduler")(e);
    scheduler_failed = e != nullptr;
    finished = true;
    // The scheduler is the daemon's purpose: when it ends (stop, or a failure), kpsd ends.
    control->stop();
    if (metrics_server) metrics_server->stop();
    signals.cancel();
    grace.cancel();
    status_timer.cancel();
    if (e) io.stop();
  });
  spdlog::info("kpsd ready: endpoint {}, control socket {}, concurrency {}, rate {}/s{}",
               config.kps.endpoint.text, config.control.socket, config.queue.concurrency,
               config.queue.rate_per_second,
               metrics_server ? fmt::format(", metrics on http://{}:{}/metrics",
                                            config.metrics.host, metrics_server->port())
                              : "");
  systemd.notify("READY=1\nSTATUS=ready");
  send_status();
  io.run();
  spdlog::info("kpsd stopped");
  return scheduler_failed ? exit_software : exit_ok;
}

void reload(const std::string& config_path, Credentials& credentials, KpsClient& client) {
  // Only what can change safely while running: the log level, the credential files and the CA
  // file. Other changes need a restart.
  std::string error = credentials.reload();
  if (!error.empty()) spdlog::error("SIGHUP: {}; keeping the credentials in use", error);
  try {
    Config fresh = load_config(config_path);
    spdlog::set_level(spdlog::level::from_str(fresh.log.level));
    if (auto ca_error = client.reload_ca(fresh.kps.ca_file); !ca_error.empty()) {
      spdlog::error("SIGHUP: {}; keeping the CA in use", ca_error);
    }
    spdlog::info("SIGHUP: reloaded log level ({}), credentials and CA file", fresh.log.level);
  } catch (const ConfigError& e) {
    spdlog::error("SIGHUP: {}; keeping the running configuration", e.what());
  }
}

}  // namespace kpsd
