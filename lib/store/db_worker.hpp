#pragma once
// The DB thread: owns the JobStore and runs every store call on its own thread, so SQLite
// (fsync on commit, busy waits) never blocks the network thread. Coroutines on the network
// thread `co_await db.call(...)` and resume on their own executor with the result; each call
// reaches only the rooms it names (job_store.hpp), never the whole store.
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

namespace db_worker_detail {

// A DbWorker::call lambda's operator(): the rooms it takes, and how to call it with them.
template <class Member>
struct RoomsOf;

template <class Lambda, class R, class... Rooms>
struct RoomsOf<R (Lambda::*)(Rooms...) const> {
  static_assert((std::is_lvalue_reference_v<Rooms> && ...) &&
                    (is_store_room_v<std::remove_cvref_t<Rooms>> && ...),
                "a DbWorker::call lambda takes rooms by reference: WorkQueue&, JobCommands&, "
                "JobQueries&, BatchControls& or Pruning&");
  using Result = R;
  template <class Fn>
  static R invoke(Fn& fn, JobStore& store) {
    return fn(store.room<std::remove_cvref_t<Rooms>>()...);
  }
};

template <class Lambda, class R, class... Rooms>
struct RoomsOf<R (Lambda::*)(Rooms...)> : RoomsOf<R (Lambda::*)(Rooms...) const> {};
template <class Lambda, class R, class... Rooms>
struct RoomsOf<R (Lambda::*)(Rooms...) const noexcept> : RoomsOf<R (Lambda::*)(Rooms...) const> {};
template <class Lambda, class R, class... Rooms>
struct RoomsOf<R (Lambda::*)(Rooms...) noexcept> : RoomsOf<R (Lambda::*)(Rooms...) const> {};

}  // namespace db_worker_detail

class DbWorker {
 public:
  // Every `wal_trim_period` on the DB thread, between calls: JobStore::trim_wal(), so a WAL
  // grown past its bound while a reader held it shrinks back even when nothing is written.
  explicit DbWorker(std::unique_ptr<JobStore> store,
                    std::chrono::milliseconds wal_trim_period = std::chrono::seconds(15));
  ~DbWorker();  // finishes queued calls, then joins
  DbWorker(const DbWorker&) = delete;
  DbWorker& operator=(const DbWorker&) = delete;

  // Runs `f` on the DB thread with the store's rooms its parameters name, and completes on the
  // awaiting coroutine's executor with what it returns: `db.call([](WorkQueue& q) {...})` gets
  // the work queue and nothing else; `[](JobCommands& c, JobQueries& q)` gets both (a room per
  // parameter, each a reference to WorkQueue, JobCommands, JobQueries, BatchControls or
  // Pruning; `f` must not be generic). Exceptions thrown by `f` (sql::Error from a room) rethrow
  // in the caller. Written with async_initiate rather than as a coroutine: GCC 12 destroys some
  // temporaries of a co_await expression twice, and a coroutine here would put the caller's
  // lambda in exactly such a temporary.
  template <class F>
  auto call(F f) {
    using Rooms = db_worker_detail::RoomsOf<decltype(&F::operator())>;
    using R = typename Rooms::Result;
    auto in_rooms = [fn = std::move(f)](JobStore& s) mutable { return Rooms::invoke(fn, s); };
    using G = decltype(in_rooms);
    if constexpr (std::is_void_v<R>) {
      return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>,
                                         void(std::exception_ptr)>(
          [this](auto handler, G fn) {
            start<true>(std::move(handler), [fn = std::move(fn)](JobStore& s) mutable {
              fn(s);
              return 0;
            });
          },
          boost::asio::use_awaitable, std::move(in_rooms));
    } else {
      return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>,
                                         void(std::exception_ptr, R)>(
          [this](auto handler, G fn) { start<false>(std::move(handler), std::move(fn)); },
          boost::asio::use_awaitable, std::move(in_rooms));
    }
  }

  // The database's schema version, read when it was opened (it does not change while it runs).
  int schema_version() const noexcept { return schema_version_; }

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
  int schema_version_ = 0;
  boost::asio::io_context context_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::chrono::milliseconds wal_trim_period_;
  boost::asio::steady_timer wal_trim_;
  bool wal_trim_stopped_ = false;  // DB thread only
  std::thread thread_;
};

}  // namespace kpsd
