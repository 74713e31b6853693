#pragma once
// The status page and its JSON, beside /metrics on [metrics] listen: the embedded page (/,
// /static/...) and /api/overview, /api/failures, /api/jobs/ID. Read-only: nothing here changes
// a job. Store reads run on the DB thread through DbWorker, each a bounded query (a page of
// jobs, job_counts, a batch's counts no more often than they cost to make).
#include "store/db_worker.hpp"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kpsd {

class Scheduler;
struct Metrics;
struct Batch;

struct WebAnswer {
  unsigned status = 200;
  std::string content_type;
  std::string body;
  bool is_page = false;  // a file of the page (cacheable briefly); otherwise API JSON (no-store)
};

// "a=1&b=x%20y" -> {a: 1, b: "x y"}; '+' is a space. Later keys replace earlier ones.
std::map<std::string, std::string> parse_query(std::string_view query);

class StatusApi {
 public:
  StatusApi(DbWorker& db, Scheduler& scheduler, const Metrics& metrics);
  // The answer to GET `target` (path and query), or nullopt when it is none of the page's.
  boost::asio::awaitable<std::optional<WebAnswer>> get(std::string target);

 private:
  boost::asio::awaitable<WebAnswer> overview();
  boost::asio::awaitable<WebAnswer> failures(const std::map<std::string, std::string>& query);
  boost::asio::awaitable<WebAnswer> job(std::int64_t id);

  DbWorker& db_;
  Scheduler& scheduler_;
  const Metrics& metrics_;
  // The newest batches with their counts: counting a big batch walks its rows, so the counts
  // are made again no more often than every 3 s or 50 times what they took (<= 2 % of the DB
  // thread), however many browsers poll.
  std::vector<Batch> batches_;
  std::chrono::steady_clock::time_point batches_at_{};
  std::chrono::steady_clock::duration batches_took_{};
};

}  // namespace kpsd
