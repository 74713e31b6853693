// The operator's writes: enqueue (into a batch), retry and cancel, each in one transaction.
// See job_commands.hpp.
#include "store/job_commands.hpp"

#include "core/secret_box.hpp"
#include "store/brake_room.hpp"
#include "store/job_retry.hpp"
#include "store/sqlite.hpp"
#include "store/store_connection.hpp"

#include <cstdint>
#include <memory>
#include <unordered_map>

namespace kpsd {

namespace {

// INSERT of `rows` new jobs in one statement, answering each row's id and server id. One
// statement per many rows: with AUTOINCREMENT (ids never reused, 0008) SQLite writes
// sqlite_sequence once per statement, which per row doubled a million-job enqueue.
std::string insert_rows_sql(std::size_t rows) {
  std::string sql =
      "INSERT INTO jobs (server_id, state, next_attempt_at, created_at, updated_at, port, "
      "auth_type, batch_id) VALUES ";
  for (std::size_t r = 0; r < rows; ++r) {
    std::size_t p = 3 + 3 * r;  // ?1 now, ?2 batch, then server, port, auth type per row
    sql += (r ? ", (?" : "(?") + std::to_string(p) + ", 'queued', ?1, ?1, ?1, ?" +
           std::to_string(p + 1) + ", ?" + std::to_string(p + 2) + ", ?2)";
  }
  return sql + " RETURNING id, server_id";
}

}  // namespace

struct JobCommands::Statements {
  explicit Statements(sql::Database& db)
      : find_active_by_server(db,
                              // One seek in jobs_one_unfinished (0008).
                              "SELECT id, batch_id FROM jobs WHERE server_id = ?1 "
                              "AND one_unfinished = 0 LIMIT 1"),
        insert_jobs(db, insert_rows_sql(100)),
        insert_secret(db, "INSERT INTO job_secrets (job_id, key) VALUES (?1, ?2)"),
        // A canary batch starts paused by its canary: its first jobs run, the others are held.
        insert_batch(db,
                     "INSERT INTO batches (name, created_at, canary, max_failures, "
                     "max_failure_pct, paused_reason, paused_at) VALUES (?1, ?2, ?3, ?4, ?5, "
                     "CASE WHEN ?3 IS NULL THEN NULL ELSE 'canary' END, "
                     "CASE WHEN ?3 IS NULL THEN NULL ELSE ?2 END)"),
        batch_by_id(db, "SELECT id, name, created_at FROM batches WHERE id = ?1"),
        batch_by_name(db, "SELECT id, name, created_at FROM batches WHERE name = ?1"),
        add_to_batch(db, "INSERT OR IGNORE INTO batch_jobs (batch_id, job_id) VALUES (?1, ?2)"),
        extend_batch(db,
                     "UPDATE batches SET first_job_id = min(coalesce(first_job_id, ?2), ?2), "
                     "last_job_id = max(coalesce(last_job_id, ?3), ?3) WHERE id = ?1"),
        ids_in_state(db, "SELECT id FROM jobs WHERE state = ?1 ORDER BY id"),
        cancel_job(db,
                   "UPDATE jobs SET state = 'cancelled', updated_at = ?2, "
                   "error_msg = 'cancelled by the operator' WHERE id = ?1 AND state IN "
                   "('queued','running','retrying','delivered')"),
        job_exists(db, "SELECT 1 FROM jobs WHERE id = ?1"),
        retry(db),
        active_id(find_active_by_server.column_index("id")),
        active_batch_id(find_active_by_server.column_index("batch_id")) {}
  sql::Statement find_active_by_server, insert_jobs, insert_secret, insert_batch, batch_by_id,
      batch_by_name, add_to_batch, extend_batch, ids_in_state, cancel_job, job_exists;
  JobRetry retry;
  int active_id, active_batch_id;  // find_active_by_server's columns, by name
};

JobCommands::JobCommands(StoreConnection& connection, BrakeRoom& brakes)
    : connection_(connection),
      brakes_(brakes),
      sql_(std::make_unique<Statements>(connection.db())) {}

JobCommands::~JobCommands() = default;

std::vector<EnqueueResult> JobCommands::enqueue(std::span<const NewJob> jobs, std::int64_t now) {
  return enqueue(jobs, now, BatchTarget{}).jobs;
}

// The batch an enqueue adds to: an existing one (batch.id) or a new one (named or not, with
// its brakes), inside the caller's transaction: its id, or why not.
Result<std::int64_t> JobCommands::open_batch(const BatchTarget& batch, std::int64_t now) {
  if (batch.id) {
    auto& find = sql_->batch_by_id;
    find.bind(1, *batch.id);
    bool found = find.step();
    find.reset();
    if (!found) return fail("no batch " + std::to_string(*batch.id));
    return *batch.id;
  }
  if (batch.name) {
    auto& find = sql_->batch_by_name;
    find.bind(1, std::string_view(*batch.name));
    if (find.step()) {
      std::string taken = "batch name `" + *batch.name + "` is taken (batch " +
                          std::to_string(find.column_int(0)) + "); choose another";
      find.reset();
      return fail(std::move(taken));
    }
    find.reset();
  }
  sql_->insert_batch.bind(1, batch.name)
      .bind(2, now)
      .bind(3, batch.brakes.canary)
      .bind(4, batch.brakes.max_failures)
      .bind_double(5, batch.brakes.max_failure_pct)
      .run();
  return connection_.db().last_insert_rowid();
}

EnqueueBatchResult JobCommands::enqueue(std::span<const NewJob> jobs, std::int64_t now,
                                        const BatchTarget& batch) {
  EnqueueBatchResult out;
  out.jobs.reserve(jobs.size());
  sql::Transaction tx(connection_.db());
  auto opened = open_batch(batch, now);
  if (!opened) {
    out.error = opened.error().message;
    return out;
  }
  out.batch_id = *opened;
  // Each job: an unfinished job of its server (it joins this batch), an earlier line of this
  // call (the same new job), or a new row. New rows go in by insert_rows, many per statement.
  std::vector<const NewJob*> fresh;
  std::unordered_map<std::string_view, std::size_t> fresh_index;  // server → index in `fresh`
  std::vector<std::size_t> fresh_of(jobs.size(), SIZE_MAX);       // job → index in `fresh`
  std::vector<std::int64_t> joined;  // unfinished jobs of other batches that join this one
  out.jobs.resize(jobs.size());
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const NewJob& job = jobs[i];
    if (auto it = fresh_index.find(job.server_id); it != fresh_index.end()) {
      fresh_of[i] = it->second;
      continue;
    }
    auto& find = sql_->find_active_by_server;
    find.bind(1, std::string_view(job.server_id));
    if (find.step()) {
      out.jobs[i] = {find.column_int(sql_->active_id), true};
      bool same_batch = find.column_optional_int(sql_->active_batch_id) == out.batch_id;
      find.reset();
      // Already queued by another batch (or by plain SQL): it joins this one too.
      if (!same_batch) {
        sql_->add_to_batch.bind(1, out.batch_id).bind(2, out.jobs[i].id).run();
        joined.push_back(out.jobs[i].id);
      }
      continue;
    }
    find.reset();
    fresh_index.emplace(job.server_id, fresh.size());
    fresh_of[i] = fresh.size();
    fresh.push_back(&job);
  }
  std::vector<std::int64_t> ids = insert_rows(fresh, now, out.batch_id);
  std::optional<std::int64_t> first_created, last_created;
  std::vector<bool> reported(fresh.size(), false);
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    if (fresh_of[i] == SIZE_MAX) continue;
    std::int64_t id = ids[fresh_of[i]];
    out.jobs[i] = {id, reported[fresh_of[i]]};  // a repeated line names the job it made
    reported[fresh_of[i]] = true;
    if (!first_created || id < *first_created) first_created = id;
    if (!last_created || id > *last_created) last_created = id;
  }
  if (first_created) {
    sql_->extend_batch.bind(1, out.batch_id).bind(2, *first_created).bind(3, *last_created).run();
  }
  // A canary's or a paused batch's new jobs are held before anything can claim them.
  brakes_.hold_new_jobs(out.batch_id, first_created.value_or(1), last_created.value_or(0), joined);
  tx.commit();
  return out;
}

