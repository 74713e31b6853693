// The control ops that act on many jobs at once or on a batch: cancel and retry (job ids, a
// state, a batch), pause and resume (all calls, or one batch). See control_handlers.hpp.
#include "control/control_handlers.hpp"
#include "core/clock.hpp"
#include "model/metrics.hpp"
#include "scheduling/scheduler.hpp"
#include "store/db_worker.hpp"

#include <boost/json.hpp>

namespace kpsd {

namespace net = boost::asio;
namespace json = boost::json;

namespace {

RetryCountsReply retry_counts(std::map<RetryOutcome, std::int64_t> counts) {
  return {counts[RetryOutcome::requeued],    counts[RetryOutcome::rechecking],
          counts[RetryOutcome::key_gone],    counts[RetryOutcome::call_in_flight],
          counts[RetryOutcome::server_busy], std::nullopt};
}

std::string retry_refusal(std::int64_t id, RetryOutcome outcome, std::int64_t other) {
  if (outcome == RetryOutcome::server_busy) {
    return "job " + std::to_string(id) + ": its server has job " + std::to_string(other) +
           " unfinished: retry refused (one unfinished job per server; follow or cancel job " +
           std::to_string(other) + ")";
  }
  // The words cancel and show use for a job that does not exist.
  if (outcome == RetryOutcome::not_found) return "no job with id " + std::to_string(id);
  return "job " + std::to_string(id) + ": " + std::string(describe(outcome));
}

// The answer to several job ids: one result each, and the first refusal as the error (so
// ok is false when any was refused). One job refused gets the answer it got before several
// could be given: the error alone.
json::object per_job_reply(std::vector<JobResult> results, const std::string& first_error) {
  PerJobReply reply;
  if (!first_error.empty()) reply.error = first_error;
  if (results.size() != 1 || !results.front().error) reply.results = std::move(results);
  return to_json(reply);
}

}  // namespace

net::awaitable<std::optional<std::int64_t>> ControlHandlers::batch_id_of(const std::string& b) {
  // Named, not a temporary inside co_await: GCC 12 destroys those twice (see DbWorker::call),
  // and this one holds a string.
  auto find = [b](JobQueries& s) { return s.find_batch(b, /*count=*/false); };
  auto found = co_await db_.call(std::move(find));
  co_return found ? std::optional<std::int64_t>(found->id) : std::nullopt;
}

net::awaitable<json::object> ControlHandlers::execute(RetryRequest& r, PeerCred) {
  std::int64_t now = unix_ms();
  if (r.batch) {
    auto batch = co_await batch_id_of(*r.batch);
    if (!batch) co_return to_json(ErrorReply{"no batch " + *r.batch});
    JobState state = r.state.value_or(JobState::failed);
    auto counts = co_await db_.call(
        [id = *batch, state, now](BatchControls& s) { return s.retry_batch(id, state, now); });
    scheduler_.wake();
    RetryCountsReply reply = retry_counts(counts);
    reply.batch_id = *batch;
    co_return to_json(reply);
  }
  if (r.ids.empty()) {
    auto counts = co_await db_.call(
        [state = *r.state, now](JobCommands& s) { return s.retry_all(state, now); });
    scheduler_.wake();
    co_return to_json(retry_counts(counts));
  }
  // Each job as `retry ID` does it, one transaction each; one answer per job.
  std::vector<JobResult> results;
  std::string first_error;
  for (std::int64_t id : r.ids) {
    auto retry_one = [id, now](JobCommands& s, JobQueries& q) {
      std::int64_t unfinished = 0;
      RetryOutcome o = s.retry(id, now, &unfinished);
      // Requeued into a paused batch: it waits for the batch's resume, and says so.
      bool held = o == RetryOutcome::requeued && q.find(id).value_or(Job{}).held;
      return std::tuple{o, unfinished, held};
    };
    auto [outcome, other, held] = co_await db_.call(std::move(retry_one));
    if (outcome == RetryOutcome::requeued || outcome == RetryOutcome::rechecking) {
      std::string result(describe(outcome));
      if (held) result += " (held: its batch is paused; kpsctl resume --batch to send it)";
      results.push_back({id, result, std::nullopt});
    } else {
      std::string why = retry_refusal(id, outcome, other);
      if (first_error.empty()) first_error = why;
      results.push_back({id, std::nullopt, why});
    }
  }
  scheduler_.wake();
  co_return per_job_reply(std::move(results), first_error);
}

net::awaitable<json::object> ControlHandlers::execute(CancelRequest& r, PeerCred) {
  std::int64_t now = unix_ms();
  if (r.batch) {
    auto batch = co_await batch_id_of(*r.batch);
    if (!batch) co_return to_json(ErrorReply{"no batch " + *r.batch});
    auto change =
        co_await db_.call([id = *batch, now](BatchControls& s) { return s.cancel_batch(id, now); });
    co_return to_json(CancelBatchReply{*batch, change.jobs});
  }
  std::vector<JobResult> results;
  std::string first_error;
  for (std::int64_t id : r.ids) {
    auto outcome = co_await db_.call([id, now](JobCommands& s) { return s.cancel(id, now); });
    if (outcome == CancelOutcome::cancelled) {
      results.push_back({id, "cancelled", std::nullopt});
      continue;
    }
    std::string why = outcome == CancelOutcome::not_found
                          ? "no job with id " + std::to_string(id)
                          : "job " + std::to_string(id) + " has already ended";
    if (first_error.empty()) first_error = why;
    results.push_back({id, std::nullopt, why});
  }
  co_return per_job_reply(std::move(results), first_error);
}

net::awaitable<json::object> ControlHandlers::execute(PauseRequest& r, PeerCred) {
  if (!r.batch) {
    // Committed first, so a restart keeps the operator's choice.
    co_await db_.call([pause = r.pause](BatchControls& s) { s.set_paused(pause); });
    scheduler_.set_paused(r.pause);
    co_return to_json(PauseReply{r.pause, std::nullopt});
  }
  auto batch = co_await batch_id_of(*r.batch);
  if (!batch) co_return to_json(ErrorReply{"no batch " + *r.batch});
  std::int64_t now = unix_ms();
  auto change = co_await db_.call([id = *batch, pause = r.pause, now](BatchControls& s) {
    return pause ? s.pause_batch(id, now) : s.resume_batch(id, now);
  });
  if (!r.pause) scheduler_.wake();
  co_return to_json(PauseReply{r.pause, PauseReply::OfBatch{*batch, change.jobs, change.changed}});
}

}  // namespace kpsd
