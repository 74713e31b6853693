#pragma once
// What the job store's tests share (tests/unit/test_job_store_*.cpp): SQL run from a second
// connection as sqlite3 would, and the outcomes the scheduler would record.
#include "core/clock.hpp"
#include "scheduling/job_policy.hpp"
#include "store/db_worker.hpp"
#include "store/job_store.hpp"
#include "store/migrations.hpp"
#include "store/sqlite.hpp"
#include "temp_dir.hpp"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <chrono>
#include <limits>
#include <sys/stat.h>
#include <thread>

namespace kpsd::test {

using namespace std::chrono_literals;

// Runs SQL on a second connection, as `sqlite3` or another process would.
inline void external_exec(const std::string& path, const std::string& text) {
  sql::Database db(path);
  db.exec("PRAGMA busy_timeout = 5000");
  db.exec(text);
}

inline std::int64_t external_int(const std::string& path, const std::string& query) {
  sql::Database db(path);
  sql::Statement s(db, query);
  REQUIRE(s.step());
  return s.column_int(0);
}

inline NewJob job(std::string id) { return NewJob{std::move(id), std::nullopt, std::nullopt}; }

inline AttemptFinish finish(const DeliveryWork& w, JobState next, std::int64_t at) {
  AttemptFinish f;
  f.job_id = w.job_id;
  f.attempt_n = w.attempt_n;
  f.finished_at = at;
  f.latency_ms = 12;
  f.http_status = 202;
  f.request_id = "req-1";
  f.task_id = "task-1";
  f.delivery_status = "SUCCESS";
  f.next_state = next;
  f.next_attempt_at = at + 100;
  return f;
}

inline PollFinish poll_finish(std::int64_t id, std::int64_t at, std::string status, JobState next,
                              std::int64_t next_at) {
  PollFinish f;
  f.job_id = id;
  f.at = at;
  f.task_status = std::move(status);
  f.next_state = next;
  f.next_attempt_at = next_at;
  return f;
}

inline std::int64_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

// 1,000 jobs enqueued, claimed and delivered: three transactions of many pages each.
inline void run_thousand_jobs(JobStore& store, int round) {
  std::vector<NewJob> jobs;
  for (int i = 0; i < 1000; ++i) jobs.push_back(job("wal-" + std::to_string(round * 1000 + i)));
  store.commands().enqueue(jobs, 0);
  std::vector<AttemptFinish> done;
  for (const DeliveryWork& w : store.work_queue().claim_for_delivery(1, 1000)) {
    AttemptFinish f;
    f.job_id = w.job_id;
    f.attempt_n = w.attempt_n;
    f.finished_at = 2;
    f.http_status = 202;
    f.task_id = "task-" + std::to_string(w.job_id);
    f.next_state = JobState::delivered;
    f.next_attempt_at = 3;
    done.push_back(f);
  }
  store.work_queue().finish_attempts(done);
}

}  // namespace kpsd::test
