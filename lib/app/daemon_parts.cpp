#include "app/daemon_parts.hpp"

#include "control/overview.hpp"
#include "core/clock.hpp"
#include "core/exit_codes.hpp"
#include "core/logging.hpp"
#include "core/outside_text.hpp"
#include "core/process_signals.hpp"
#include "core/sd_notify.hpp"
#include "scheduling/scheduler.hpp"
#include "store/db_worker.hpp"
#include "store/sqlite.hpp"
#include "store/store_health.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdlib>
#include <malloc.h>
#include <thread>

namespace kpsd {

namespace net = boost::asio;

namespace {

// Opens the store, waiting while another writer holds the write lock (a unit that keeps
// failing to start helps nobody); null when a SIGTERM or SIGINT came meanwhile (a stop, not a
// failure). Throws sql::Error for anything else.
std::unique_ptr<JobStore> open_waiting(const Config& config, int& requeued) {
  for (bool said = false;;) {
    try {
      auto store = std::make_unique<JobStore>(config.queue.database);
      std::vector<BatchStop> stops;  // jobs that gave up may have spent a batch's budget
      requeued =
          store->work_queue().recover_after_restart(unix_ms(), config.queue.max_attempts, &stops);
      for (const BatchStop& stop : stops) spdlog::warn("{}", describe(stop));
      return store;
    } catch (const sql::Error& e) {
      if (!is_lock_conflict(e.code())) throw;
      if (!said) {
        spdlog::warn("{}: another process holds the database's write lock; waiting for it",
                     e.what());
        said = true;
      }
      // The daemon's handlers are not in place yet: signals are held (process_signals).
      if (int signo = take_stop_signal(std::chrono::milliseconds(500))) {
        spdlog::info("signal {} while waiting for the database's write lock: stopping", signo);
        return nullptr;
      }
    }
  }
}

}  // namespace

void keep_freed_memory() {
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
}

OpenedStore open_store(const Config& config) {
  OpenedStore out;
  try {
    int requeued = 0;
    std::unique_ptr<JobStore> store = open_waiting(config, requeued);
    if (!store) return out;  // stopped before it started: exit 0
    out.paused = store->batch_controls().paused();
    out.endings = store->endings();
    spdlog::info("database {} at schema version {}{}", config.queue.database,
                 store->schema_version(),
                 requeued ? fmt::format("; {} interrupted jobs back in the queue", requeued) : "");
    out.db = std::make_unique<DbWorker>(std::move(store));
  } catch (const sql::Error& e) {
    if (is_malformed_database(e.code())) {
      spdlog::critical(
          "the database {} is malformed ({}): kpsd cannot use it; restore it from a backup or "
          "move it aside",
          config.queue.database, e.what());
      out.exit_code = exit_data_err;
      return out;
    }
    spdlog::critical("{}", e.what());
    out.exit_code = exit_cant_create;
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    out.exit_code = exit_cant_create;
  }
  return out;
}

StatusReporter::StatusReporter(net::io_context& io, DbWorker& db, Scheduler& scheduler,
                               SdNotifier& systemd)
    : io_(io),
      db_(db),
      scheduler_(scheduler),
      systemd_(systemd),
      timer_(io),
      interval_(std::min<std::chrono::milliseconds>(
          std::chrono::duration_cast<std::chrono::milliseconds>(
              systemd.watchdog_interval().value_or(std::chrono::seconds(5))),
          std::chrono::seconds(5))) {}

void StatusReporter::start() {
  if (!systemd_.enabled()) return;
  net::co_spawn(io_, loop(),
                [](std::exception_ptr e) { log_exception("status reporting stopped", e); });
}

void StatusReporter::report_now() {
  if (!systemd_.enabled() || finished_) return;
  net::co_spawn(io_, report(),
                [](std::exception_ptr e) { log_exception("status reporting stopped", e); });
}

void StatusReporter::finish() {
  finished_ = true;
  timer_.cancel();
}

net::awaitable<void> StatusReporter::loop() {
  while (!finished_) {
    co_await report();
    timer_.expires_after(interval_);
    co_await timer_.async_wait(net::as_tuple(net::use_awaitable));
  }
}

net::awaitable<void> StatusReporter::report() {
  Overview o;
  try {
    auto read = co_await db_.call([](JobQueries& s) {
      return std::pair{s.count_by_state(), s.paused_batches()};
    });
    o.counts = std::move(read.first);
    o.paused_batches = std::move(read.second);
  } catch (const std::exception& e) {
    o.read_problem = *e.what() ? e.what() : "read failed";
    spdlog::debug("status: {}", e.what());
  }
  if (finished_) co_return;
  o.scheduler = scheduler_.stats();
  // One assignment, whatever a blocked reason (text from IAM or a proxy) holds: a newline in it
  // would be read by systemd as another (STOPPING=1, MAINPID=...), and a long one would not fit
  // the datagram that also carries WATCHDOG=1 (issue 31).
  std::string msg = printable_capped(status_line(o, stopping_), 1024);
  if (systemd_.watchdog_interval()) msg += "\nWATCHDOG=1";
  systemd_.notify(msg);
}

WallClockWatch::WallClockWatch(net::io_context& io) : io_(io), timer_(io) {}

void WallClockWatch::start() {
  net::co_spawn(io_, loop(),
                [](std::exception_ptr e) { log_exception("wall clock watch stopped", e); });
}

void WallClockWatch::stop() {
  stopped_ = true;
  timer_.cancel();
}

net::awaitable<void> WallClockWatch::loop() {
  while (!stopped_) {
    std::int64_t step = wall_clock_step_ms();
    if (report_.should_report(step)) {
      if (std::llabs(step) < 2000) {
        spdlog::info("the wall clock is back in step with kpsd's clock");
      } else {
        spdlog::warn(
            "the wall clock stepped {} by {} ms since kpsd started; waits, deadlines and poll "
            "timeouts run on the monotonic clock and did not move; the times kpsd records are "
            "{} the wall clock by that much until it restarts",
            step > 0 ? "forward" : "back", std::llabs(step), step > 0 ? "behind" : "ahead of");
      }
    }
    timer_.expires_after(std::chrono::seconds(1));  // one clock read a second
    co_await timer_.async_wait(net::as_tuple(net::use_awaitable));
  }
}

StopSequence::StopSequence(net::io_context& io, Scheduler& scheduler, StatusReporter& status,
                           SdNotifier& systemd, std::chrono::milliseconds drain_grace,
                           std::function<void()> on_reload)
    : scheduler_(scheduler),
      status_(status),
      systemd_(systemd),
      drain_grace_(drain_grace),
      on_reload_(std::move(on_reload)),
      signals_(io, SIGTERM, SIGINT, SIGHUP),
      grace_(io) {}

void StopSequence::start() {
  signals_.async_wait([this](const auto& ec, int signo) { on_signal(ec, signo); });
}

void StopSequence::cancel() {
  signals_.cancel();
  grace_.cancel();
}

void StopSequence::cancel_in_flight(std::string_view why) {
  auto in_flight = scheduler_.stats().in_flight;
  if (in_flight > 0) spdlog::warn("{}: cancelling {} calls in flight", why, in_flight);
  scheduler_.abort();
}

void StopSequence::on_signal(const boost::system::error_code& ec, int signo) {
  if (ec) return;
  if (signo == SIGHUP) {
    on_reload_();
    start();
    return;
  }
  ++stop_signals_;
  if (stop_signals_ == 1) {
    spdlog::info("signal {}: stopping; calls in flight get up to {} ms to finish", signo,
                 drain_grace_.count());
    status_.set_stopping();
    systemd_.notify("STOPPING=1\nSTATUS=stopping: finishing calls in flight");
    scheduler_.stop();
    grace_.expires_after(drain_grace_);
    grace_.async_wait([this](const boost::system::error_code& gec) {
      if (!gec) cancel_in_flight("grace period over");
    });
  } else if (stop_signals_ == 2) {
    cancel_in_flight("signal " + std::to_string(signo) + " again");
  } else {
    // Like a crash, and as safe: every committed transition stands, and calls whose outcome
    // was not recorded become "outcome lost" attempts at the next start. No destructor runs,
    // so no coroutine can outlive what it uses.
    spdlog::warn("signal {} a third time: exiting now", signo);
    spdlog::default_logger()->flush();
    std::_Exit(exit_ok);
  }
  start();
}

}  // namespace kpsd
