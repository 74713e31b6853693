#include "daemon.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <spdlog/spdlog.h>

#include "control_server.hpp"
#include "db_worker.hpp"
#include "kps_client.hpp"
#include "scheduler.hpp"
#include "token_source.hpp"

namespace kpsd {

namespace net = boost::asio;

namespace {

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

auto log_failure(std::string what) {
  return [what = std::move(what)](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::critical("{} stopped: {}", what, ex.what());
    }
  };
}

}  // namespace

int run_daemon(const Config& config) {
  TokenSource tokens(config.auth.token_file);
  {
    std::string error;
    if (!tokens.current(error)) {
      spdlog::critical("{}", error);
      return exit_config;
    }
  }

  std::unique_ptr<DbWorker> db;
  try {
    auto store = std::make_unique<JobStore>(config.queue.database);
    int requeued = store->recover_after_restart(wall_ms());
    spdlog::info("database {} at schema version {}{}", config.queue.database,
                 store->schema_version(),
                 requeued ? fmt::format("; {} interrupted jobs back in the queue", requeued) : "");
    db = std::make_unique<DbWorker>(std::move(store));
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return exit_cant_create;
  }

  net::io_context io(1);
  KpsClient client(io.get_executor(), config.kps, tokens);
  Scheduler scheduler(io.get_executor(), config, *db, client, tokens);
  std::unique_ptr<ControlServer> control;
  try {
    control = std::make_unique<ControlServer>(io.get_executor(), config.control, *db, scheduler);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return exit_cant_create;
  }

  // Stopping, in three steps: the first SIGTERM/SIGINT stops new calls and lets those in flight
  // finish for drain_grace; the end of the grace or a second signal cancels what is left (those
  // jobs go back to `queued`); a third signal stops at once.
  net::signal_set signals(io, SIGTERM, SIGINT);
  net::steady_timer grace(io);
  int signals_seen = 0;
  auto cancel_in_flight = [&](std::string_view why) {
    auto in_flight = scheduler.stats().in_flight;
    if (in_flight > 0) spdlog::warn("{}: cancelling {} calls in flight", why, in_flight);
    scheduler.abort();
  };
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int signo) {
        if (ec) return;
        ++signals_seen;
        if (signals_seen == 1) {
          spdlog::info("signal {}: stopping; calls in flight get up to {} ms to finish", signo,
                       config.queue.drain_grace.count());
          scheduler.stop();
          grace.expires_after(config.queue.drain_grace);
          grace.async_wait([&](const boost::system::error_code& gec) {
            if (!gec) cancel_in_flight("grace period over");
          });
        } else if (signals_seen == 2) {
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
  bool scheduler_failed = false;
  net::co_spawn(io, scheduler.run(), [&](std::exception_ptr e) {
    log_failure("scheduler")(e);
    scheduler_failed = e != nullptr;
    // The scheduler is the daemon's purpose: when it ends (stop, or a failure), kpsd ends.
    control->stop();
    signals.cancel();
    grace.cancel();
    if (e) io.stop();
  });
  spdlog::info("kpsd ready: endpoint {}, control socket {}, concurrency {}, rate {}/s",
               config.kps.endpoint.text, config.control.socket, config.queue.concurrency,
               config.queue.rate_per_second);
  io.run();
  spdlog::info("kpsd stopped");
  return scheduler_failed ? exit_software : exit_ok;
}

}  // namespace kpsd