// New jobs (servers without an unfinished job, each once), and their secrets; their ids, in the
// order of `fresh`.
std::vector<std::int64_t> JobCommands::insert_rows(const std::vector<const NewJob*>& fresh,
                                                   std::int64_t now, std::int64_t batch_id) {
  std::vector<std::int64_t> ids(fresh.size());
  std::unordered_map<std::string_view, std::size_t> index;  // server → position in `fresh`
  for (std::size_t i = 0; i < fresh.size(); ++i) index.emplace(fresh[i]->server_id, i);
  constexpr std::size_t per_statement = 100;
  std::unique_ptr<sql::Statement> tail;  // the last, shorter statement
  for (std::size_t start = 0; start < fresh.size(); start += per_statement) {
    std::size_t n = std::min(per_statement, fresh.size() - start);
    if (n != per_statement)
      tail = std::make_unique<sql::Statement>(connection_.db(), insert_rows_sql(n));
    sql::Statement& ins = n == per_statement ? sql_->insert_jobs : *tail;
    ins.bind(1, now).bind(2, batch_id);
    for (std::size_t r = 0; r < n; ++r) {
      const NewJob& job = *fresh[start + r];
      int p = static_cast<int>(3 + 3 * r);
      ins.bind(p, std::string_view(job.server_id))
          .bind(p + 1, job.port)
          .bind(p + 2, job.auth ? std::optional<std::string>(job.auth->type) : std::nullopt);
    }
    // RETURNING's order is not promised: each row is matched by its server id (unique here).
    int id_column = ins.column_index("id"), server_column = ins.column_index("server_id");
    while (ins.step()) ids[index.at(ins.column_text(server_column))] = ins.column_int(id_column);
    ins.reset();
  }
  for (std::size_t i = 0; i < fresh.size(); ++i) {
    if (const auto& auth = fresh[i]->auth)
      sql_->insert_secret.bind(1, ids[i])
          .bind_blob(2, connection_.box().seal(auth->key.reveal()))
          .run();
  }
  return ids;
}

