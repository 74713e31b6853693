// The scheduler's writes: claims, outcomes (fenced to the claim or lease they belong to),
// and the recovery after a restart. See job_store_rooms.hpp.
#include "core/secret_box.hpp"
#include "store/job_store.hpp"
#include "store/job_store_rooms.hpp"
#include "store/lifecycle_sql.hpp"

#include <sstream>
#include <stdexcept>

namespace kpsd {

namespace {

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
    : promote_retries(db, lifecycle_sql::promote_retries),
      select_due(db, lifecycle_sql::select_due),
      select_due_unknown(db, lifecycle_sql::select_due_unknown),
      mark_running(db, lifecycle_sql::mark_running),
      fail_key_gone(db, lifecycle_sql::fail_key_gone),
      open_attempt(db, lifecycle_sql::open_attempt),
      close_attempt(db, lifecycle_sql::close_attempt),
      update_after_attempt(db, lifecycle_sql::update_after_attempt),
      write_look(db, lifecycle_sql::write_look),
      delete_open_attempt(db, lifecycle_sql::delete_open_attempt),
      release_claim(db, lifecycle_sql::release_claim),
      select_polls(db, lifecycle_sql::select_polls),
      lease_poll(db, lifecycle_sql::lease_poll),
      update_after_poll(db, lifecycle_sql::update_after_poll),
      min_due(db, lifecycle_sql::min_due),
      requeue_running(db, lifecycle_sql::requeue_running),
      release_poll_leases(db, lifecycle_sql::release_poll_leases),
      delete_ended_secrets(db, lifecycle_sql::delete_ended_secrets),
      close_lost_attempts(db, lifecycle_sql::close_lost_attempts) {}

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
