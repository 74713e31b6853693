#include "store/db_worker.hpp"

#include <spdlog/spdlog.h>

namespace kpsd {

DbWorker::DbWorker(std::unique_ptr<JobStore> store, std::chrono::milliseconds wal_trim_period)
    : store_(std::move(store)),
      schema_version_(store_->schema_version()),
      context_(1),
      work_(context_.get_executor()),
      wal_trim_period_(wal_trim_period),
      wal_trim_(context_) {
  schedule_wal_trim();
  thread_ = std::thread([this] {
    // Calls report their own exceptions to their awaiter; anything escaping here is a bug.
    try {
      context_.run();
    } catch (const std::exception& e) {
      spdlog::critical("database thread stopped: {}", e.what());
      std::terminate();
    }
  });
}

DbWorker::~DbWorker() {
  // The timer would keep the DB thread's context alive: cancel it on that thread.
  boost::asio::post(context_, [this] {
    wal_trim_stopped_ = true;
    wal_trim_.cancel();
  });
  work_.reset();
  thread_.join();
}

void DbWorker::schedule_wal_trim() {
  wal_trim_.expires_after(wal_trim_period_);
  wal_trim_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || wal_trim_stopped_) return;  // the worker is stopping
    try {
      store_->trim_wal();
    } catch (const std::exception& e) {
      spdlog::debug("trimming the WAL: {}", e.what());  // tried again next period
    }
    schedule_wal_trim();
  });
}

}  // namespace kpsd