RetryOutcome JobCommands::retry(std::int64_t id, std::int64_t now, std::int64_t* unfinished_job) {
  sql::Transaction tx(connection_.db());
  RetryOutcome o = sql_->retry.retry_one(id, now, unfinished_job);
  tx.commit();
  return o;
}

std::map<RetryOutcome, std::int64_t> JobCommands::retry_all(JobState state, std::int64_t now) {
  std::map<RetryOutcome, std::int64_t> counts;
  sql::Transaction tx(connection_.db());
  std::vector<std::int64_t> ids;
  auto& sel = sql_->ids_in_state;
  sel.bind(1, to_string(state));
  while (sel.step()) ids.push_back(sel.column_int(0));
  sel.reset();
  for (std::int64_t id : ids) {
    ++counts[sql_->retry.retry_one(id, now, nullptr)];
  }
  tx.commit();
  return counts;
}

CancelOutcome JobCommands::cancel(std::int64_t id, std::int64_t now) {
  sql::Transaction tx(connection_.db());
  sql_->cancel_job.bind(1, id).bind(2, now).run();
  CancelOutcome o = CancelOutcome::cancelled;
  if (connection_.db().changes() == 0) {
    auto& e = sql_->job_exists;
    e.bind(1, id);
    o = e.step() ? CancelOutcome::already_ended : CancelOutcome::not_found;
    e.reset();
  }
  int deleted = 0;
  if (o == CancelOutcome::cancelled) {
    connection_.note_ended(JobState::cancelled, 1);
    deleted = connection_.delete_secret(id);  // a terminal job keeps no key
    std::int64_t ended[] = {id};
    brakes_.apply(ended, now);  // it may be its canary's last unfinished job
  }
  tx.commit();
  if (deleted) connection_.scrub_wal();
  return o;
}

}  // namespace kpsd
