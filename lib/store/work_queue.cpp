// The scheduler's room: claims, outcomes (fenced to the claim or lease they belong to), and
// the recovery after a restart. See work_queue.hpp.
#include "store/work_queue.hpp"

#include "core/secret_box.hpp"
#include "store/brake_room.hpp"
#include "store/sqlite.hpp"
#include "store/store_connection.hpp"
#include "store/work_queue_sql.hpp"

#include <sstream>
#include <stdexcept>

namespace kpsd {

namespace {

DeliveryWork read_due(const sql::Statement& sel, const work_queue_sql::DueColumns& col,
                      std::int64_t now, const SecretBox& box) {
  DeliveryWork w;
  w.job_id = sel.column_int(col.id);
  w.server_id = sel.column_text(col.server_id);
  w.port = sel.column_optional_int(col.port);
  auto auth_type = sel.column_optional_text(col.auth_type);
  w.attempts_used = sel.column_int(col.attempts);
  if (auth_type && !sel.column_is_null(col.key)) {
    std::string stored = sel.column_text(col.key);
    // Sealed since issue 31 (secret_box.hpp); a row from before holds the key itself.
    if (!SecretBox::sealed(stored)) {
      w.auth = JobAuth{*auth_type, Secret(std::move(stored))};
    } else if (auto key = box.open(stored)) {
      w.auth = JobAuth{*auth_type, std::move(*key)};
    }
  }
  // Gone: deleted when the job ended, or sealed with a key file that is not this one.
  w.key_gone = auth_type && !w.auth;
  w.previous_was_401 = sel.column_optional_int(col.last_http_status) == 401;
  w.unknown_since = sel.column_optional_int(col.unknown_since);
  w.look_waits = sel.column_int(col.look_waits);
  w.task_failures = sel.column_int(col.task_failures);
  w.sent_after_unknown = sel.column_int(col.sent_after_unknown) != 0;
  w.lost_at = sel.column_optional_int(col.lost_at).value_or(0);
  if (auto tasks = sel.column_optional_text(col.known_tasks)) {
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

struct WorkQueue::Statements {
  explicit Statements(sql::Database& db)
      : promote_retries(db, work_queue_sql::promote_retries),
        select_due(db, work_queue_sql::select_due),
        select_due_unknown(db, work_queue_sql::select_due_unknown),
        mark_running(db, work_queue_sql::mark_running),
        fail_key_gone(db, work_queue_sql::fail_key_gone),
        open_attempt(db, work_queue_sql::open_attempt),
        close_attempt(db, work_queue_sql::close_attempt),
        update_after_attempt(db, work_queue_sql::update_after_attempt),
        write_look(db, work_queue_sql::write_look),
        delete_open_attempt(db, work_queue_sql::delete_open_attempt),
        release_claim(db, work_queue_sql::release_claim),
        select_polls(db, work_queue_sql::select_polls),
        lease_poll(db, work_queue_sql::lease_poll),
        update_after_poll(db, work_queue_sql::update_after_poll),
        min_due(db, work_queue_sql::min_due),
        requeue_running(db, work_queue_sql::requeue_running),
        release_poll_leases(db, work_queue_sql::release_poll_leases),
        delete_ended_secrets(db, work_queue_sql::delete_ended_secrets),
        close_lost_attempts(db, work_queue_sql::close_lost_attempts),
        due_columns(select_due),
        due_unknown_columns(select_due_unknown),
        poll_columns(select_polls),
        requeued_id(requeue_running.column_index("id")),
        requeued_state(requeue_running.column_index("state")) {}
  sql::Statement promote_retries, select_due, select_due_unknown, mark_running, fail_key_gone,
      open_attempt, close_attempt, update_after_attempt, write_look, delete_open_attempt,
      release_claim, select_polls, lease_poll, update_after_poll, min_due, requeue_running,
      release_poll_leases, delete_ended_secrets, close_lost_attempts;
  work_queue_sql::DueColumns due_columns, due_unknown_columns;
  work_queue_sql::PollColumns poll_columns;
  int requeued_id, requeued_state;  // requeue_running's RETURNING columns, by name
};

WorkQueue::WorkQueue(StoreConnection& connection, BrakeRoom& brakes)
    : connection_(connection),
      brakes_(brakes),
      sql_(std::make_unique<Statements>(connection.db())) {}

WorkQueue::~WorkQueue() = default;

int WorkQueue::recover_after_restart(std::int64_t now, std::int64_t max_attempts,
                                     std::vector<BatchStop>* stops) {
  sql::Transaction tx(connection_.db());
  sql_->close_lost_attempts.bind(1, now).run();
  auto& requeue = sql_->requeue_running;
  requeue.bind(1, now).bind(2, max_attempts).bind(3, std::string_view(maybe_done_prefix));
  int requeued = 0;
  std::vector<std::int64_t> failed;  // gave up: their batches' budgets count them
  while (requeue.step()) {
    ++requeued;
    if (requeue.column_text(sql_->requeued_state) == "failed")
      failed.push_back(requeue.column_int(sql_->requeued_id));
  }
  requeue.reset();
  connection_.note_ended(JobState::failed, static_cast<std::int64_t>(failed.size()));
  auto stopped = brakes_.apply(failed, now);
  if (stops) stops->insert(stops->end(), stopped.begin(), stopped.end());
  sql_->release_poll_leases.bind(1, now).run();
  sql_->delete_ended_secrets.run();
  int deleted = connection_.db().changes();
  tx.commit();
  if (deleted) connection_.scrub_wal();
  return requeued;
}

std::vector<DeliveryWork> WorkQueue::claim_for_delivery(std::int64_t now, std::size_t limit,
                                                        std::vector<BatchStop>* stops) {
  sql::Transaction tx(connection_.db());
  std::vector<BatchStop> stopped;
  auto work = claim_deliveries(now, limit, stopped);
  tx.commit();
  if (stops) stops->insert(stops->end(), stopped.begin(), stopped.end());
  return work;
}

std::vector<DeliveryWork> WorkQueue::claim_deliveries(std::int64_t now, std::size_t limit,
                                                      std::vector<BatchStop>& stops) {
  std::vector<std::int64_t> failed;
  std::vector<DeliveryWork> work;
  sql_->promote_retries.bind(1, now).run();
  if (limit > 0) {
    const std::pair<sql::Statement*, const work_queue_sql::DueColumns*> selects[] = {
        {&sql_->select_due_unknown, &sql_->due_unknown_columns},
        {&sql_->select_due, &sql_->due_columns}};
    for (auto [sel, columns] : selects) {
      sel->bind(1, now).bind(2, static_cast<std::int64_t>(limit - work.size()));
      while (sel->step()) work.push_back(read_due(*sel, *columns, now, connection_.box()));
      sel->reset();
      if (work.size() >= limit) break;
    }
    // A replace-form job whose key is gone is never sent in reset form.
    std::erase_if(work, [&](const DeliveryWork& w) {
      if (!w.key_gone) return false;
      sql_->fail_key_gone.bind(1, w.job_id).bind(2, now).run();
      connection_.note_ended(JobState::failed, connection_.db().changes());
      failed.push_back(w.job_id);
      return true;
    });
    // Their failures count against their batches' budgets, in this transaction.
    auto stopped = brakes_.apply(failed, now);
    stops.insert(stops.end(), stopped.begin(), stopped.end());
    for (DeliveryWork& w : work) {
      sql_->mark_running.bind(1, w.job_id).bind(2, now).run();
      auto& open = sql_->open_attempt;
      open.bind(1, w.job_id).bind(2, now);
      if (!open.step()) throw std::logic_error("INSERT ... RETURNING gave no row");
      w.attempt_n = open.column_int(0);
      open.reset();
    }
  }
  return work;
}

void WorkQueue::finish_attempts(std::span<const AttemptFinish> finished) {
  sql::Transaction tx(connection_.db());
  int deleted = record_attempts(finished);
  tx.commit();
  if (deleted) connection_.scrub_wal();
}

int WorkQueue::record_attempts(std::span<const AttemptFinish> finished) {
  int deleted = 0;
  for (const AttemptFinish& f : finished) {
    if (f.release_claim) {
      sql_->release_claim.bind(1, f.job_id).bind(2, f.attempt_n).bind(3, f.next_attempt_at).run();
      sql_->delete_open_attempt.bind(1, f.job_id).bind(2, f.attempt_n).run();
      continue;
    }
    if (!f.look.empty()) {
      sql_->write_look.bind(1, f.job_id)
          .bind(2, f.attempt_n)
          .bind(3, std::string_view(f.look))
          .run();
    }
    if (f.no_call) {
      record_without_call(f);
      if (is_terminal(f.next_state)) deleted += connection_.delete_secret(f.job_id);
      continue;
    }
    sql_->close_attempt.bind(1, f.job_id)
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
    if (is_terminal(f.next_state)) deleted += connection_.delete_secret(f.job_id);
  }
  return deleted;
}

void WorkQueue::update_job_after_attempt(const AttemptFinish& f) {
  sql_->update_after_attempt.bind(1, f.job_id)
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
  if (is_terminal(f.next_state)) connection_.note_ended(f.next_state, connection_.db().changes());
}

// The look decided without a call: the job moves as decided while the claimed attempt row
// (no call was made) is deleted and its attempt given back.
void WorkQueue::record_without_call(const AttemptFinish& f) {
  AttemptFinish moved = f;
  moved.counts_attempt = false;
  update_job_after_attempt(moved);
  sql_->delete_open_attempt.bind(1, f.job_id).bind(2, f.attempt_n).run();
}

std::vector<PollWork> WorkQueue::claim_for_poll(std::int64_t now, std::int64_t lease_until,
                                                std::size_t limit) {
  if (limit == 0) return {};
  sql::Transaction tx(connection_.db());
  auto work = claim_polls(now, lease_until, limit);
  tx.commit();
  return work;
}

std::vector<PollWork> WorkQueue::claim_polls(std::int64_t now, std::int64_t lease_until,
                                             std::size_t limit) {
  std::vector<PollWork> work;
  if (limit == 0) return work;
  auto& sel = sql_->select_polls;
  const work_queue_sql::PollColumns& col = sql_->poll_columns;
  sel.bind(1, now).bind(2, static_cast<std::int64_t>(limit));
  while (sel.step()) {
    PollWork w;
    w.job_id = sel.column_int(col.id);
    w.attempts_used = sel.column_int(col.attempts);
    w.task_id = sel.column_text(col.task_id);
    w.delivered_at = sel.column_int(col.delivered_since);
    w.poll_refusals = sel.column_int(col.poll_refusals);
    w.lease_until = lease_until;
    w.server_id = sel.column_text(col.server_id);
    w.task_failures = sel.column_int(col.task_failures);
    w.sent_after_unknown = sel.column_int(col.sent_after_unknown) != 0;
    work.push_back(std::move(w));
  }
  sel.reset();
  for (const PollWork& w : work) sql_->lease_poll.bind(1, w.job_id).bind(2, lease_until).run();
  return work;
}

void WorkQueue::finish_polls(std::span<const PollFinish> finished) {
  sql::Transaction tx(connection_.db());
  int deleted = record_polls(finished);
  tx.commit();
  if (deleted) connection_.scrub_wal();
}

int WorkQueue::record_polls(std::span<const PollFinish> finished) {
  int deleted = 0;
  for (const PollFinish& f : finished) {
    sql_->update_after_poll.bind(1, f.job_id)
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
      connection_.note_ended(f.next_state, connection_.db().changes());
      deleted += connection_.delete_secret(f.job_id);
    }
  }
  return deleted;
}

Claimed WorkQueue::claim(const ClaimRequest& next) {
  Claimed c;
  if (next.limit == 0) return c;
  c.polls = claim_polls(next.now, next.poll_lease_until, next.limit);
  if (c.polls.size() < next.limit) {
    c.deliveries = claim_deliveries(next.now, next.limit - c.polls.size(), c.stops);
  }
  return c;
}

Claimed WorkQueue::record_and_claim(const std::function<int()>& record,
                                    std::span<const std::int64_t> ended, const ClaimRequest& next) {
  sql::Transaction tx(connection_.db());
  int deleted = record();
  // Brakes before the claim: a batch whose budget these outcomes spent starts no other call.
  std::vector<BatchStop> stops = brakes_.apply(ended, next.now);
  Claimed c = claim(next);
  c.stops.insert(c.stops.begin(), stops.begin(), stops.end());
  tx.commit();
  if (deleted) connection_.scrub_wal();
  return c;
}

Claimed WorkQueue::finish_and_claim(std::span<const AttemptFinish> finished,
                                    const ClaimRequest& next) {
  std::vector<std::int64_t> ended;
  for (const AttemptFinish& f : finished) {
    if (!f.release_claim && is_terminal(f.next_state)) ended.push_back(f.job_id);
  }
  return record_and_claim([&] { return record_attempts(finished); }, ended, next);
}

Claimed WorkQueue::finish_and_claim(std::span<const PollFinish> finished,
                                    const ClaimRequest& next) {
  std::vector<std::int64_t> ended;
  for (const PollFinish& f : finished) {
    if (is_terminal(f.next_state)) ended.push_back(f.job_id);
  }
  return record_and_claim([&] { return record_polls(finished); }, ended, next);
}

std::optional<std::int64_t> WorkQueue::next_due_at() {
  std::optional<std::int64_t> earliest;
  for (const char* state : {"queued", "retrying", "delivered"}) {
    auto& s = sql_->min_due;
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
