// The scheduler's writes: claims, outcomes (fenced to the claim or lease they belong to),
// and the recovery after a restart. See job_store_rooms.hpp.
#include "core/secret_box.hpp"
#include "store/job_store.hpp"
#include "store/job_store_rooms.hpp"

#include <sstream>
#include <stdexcept>

namespace kpsd {

namespace {

// A due job as a claim reads it, before its attempt is opened.
constexpr const char* due_columns =
    "SELECT j.id, j.server_id, j.port, j.auth_type, j.attempts, s.key, "
    "(SELECT a.http_status FROM attempts a WHERE a.job_id = j.id ORDER BY a.n DESC LIMIT 1), "
    "j.unknown_since, j.look_waits, j.task_failures, j.sent_after_unknown, "
    // Only for a job to look for: when its last call was lost, and the tasks it already knows.
    "CASE WHEN j.unknown_since IS NOT NULL THEN (SELECT a.finished_at FROM attempts a "
    "WHERE a.job_id = j.id ORDER BY a.n DESC LIMIT 1) END, "
    "CASE WHEN j.unknown_since IS NOT NULL THEN (SELECT group_concat(a.task_id, ' ') "
    "FROM attempts a WHERE a.job_id = j.id AND a.task_id IS NOT NULL) END ";

DeliveryWork read_due(const sql::Statement& sel, std::int64_t now, const SecretBox& box) {
  DeliveryWork w;
  w.job_id = sel.column_int(0);
  w.server_id = sel.column_text(1);
  w.port = sel.column_optional_int(2);
  auto auth_type = sel.column_optional_text(3);
  w.attempts_used = sel.column_int(4);
  if (auth_type && !sel.column_is_null(5)) {
    std::string stored = sel.column_text(5);
    // Sealed since issue 31 (secret_box.hpp); a row from before holds the key itself.
    if (!SecretBox::sealed(stored)) {
      w.auth = JobAuth{*auth_type, Secret(std::move(stored))};
    } else if (auto key = box.open(stored)) {
      w.auth = JobAuth{*auth_type, std::move(*key)};
    }
  }
  // Gone: deleted when the job ended, or sealed with a key file that is not this one.
  w.key_gone = auth_type && !w.auth;
  w.previous_was_401 = sel.column_optional_int(6) == 401;
  w.unknown_since = sel.column_optional_int(7);
  w.look_waits = sel.column_int(8);
  w.task_failures = sel.column_int(9);
  w.sent_after_unknown = sel.column_int(10) != 0;
  w.lost_at = sel.column_optional_int(11).value_or(0);
  if (auto tasks = sel.column_optional_text(12)) {
    std::istringstream in(*tasks);  // task ids hold no spaces (KPS's are UUIDs)
    for (std::string t; in >> t;) w.known_tasks.push_back(t);
  }
  w.claimed_at = now;
  return w;
}

std::optional<std::string> non_empty(const std::string& s) {
  if (s.empty()) return std::nullopt;
  return s;
}

}  // namespace

JobStore::Lifecycle::Lifecycle(sql::Database& db)
    : promote_retries(db,
                      "UPDATE jobs SET state = 'queued', updated_at = ?1 "
                      "WHERE state = 'retrying' AND next_attempt_at <= ?1"),
      select_due(db, std::string(due_columns) +
                         "FROM jobs j LEFT JOIN job_secrets s ON s.job_id = j.id "
                         "WHERE j.state = 'queued' AND j.next_attempt_at <= ?1 "
                         "AND j.unknown_since IS NULL ORDER BY j.next_attempt_at, j.id LIMIT ?2"),
      // Ahead of the backlog: a job to look for (jobs_unknown_due), while its task may still run.
      select_due_unknown(db,
                         std::string(due_columns) +
                             "FROM jobs j INDEXED BY jobs_unknown_due "
                             "LEFT JOIN job_secrets s ON s.job_id = j.id WHERE j.state = 'queued' "
                             "AND j.unknown_since IS NOT NULL AND j.next_attempt_at <= ?1 "
                             "ORDER BY j.next_attempt_at, j.id LIMIT ?2"),
      // The attempt is used when the call is claimed, so a call that kills kpsd still counts.
      mark_running(db,
                   "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = ?2 "
                   "WHERE id = ?1"),
      fail_key_gone(db,
                    "UPDATE jobs SET state = 'failed', error_code = NULL, "
                    "error_msg = 'key no longer held: enqueue again with the key', "
                    "updated_at = ?2 WHERE id = ?1"),
      open_attempt(db,
                   "INSERT INTO attempts (job_id, n, started_at) VALUES (?1, "
                   "(SELECT coalesce(max(n), 0) + 1 FROM attempts WHERE job_id = ?1), ?2) "
                   "RETURNING n"),
      close_attempt(db,
                    "UPDATE attempts SET finished_at = ?3, http_status = ?4, task_id = ?5, "
                    "delivery_status = ?6, error_code = ?7, error_msg = ?8, request_id = ?9, "
                    "latency_ms = ?10 WHERE job_id = ?1 AND n = ?2"),
      update_after_attempt(
          db,
          // Fenced: only the job's current call (its newest attempt row) moves it.
          "UPDATE jobs SET state = ?2, attempts = attempts - ?3, next_attempt_at = ?4, "
          "task_id = ?5, delivery_status = ?6, task_status = NULL, error_code = ?7, "
          "error_msg = ?8, updated_at = ?9, poll_refusals = 0, unknown_since = ?11, "
          "look_waits = ?12, task_failures = ?13, sent_after_unknown = ?14, "
          "task_error_code = coalesce(?15, task_error_code), "
          "task_error_msg = coalesce(?16, task_error_msg), "
          "delivered_at = CASE WHEN ?2 = 'delivered' THEN ?9 ELSE delivered_at END "
          "WHERE id = ?1 AND state = 'running' AND NOT EXISTS "
          "(SELECT 1 FROM attempts a WHERE a.job_id = ?1 AND a.n > ?10)"),
      // The look's decision, on the attempt whose outcome was unknown (the one before ?2).
      write_look(db,
                 "UPDATE attempts SET look = ?3 WHERE job_id = ?1 AND n = "
                 "(SELECT max(n) FROM attempts WHERE job_id = ?1 AND n < ?2)"),
      delete_open_attempt(db,
                          "DELETE FROM attempts WHERE job_id = ?1 AND n = ?2 "
                          "AND finished_at IS NULL"),
      release_claim(db,
                    "UPDATE jobs SET state = 'queued', attempts = attempts - 1, "
                    "next_attempt_at = ?3, updated_at = ?3 WHERE id = ?1 AND state = 'running' "
                    "AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = ?1 AND a.n > ?2)"),
      select_polls(db,
                   "SELECT id, attempts, task_id, coalesce(delivered_at, updated_at), "
                   "poll_refusals, server_id, task_failures, sent_after_unknown FROM jobs "
                   "WHERE state = 'delivered' AND next_attempt_at <= ?1 "
                   "ORDER BY next_attempt_at, id LIMIT ?2"),
      lease_poll(db, "UPDATE jobs SET next_attempt_at = ?2 WHERE id = ?1"),
      // A success clears the reasons of earlier failed attempts; otherwise a NULL keeps them.
      // Fenced: only the poll holding the current lease (next_attempt_at) moves the job.
      update_after_poll(db,
                        "UPDATE jobs SET state = ?2, next_attempt_at = ?3, poll_refusals = ?11, "
                        "task_status = coalesce(?4, task_status), "
                        "error_code = CASE WHEN ?2 = 'succeeded' THEN NULL "
                        "ELSE coalesce(?5, error_code) END, "
                        "error_msg = CASE WHEN ?2 = 'succeeded' THEN NULL "
                        "ELSE coalesce(?6, error_msg) END, "
                        "task_error_code = coalesce(?8, task_error_code), "
                        "task_error_msg = coalesce(?9, task_error_msg), updated_at = ?7, "
                        "task_failures = ?12 "
                        "WHERE id = ?1 AND state = 'delivered' AND next_attempt_at = ?10"),
      // Held jobs (a paused batch's, 0009) are not due at any time.
      min_due(db, "SELECT min(next_attempt_at) FROM jobs WHERE state = ?1 AND next_attempt_at < " +
                      std::to_string(held_offset)),
      // A job whose calls keep killing kpsd runs out of attempts like any other.
      requeue_running(db,
                      "UPDATE jobs SET updated_at = ?1, next_attempt_at = ?1, "
                      "state = CASE WHEN attempts >= ?2 THEN 'failed' ELSE 'queued' END, "
                      "error_msg = CASE WHEN attempts >= ?2 THEN ?3 || 'gave up after ' || "
                      "attempts || ' attempts: outcome lost: daemon stopped' ELSE error_msg END, "
                      // Its call was in flight: look for its task before sending again (an
                      // earlier unknown call not yet looked for stays the one to look for).
                      "unknown_since = coalesce(unknown_since, (SELECT a.started_at "
                      "FROM attempts a WHERE a.job_id = jobs.id ORDER BY a.n DESC LIMIT 1)), "
                      "look_waits = 0 WHERE state = 'running' RETURNING id, state"),
      // Polls leased by the process that died are due now, not when their lease would end.
      release_poll_leases(db,
                          "UPDATE jobs SET next_attempt_at = ?1 "
                          "WHERE state = 'delivered' AND next_attempt_at > ?1"),
      delete_ended_secrets(db,
                           "DELETE FROM job_secrets WHERE job_id IN (SELECT id FROM jobs "
                           "WHERE state IN ('succeeded','failed','cancelled'))"),
      close_lost_attempts(db,
                          "UPDATE attempts SET finished_at = ?1, "
                          "error_msg = 'outcome lost: daemon stopped' "
                          "WHERE finished_at IS NULL") {}

int JobStore::recover_after_restart(std::int64_t now, std::int64_t max_attempts,
                                    std::vector<BatchStop>* stops) {
  sql::Transaction tx(*db_);
  lifecycle_->close_lost_attempts.bind(1, now).run();
  auto& requeue = lifecycle_->requeue_running;
  requeue.bind(1, now).bind(2, max_attempts).bind(3, std::string_view(maybe_done_prefix));
  int requeued = 0;
  std::vector<std::int64_t> failed;  // gave up: their batches' budgets count them
  while (requeue.step()) {
    ++requeued;
    if (requeue.column_text(1) == "failed") failed.push_back(requeue.column_int(0));
  }
  requeue.reset();
  note_ended(JobState::failed, static_cast<std::int64_t>(failed.size()));
  auto stopped = apply_brakes(failed, now);
  if (stops) stops->insert(stops->end(), stopped.begin(), stopped.end());
  lifecycle_->release_poll_leases.bind(1, now).run();
  lifecycle_->delete_ended_secrets.run();
  int deleted = db_->changes();
  tx.commit();
  if (deleted) scrub_wal();
  return requeued;
}

std::vector<DeliveryWork> JobStore::claim_for_delivery(std::int64_t now, std::size_t limit,
                                                       std::vector<BatchStop>* stops) {
  sql::Transaction tx(*db_);
  std::vector<BatchStop> stopped;
  auto work = claim_deliveries(now, limit, stopped);
  tx.commit();
  if (stops) stops->insert(stops->end(), stopped.begin(), stopped.end());
  return work;
}

std::vector<DeliveryWork> JobStore::claim_deliveries(std::int64_t now, std::size_t limit,
                                                     std::vector<BatchStop>& stops) {
  std::vector<std::int64_t> failed;
  std::vector<DeliveryWork> work;
  lifecycle_->promote_retries.bind(1, now).run();
  if (limit > 0) {
    for (auto* sel : {&lifecycle_->select_due_unknown, &lifecycle_->select_due}) {
      sel->bind(1, now).bind(2, static_cast<std::int64_t>(limit - work.size()));
      while (sel->step()) work.push_back(read_due(*sel, now, *box_));
      sel->reset();
      if (work.size() >= limit) break;
    }
    // A replace-form job whose key is gone is never sent in reset form.
    std::erase_if(work, [&](const DeliveryWork& w) {
      if (!w.key_gone) return false;
      lifecycle_->fail_key_gone.bind(1, w.job_id).bind(2, now).run();
      note_ended(JobState::failed, db_->changes());
      failed.push_back(w.job_id);
      return true;
    });
    // Their failures count against their batches' budgets, in this transaction.
    auto stopped = apply_brakes(failed, now);
    stops.insert(stops.end(), stopped.begin(), stopped.end());
    for (DeliveryWork& w : work) {
      lifecycle_->mark_running.bind(1, w.job_id).bind(2, now).run();
      auto& open = lifecycle_->open_attempt;
      open.bind(1, w.job_id).bind(2, now);
      if (!open.step()) throw std::logic_error("INSERT ... RETURNING gave no row");
      w.attempt_n = open.column_int(0);
      open.reset();
    }
  }
  return work;
}

void JobStore::finish_attempts(std::span<const AttemptFinish> finished) {
  sql::Transaction tx(*db_);
  int deleted = record_attempts(finished);
  tx.commit();
  if (deleted) scrub_wal();
}

int JobStore::record_attempts(std::span<const AttemptFinish> finished) {
  int deleted = 0;
  for (const AttemptFinish& f : finished) {
    if (f.release_claim) {
      lifecycle_->release_claim.bind(1, f.job_id)
          .bind(2, f.attempt_n)
          .bind(3, f.next_attempt_at)
          .run();
      lifecycle_->delete_open_attempt.bind(1, f.job_id).bind(2, f.attempt_n).run();
      continue;
    }
    if (!f.look.empty()) {
      lifecycle_->write_look.bind(1, f.job_id)
          .bind(2, f.attempt_n)
          .bind(3, std::string_view(f.look))
          .run();
    }
    if (f.no_call) {
      record_without_call(f);
      if (is_terminal(f.next_state)) deleted += delete_secret(f.job_id);
      continue;
    }
    lifecycle_->close_attempt.bind(1, f.job_id)
        .bind(2, f.attempt_n)
        .bind(3, f.finished_at)
        .bind(4, f.http_status)
        .bind(5, non_empty(f.task_id))
        .bind(6, non_empty(f.delivery_status))
        .bind(7, non_empty(f.error_code))
        .bind(8, non_empty(f.error_msg))
        .bind(9, non_empty(f.request_id))
        .bind(10, f.latency_ms)
        .run();
    update_job_after_attempt(f);
    if (is_terminal(f.next_state)) deleted += delete_secret(f.job_id);
  }
  return deleted;
}

void JobStore::update_job_after_attempt(const AttemptFinish& f) {
  lifecycle_->update_after_attempt.bind(1, f.job_id)
      .bind(2, to_string(f.next_state))
      .bind(3, std::int64_t{f.counts_attempt ? 0 : 1})  // give back the claimed attempt
      .bind(4, f.next_attempt_at)
      .bind(5, non_empty(f.task_id))
      .bind(6, non_empty(f.delivery_status))
      .bind(7, non_empty(f.error_code))
      .bind(8, non_empty(f.error_msg))
      .bind(9, f.finished_at)
      .bind(10, f.attempt_n)
      .bind(11, f.unknown_since)
      .bind(12, f.look_waits)
      .bind(13, f.task_failures)
      .bind(14, std::int64_t{f.sent_after_unknown ? 1 : 0})
      .bind(15, f.task_error_code)
      .bind(16, f.task_error_msg)
      .run();
  if (is_terminal(f.next_state)) note_ended(f.next_state, db_->changes());
}

// The look decided without a call: the job moves as decided while the claimed attempt row
// (no call was made) is deleted and its attempt given back.
void JobStore::record_without_call(const AttemptFinish& f) {
  AttemptFinish moved = f;
  moved.counts_attempt = false;
  update_job_after_attempt(moved);
  lifecycle_->delete_open_attempt.bind(1, f.job_id).bind(2, f.attempt_n).run();
}

std::vector<PollWork> JobStore::claim_for_poll(std::int64_t now, std::int64_t lease_until,
                                               std::size_t limit) {
  if (limit == 0) return {};
  sql::Transaction tx(*db_);
  auto work = claim_polls(now, lease_until, limit);
  tx.commit();
  return work;
}

std::vector<PollWork> JobStore::claim_polls(std::int64_t now, std::int64_t lease_until,
                                            std::size_t limit) {
  std::vector<PollWork> work;
  if (limit == 0) return work;
  auto& sel = lifecycle_->select_polls;
  sel.bind(1, now).bind(2, static_cast<std::int64_t>(limit));
  while (sel.step()) {
    PollWork w;
    w.job_id = sel.column_int(0);
    w.attempts_used = sel.column_int(1);
    w.task_id = sel.column_text(2);
    w.delivered_at = sel.column_int(3);
    w.poll_refusals = sel.column_int(4);
    w.lease_until = lease_until;
    w.server_id = sel.column_text(5);
    w.task_failures = sel.column_int(6);
    w.sent_after_unknown = sel.column_int(7) != 0;
    work.push_back(std::move(w));
  }
  sel.reset();
  for (const PollWork& w : work)
    lifecycle_->lease_poll.bind(1, w.job_id).bind(2, lease_until).run();
  return work;
}

void JobStore::finish_polls(std::span<const PollFinish> finished) {
  sql::Transaction tx(*db_);
  int deleted = record_polls(finished);
  tx.commit();
  if (deleted) scrub_wal();
}

int JobStore::record_polls(std::span<const PollFinish> finished) {
  int deleted = 0;
  for (const PollFinish& f : finished) {
    lifecycle_->update_after_poll.bind(1, f.job_id)
        .bind(2, to_string(f.next_state))
        .bind(3, f.next_attempt_at)
        .bind(4, f.task_status)
        .bind(5, f.error_code)
        .bind(6, f.error_msg)
        .bind(7, f.at)
        .bind(8, f.task_error_code)
        .bind(9, f.task_error_msg)
        .bind(10, f.lease_until)
        .bind(11, f.poll_refusals)
        .bind(12, f.task_failures)
        .run();
    if (is_terminal(f.next_state)) {
      note_ended(f.next_state, db_->changes());
      deleted += delete_secret(f.job_id);
    }
  }
  return deleted;
}

Claimed JobStore::claim(const ClaimRequest& next) {
  Claimed c;
  if (next.limit == 0) return c;
  c.polls = claim_polls(next.now, next.poll_lease_until, next.limit);
  if (c.polls.size() < next.limit) {
    c.deliveries = claim_deliveries(next.now, next.limit - c.polls.size(), c.stops);
  }
  return c;
}

Claimed JobStore::record_and_claim(const std::function<int()>& record,
                                   std::span<const std::int64_t> ended, const ClaimRequest& next) {
  sql::Transaction tx(*db_);
  int deleted = record();
  // Brakes before the claim: a batch whose budget these outcomes spent starts no other call.
  std::vector<BatchStop> stops = apply_brakes(ended, next.now);
  Claimed c = claim(next);
  c.stops.insert(c.stops.begin(), stops.begin(), stops.end());
  tx.commit();
  if (deleted) scrub_wal();
  return c;
}

Claimed JobStore::finish_and_claim(std::span<const AttemptFinish> finished,
                                   const ClaimRequest& next) {
  std::vector<std::int64_t> ended;
  for (const AttemptFinish& f : finished) {
    if (!f.release_claim && is_terminal(f.next_state)) ended.push_back(f.job_id);
  }
  return record_and_claim([&] { return record_attempts(finished); }, ended, next);
}

Claimed JobStore::finish_and_claim(std::span<const PollFinish> finished, const ClaimRequest& next) {
  std::vector<std::int64_t> ended;
  for (const PollFinish& f : finished) {
    if (is_terminal(f.next_state)) ended.push_back(f.job_id);
  }
  return record_and_claim([&] { return record_polls(finished); }, ended, next);
}

std::optional<std::int64_t> JobStore::next_due_at() {
  std::optional<std::int64_t> earliest;
  for (const char* state : {"queued", "retrying", "delivered"}) {
    auto& s = lifecycle_->min_due;
    s.bind(1, std::string_view(state));
    if (s.step() && !s.column_is_null(0)) {
      std::int64_t v = s.column_int(0);
      if (!earliest || v < *earliest) earliest = v;
    }
    s.reset();
  }
  return earliest;
}

}  // namespace kpsd
