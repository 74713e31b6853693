// The operator's writes: enqueue (into a batch), retry and cancel, each in one transaction.
// See job_store_rooms.hpp.
#include "job_store.hpp"
#include "job_store_rooms.hpp"

namespace kpsd {

JobStore::Commands::Commands(sql::Database& db)
    : find_active_by_server(db,
                            "SELECT id, batch_id FROM jobs WHERE server_id = ?1 AND state IN "
                            "('queued','running','retrying','delivered') LIMIT 1"),
      insert_job(db,
                 "INSERT INTO jobs (server_id, state, next_attempt_at, created_at, updated_at, "
                 "port, auth_type, batch_id) VALUES (?1, 'queued', ?2, ?2, ?2, ?3, ?4, ?5)"),
      insert_secret(db, "INSERT INTO job_secrets (job_id, key) VALUES (?1, ?2)"),
      insert_batch(db, "INSERT INTO batches (name, created_at) VALUES (?1, ?2)"),
      batch_by_id(db, "SELECT id, name, created_at FROM batches WHERE id = ?1"),
      batch_by_name(db, "SELECT id, name, created_at FROM batches WHERE name = ?1"),
      add_to_batch(db, "INSERT OR IGNORE INTO batch_jobs (batch_id, job_id) VALUES (?1, ?2)"),
      extend_batch(db,
                   "UPDATE batches SET first_job_id = min(coalesce(first_job_id, ?2), ?2), "
                   "last_job_id = max(coalesce(last_job_id, ?3), ?3) WHERE id = ?1"),
      retry_target(db,
                   "SELECT state, auth_type IS NOT NULL AND NOT EXISTS "
                   "(SELECT 1 FROM job_secrets s WHERE s.job_id = jobs.id), "
                   "task_id IS NOT NULL AND (coalesce(error_msg, '') LIKE 'task still pending%' "
                   "OR coalesce(error_msg, '') LIKE 'cannot follow task%'), "
                   "EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = jobs.id "
                   "AND a.finished_at IS NULL) "
                   "FROM jobs WHERE id = ?1"),
      requeue_job(db,
                  "UPDATE jobs SET state = 'queued', attempts = 0, next_attempt_at = ?2, "
                  "error_code = NULL, error_msg = NULL, updated_at = ?2 WHERE id = ?1"),
      recheck_job(db,
                  "UPDATE jobs SET state = 'delivered', next_attempt_at = ?2, delivered_at = ?2, "
                  "poll_refusals = 0, error_code = NULL, error_msg = NULL, updated_at = ?2 "
                  "WHERE id = ?1"),
      ids_in_state(db, "SELECT id FROM jobs WHERE state = ?1 ORDER BY id"),
      cancel_job(db,
                 "UPDATE jobs SET state = 'cancelled', updated_at = ?2, "
                 "error_msg = 'cancelled by the operator' WHERE id = ?1 AND state IN "
                 "('queued','running','retrying','delivered')"),
      job_exists(db, "SELECT 1 FROM jobs WHERE id = ?1") {}

std::vector<EnqueueResult> JobStore::enqueue(std::span<const NewJob> jobs, std::int64_t now) {
  return enqueue(jobs, now, BatchTarget{}).jobs;
}

EnqueueBatchResult JobStore::enqueue(std::span<const NewJob> jobs, std::int64_t now,
                                     const BatchTarget& batch) {
  EnqueueBatchResult out;
  out.jobs.reserve(jobs.size());
  sql::Transaction tx(*db_);
  if (batch.id) {
    auto& find = commands_->batch_by_id;
    find.bind(1, *batch.id);
    bool found = find.step();
    find.reset();
    if (!found) {
      out.error = "no batch " + std::to_string(*batch.id);
      return out;
    }
    out.batch_id = *batch.id;
  } else {
    if (batch.name) {
      auto& find = commands_->batch_by_name;
      find.bind(1, std::string_view(*batch.name));
      if (find.step()) {
        out.error = "batch name `" + *batch.name + "` is taken (batch " +
                    std::to_string(find.column_int(0)) + "); choose another";
        find.reset();
        return out;
      }
      find.reset();
    }
    commands_->insert_batch.bind(1, batch.name).bind(2, now).run();
    out.batch_id = db_->last_insert_rowid();
  }
  std::optional<std::int64_t> first_created, last_created;
  for (const NewJob& job : jobs) {
    auto& find = commands_->find_active_by_server;
    find.bind(1, std::string_view(job.server_id));
    EnqueueResult r;
    if (find.step()) {
      r = {find.column_int(0), true};
      bool same_batch = find.column_optional_int(1) == out.batch_id;
      find.reset();
      // Already queued by another batch (or by plain SQL): it joins this one too.
      if (!same_batch) commands_->add_to_batch.bind(1, out.batch_id).bind(2, r.id).run();
    } else {
      find.reset();
      commands_->insert_job.bind(1, std::string_view(job.server_id))
          .bind(2, now)
          .bind(3, job.port)
          .bind(4, job.auth ? std::optional<std::string>(job.auth->type) : std::nullopt)
          .bind(5, out.batch_id)
          .run();
      r = {db_->last_insert_rowid(), false};
      if (job.auth)
        commands_->insert_secret.bind(1, r.id).bind_blob(2, job.auth->key.reveal()).run();
      if (!first_created) first_created = r.id;
      last_created = r.id;
    }
    out.jobs.push_back(r);
  }
  if (first_created) {
    commands_->extend_batch.bind(1, out.batch_id)
        .bind(2, *first_created)
        .bind(3, *last_created)
        .run();
  }
  tx.commit();
  return out;
}

std::string_view describe(RetryOutcome o) noexcept {
  switch (o) {
    case RetryOutcome::requeued:
      return "queued again";
    case RetryOutcome::rechecking:
      return "polling its task again";
    case RetryOutcome::not_found:
      return "no such job";
    case RetryOutcome::not_ended:
      return "not failed or cancelled: nothing to retry yet";
    case RetryOutcome::succeeded:
      return "already succeeded";
    case RetryOutcome::key_gone:
      return "replace-form job whose key was deleted when it ended: enqueue it again with its key";
    case RetryOutcome::call_in_flight:
      return "its call (cancelled) is still in flight: retry once it has ended";
  }
  return "unknown";
}

namespace {
// Applies a retry to one job inside the caller's transaction.
RetryOutcome retry_one(sql::Statement& target, sql::Statement& requeue, sql::Statement& recheck,
                       std::int64_t id, std::int64_t now) {
  target.bind(1, id);
  if (!target.step()) {
    target.reset();
    return RetryOutcome::not_found;
  }
  auto state = parse_job_state(target.column_text(0));
  bool key_gone = target.column_int(1) != 0;
  bool task_pending = target.column_int(2) != 0;
  bool call_in_flight = target.column_int(3) != 0;
  target.reset();
  if (state == JobState::succeeded) return RetryOutcome::succeeded;
  if (state != JobState::failed && state != JobState::cancelled) return RetryOutcome::not_ended;
  if (call_in_flight) return RetryOutcome::call_in_flight;
  if (task_pending) {
    recheck.bind(1, id).bind(2, now).run();
    return RetryOutcome::rechecking;
  }
  if (key_gone) return RetryOutcome::key_gone;
  requeue.bind(1, id).bind(2, now).run();
  return RetryOutcome::requeued;
}
}  // namespace

RetryOutcome JobStore::retry(std::int64_t id, std::int64_t now) {
  sql::Transaction tx(*db_);
  RetryOutcome o =
      retry_one(commands_->retry_target, commands_->requeue_job, commands_->recheck_job, id, now);
  tx.commit();
  return o;
}

std::map<RetryOutcome, std::int64_t> JobStore::retry_all(JobState state, std::int64_t now) {
  std::map<RetryOutcome, std::int64_t> counts;
  sql::Transaction tx(*db_);
  std::vector<std::int64_t> ids;
  auto& sel = commands_->ids_in_state;
  sel.bind(1, to_string(state));
  while (sel.step()) ids.push_back(sel.column_int(0));
  sel.reset();
  for (std::int64_t id : ids) {
    ++counts[retry_one(commands_->retry_target, commands_->requeue_job, commands_->recheck_job, id,
                       now)];
  }
  tx.commit();
  return counts;
}

CancelOutcome JobStore::cancel(std::int64_t id, std::int64_t now) {
  sql::Transaction tx(*db_);
  commands_->cancel_job.bind(1, id).bind(2, now).run();
  CancelOutcome o = CancelOutcome::cancelled;
  if (db_->changes() == 0) {
    auto& e = commands_->job_exists;
    e.bind(1, id);
    o = e.step() ? CancelOutcome::already_ended : CancelOutcome::not_found;
    e.reset();
  }
  int deleted = 0;
  if (o == CancelOutcome::cancelled) deleted = delete_secret(id);  // a terminal job keeps no key
  tx.commit();
  if (deleted) scrub_wal();
  return o;
}

}  // namespace kpsd
