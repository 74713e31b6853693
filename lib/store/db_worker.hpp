#pragma once
// The DB thread: owns the JobStore and runs every store call on its own thread, so SQLite
// (fsync on commit, busy waits) never blocks the network thread. Coroutines on the network
// thread `co_await db.call(...)` and resume on their own executor with the result.
#include "store/job_store.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <memory>
#include <thread>
#include <type_traits>

namespace kpsd {

class DbWorker {
 public:
  // Every `wal_trim_period` on the DB thread, between calls: JobStore::trim_wal(), so a WAL
  // grown past its bound while a reader held it shrinks back even when nothing is written.
  explicit DbWorker(std::unique_ptr<JobStore> store,
                    std::chrono::milliseconds wal_trim_period = std::chrono::seconds(15));
  ~DbWorker();  // finishes queued calls, then joins
  DbWorker(const DbWorker&) = delete;
  DbWorker& operator=(const DbWorker&) = delete;

  // Runs `f(store)` on the DB thread and completes on the awaiting coroutine's executor.
  // Exceptions thrown by `f` rethrow in the caller. Written with async_initiate rather than as
  // a coroutine: GCC 12 destroys some temporaries of a co_await expression twice, and a
  // coroutine here would put the caller's lambda in exactly such a temporary.
  template <class F>
  auto call(F f) {
    using R = std::invoke_result_t<F&, JobStore&>;
    if constexpr (std::is_void_v<R>) {
      return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>,
                                         void(std::exception_ptr)>(
          [this](auto handler, F fn) {
            start<true>(std::move(handler), [fn = std::move(fn)](JobStore& s) mutable {
              fn(s);
              return 0;
            });
          },
          boost::asio::use_awaitable, std::move(f));
    } else {
      return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>,
                                         void(std::exception_ptr, R)>(
          [this](auto handler, F fn) { start<false>(std::move(handler), std::move(fn)); },
          boost::asio::use_awaitable, std::move(f));
    }
  }

 private:
  template <bool void_result, class Handler, class Fn>
  void start(Handler handler, Fn fn) {
    auto work = boost::asio::make_work_guard(handler);
    boost::asio::post(context_, [this, fn = std::move(fn), handler = std::move(handler),
                                 work = std::move(work)]() mutable {
      std::exception_ptr error;
      std::invoke_result_t<Fn&, JobStore&> result{};
      try {
        result = fn(*store_);
      } catch (...) {
        error = std::current_exception();
      }
      auto executor = work.get_executor();
      boost::asio::post(
          executor, [handler = std::move(handler), error, result = std::move(result)]() mutable {
            if constexpr (void_result) {
              std::move(handler)(error);
            } else {
              std::move(handler)(error, std::move(result));
            }
          });
    });
  }

  void schedule_wal_trim();

  std::unique_ptr<JobStore> store_;
  boost::asio::io_context context_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::chrono::milliseconds wal_trim_period_;
  boost::asio::steady_timer wal_trim_;
  bool wal_trim_stopped_ = false;  // DB thread only
  std::thread thread_;
};

}  // namespace kpsd
