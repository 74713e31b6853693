#pragma once
// Named parts of kpsd's start and run (run_daemon reads as a short script of them): opening
// the job store with its error-to-exit-code mapping, and the systemd status reporter. I/O glue
// around the store and sd_notify: covered end to end (start-up faults, sd_notify, watchdog).
#include "config/config.hpp"
#include "core/clock.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <memory>

namespace kpsd {

class DbWorker;
class JobEndings;
class Scheduler;
class SdNotifier;

// glibc's allocator, told to keep freed memory: by default a thread's heap gives back what is
// freed above 128 KiB at its top (madvise) at once, and SQLite's per-transaction allocations on
// the DB thread cross that line at every commit, so each commit faults the pages in again.
// Measured (tests/bench/raw.sh 50000): in about half the runs 1,000-1,500 jobs/s at ~670 us of
// CPU per job, mostly in madvise; with these thresholds fixed, 11,000-12,000 jobs/s at 66-72 us.
// Memory is then given back only past 256 MiB free at the top; blocks up to 32 MiB come from
// the heap (kpsd's peak RSS is ~16 MiB either way).
void keep_freed_memory();

// The job store, opened and recovered: jobs left `running` by a stop go back to the queue.
// Another writer holding the lock (an sqlite3 shell) is waited for, said once. On failure
// `exit_code` is set (logged as one line): 65 for a malformed file, 73 for anything else.
struct OpenedStore {
  std::unique_ptr<DbWorker> db;
  std::shared_ptr<const JobEndings> endings;  // the store's count of jobs it ended
  bool paused = false;                        // kpsctl pause was in effect when kpsd stopped
  int exit_code = 0;
};
OpenedStore open_store(const Config& config);

// STATUS= for `systemctl status`, and WATCHDOG=1 when WatchdogSec= asks for it: both from one
// loop on the network thread (every 5 s, or the watchdog's interval if shorter), so a stuck
// network thread also stops the keep-alives. A store that cannot be read still gets a status
// line. Does nothing outside systemd.
class StatusReporter {
 public:
  StatusReporter(boost::asio::io_context& io, DbWorker& db, Scheduler& scheduler,
                 SdNotifier& systemd);
  void start();       // the periodic loop (under systemd only)
  void report_now();  // at once (a store outage or recovery)
  void set_stopping() { stopping_ = true; }
  void finish();  // no more reports; the loop ends

 private:
  boost::asio::awaitable<void> report();
  boost::asio::awaitable<void> loop();

  boost::asio::io_context& io_;
  DbWorker& db_;
  Scheduler& scheduler_;
  SdNotifier& systemd_;
  boost::asio::steady_timer timer_;
  std::chrono::milliseconds interval_;
  bool stopping_ = false;
  bool finished_ = false;
};

// Says once per step when the wall clock has stepped away from kpsd's time (clock.hpp), every
// second on the network thread: waits and deadlines do not move, but the times kpsd records now
// differ from the wall clock until it restarts, and an operator comparing them should know.
class WallClockWatch {
 public:
  explicit WallClockWatch(boost::asio::io_context& io);
  void start();
  void stop();  // the loop ends (the scheduler has ended)

 private:
  boost::asio::awaitable<void> loop();

  boost::asio::io_context& io_;
  boost::asio::steady_timer timer_;
  ClockStepReport report_;
  bool stopped_ = false;
};

// The stop sequence, in three steps: the first SIGTERM/SIGINT stops new calls and lets those
// in flight finish for queue.drain_grace_ms; the end of the grace or a second signal cancels
// what is left (those jobs go back to `queued`); a third signal exits at once (as safe as a
// crash). SIGHUP calls `on_reload`.
class StopSequence {
 public:
  StopSequence(boost::asio::io_context& io, Scheduler& scheduler, StatusReporter& status,
               SdNotifier& systemd, std::chrono::milliseconds drain_grace,
               std::function<void()> on_reload);
  void start();
  void cancel();  // the scheduler has ended: no more signals or grace

 private:
  void on_signal(const boost::system::error_code& ec, int signo);
  void cancel_in_flight(std::string_view why);

  Scheduler& scheduler_;
  StatusReporter& status_;
  SdNotifier& systemd_;
  std::chrono::milliseconds drain_grace_;
  std::function<void()> on_reload_;
  boost::asio::signal_set signals_;
  boost::asio::steady_timer grace_;
  int stop_signals_ = 0;
};

}  // namespace kpsd
