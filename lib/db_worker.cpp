#include "db_worker.hpp"

#include <spdlog/spdlog.h>

namespace kpsd {

DbWorker::DbWorker(std::unique_ptr<JobStore> store)
    : store_(std::move(store)), context_(1), work_(context_.get_executor()) {
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
  work_.reset();
  thread_.join();
}

}  // namespace kpsd
