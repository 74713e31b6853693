#include "control/control_handlers.hpp"

#include "control/overview.hpp"
#include "core/clock.hpp"
#include "model/metrics.hpp"
#include "scheduling/scheduler.hpp"
#include "store/db_worker.hpp"
#include "store/pruning.hpp"

#include <boost/json.hpp>

#include <spdlog/spdlog.h>

#include <map>
#include <optional>
#include <unistd.h>

namespace kpsd {

namespace net = boost::asio;
namespace json = boost::json;

namespace {

// What a stats request reads from the store, in one DB call.
struct StoreStats {
  std::map<JobState, std::int64_t> counts;
  std::optional<std::int64_t> oldest;
  std::optional<Batch> batch;
  bool batch_missing = false;
  std::int64_t max_id = 0;
  std::optional<std::int64_t> min_unfinished_id;
  bool waiting = false;  // a wait request whose jobs are not all finished: nothing counted
  std::vector<Batch> paused_batches;
};

}  // namespace

ControlHandlers::ControlHandlers(DbWorker& db, Scheduler& scheduler, Metrics& metrics)
    : db_(db), scheduler_(scheduler), metrics_(metrics) {}

net::awaitable<std::string> ControlHandlers::handle(const std::string& line, PeerCred peer) {
  auto request = parse_control_request(line);
  if (!request) co_return error_reply(request.error().message);
  if (changes_state(*request) && !std::holds_alternative<EnqueueRequest>(*request)) {
    // Who changed what: the peer's credentials, as the kernel vouches for them.
    peer.name = co_await names_.name_of(peer.uid);
    spdlog::info("control: {}: {}", describe(peer), summary(*request));
  } else if (std::holds_alternative<EnqueueRequest>(*request)) {
    peer.name = co_await names_.name_of(peer.uid);
  }
  try {
    json::object reply = co_await std::visit(
        [&](auto& r) -> net::awaitable<json::object> { return execute(r, peer); }, *request);
    // An execute() that could not do what was asked answers {"error": ...}.
    reply.emplace("ok", !reply.contains("error"));
    co_return json::serialize(reply) + "\n";
  } catch (const std::exception& e) {
    // A store failure (disk full, corrupt file) is reported, not hidden; the daemon lives on.
    spdlog::error("control request failed: {}", e.what());
    co_return error_reply(std::string("internal error: ") + e.what());
  }
}

net::awaitable<json::object> ControlHandlers::execute(EnqueueRequest& r, PeerCred peer) {
  std::int64_t now = unix_ms();
  std::size_t count = r.jobs.size();
  if (!r.batch.id) {  // a new batch: [queue] brakes unless this enqueue set its own; 0 = none
    Brakes& b = r.batch.brakes;
    if (!b.canary) b.canary = default_brakes_.canary;
    if (!b.max_failures && !b.max_failure_pct) {
      b.max_failures = default_brakes_.max_failures;
      b.max_failure_pct = default_brakes_.max_failure_pct;
    }
    if (b.canary == 0) b.canary.reset();
    if (b.max_failures == 0) b.max_failures.reset();
  }
  // Named, not a temporary inside co_await (see DbWorker::call on GCC 12).
  auto store_jobs = [jobs = std::move(r.jobs), now, batch = r.batch](JobCommands& s) {
    return s.enqueue(jobs, now, batch);
  };
  auto results = co_await db_.call(std::move(store_jobs));
  if (!results.error.empty()) co_return to_json(ErrorReply{results.error});
  std::size_t existing = 0;
  for (const auto& res : results.jobs) existing += res.existing ? 1 : 0;
  spdlog::info("enqueue from {}: {} jobs ({} new, {} already queued) into batch {}", describe(peer),
               count, count - existing, existing, results.batch_id);
  scheduler_.wake();
  co_return to_json(EnqueueReply{std::move(results.jobs), results.batch_id});
}

net::awaitable<json::object> ControlHandlers::execute(ListRequest& r, PeerCred) {
  // The batch is resolved in the same DB call as the list: one round trip.
  auto read_page = [q = r.query, batch = r.batch](JobQueries& s) {
    return s.list_page(q, batch, /*with_request_ids=*/false);
  };
  JobPage page = co_await db_.call(std::move(read_page));
  if (page.batch_missing) co_return to_json(ErrorReply{"no batch " + *r.batch});
  co_return job_page_to_json(page, r.query.limit);
}

net::awaitable<json::object> ControlHandlers::execute(ShowRequest& r, PeerCred) {
  auto found = co_await db_.call([id = r.id](JobQueries& s) { return s.job_with_attempts(id); });
  if (!found) co_return to_json(ErrorReply{"no job with id " + std::to_string(r.id)});
  co_return to_json(ShowReply(std::move(*found)));
}

net::awaitable<json::object> ControlHandlers::execute(StatsRequest& r, PeerCred) {
  StoreStats read;
  std::string read_problem;
  std::int64_t now = unix_ms();
  try {
    auto read_stats = [r](JobQueries& s) {
      StoreStats out;
      out.max_id = s.max_job_id();
      out.min_unfinished_id = s.min_unfinished_id();
      out.oldest = s.oldest_queued_due();
      out.paused_batches = s.paused_batches();
      if (r.batch) {
        out.batch = s.find_batch(*r.batch, /*count=*/false);
        out.batch_missing = !out.batch;
        if (out.batch) {
          out.waiting = r.wait && s.batch_unfinished(out.batch->id);
          if (!out.waiting) out.batch->states = s.count_batch(out.batch->id);
          out.counts = out.batch->states;
        }
      } else if (r.unfinished_since) {
        const auto& u = *r.unfinished_since;
        out.waiting = r.wait && s.any_unfinished_between(u.min_id, u.max_id);
        out.counts = out.waiting ? s.count_by_state()
                                 : s.count_unfinished_since(u.min_id, u.max_id, u.since);
      } else {
        out.counts = s.count_by_state();
      }
      return out;
    };
    read = co_await db_.call(std::move(read_stats));
  } catch (const std::exception& e) {
    // Stats are what an operator asks for during an outage: answer with what is known.
    read_problem = e.what();
  }
  if (read.batch_missing) co_return to_json(ErrorReply{"no batch " + *r.batch});
  StatsReply reply;
  reply.view = stats_view(Overview{read.counts, read.oldest, read_problem, scheduler_.stats(),
                                   std::move(read.paused_batches)},
                          now);
  reply.now_ms = now;
  reply.max_id = read.max_id;
  reply.min_unfinished_id = read.min_unfinished_id;
  reply.batch = std::move(read.batch);
  if (r.wait) reply.waiting = read.waiting;
  co_return to_json(reply);
}

Result<> prune_allowed(std::int64_t before_ms, std::int64_t now_ms, bool force) {
  if (before_ms > now_ms)
    return fail("prune: the cut-off is " + std::to_string((before_ms - now_ms) / 1000) +
                " s in the future: only jobs that ended before now can be pruned");
  if (!force && now_ms - before_ms < min_prune_age_ms)
    return fail(
        "prune: the cut-off is under an hour ago: jobs that ended that recently may still be "
        "wanted (a report, a retry); check with a dry run, then force it if you mean it");
  return {};
}

net::awaitable<json::object> ControlHandlers::execute(BatchesRequest& r, PeerCred) {
  auto recent =
      co_await db_.call([limit = r.limit](JobQueries& s) { return s.list_batches(limit); });
  co_return to_json(BatchesReply{std::move(recent)});
}

net::awaitable<json::object> ControlHandlers::execute(PruneRequest& r, PeerCred) {
  std::int64_t now = unix_ms();
  std::int64_t before = r.before_ms ? *r.before_ms : now - r.older_than_ms;
  // The guard kpsctl applies holds for every client of the socket (issue 31).
  if (auto allowed = prune_allowed(before, now, r.force || r.dry_run); !allowed)
    co_return to_json(ErrorReply{allowed.error().message});
  PruneFilter filter{r.state, std::nullopt};
  if (r.batch) {
    filter.batch_id = co_await batch_id_of(*r.batch);
    if (!filter.batch_id) co_return to_json(ErrorReply{"no batch " + *r.batch});
  }
  if (r.dry_run) {
    auto counts = co_await db_.call(
        [before, filter](Pruning& s) { return s.count_prunable(before, filter); });
    PrunePreviewReply preview;
    for (const auto& [key, n] : counts) {
      preview.counts.push_back({key.first, key.second, n});
      preview.would_prune += n;
    }
    preview.before_ms = before;
    co_return to_json(preview);
  }
  // Well inside kpsctl's 60 s reply timeout; kpsctl asks again while "more" is true.
  PruneProgress p = co_await prune_finished_jobs(db_, before, std::chrono::seconds(20), filter);
  metrics_.jobs_pruned += static_cast<std::uint64_t>(p.pruned);
  co_return to_json(PruneReply{p.pruned, p.more, before});
}

net::awaitable<json::object> ControlHandlers::execute(VersionRequest&, PeerCred) {
  int schema = db_.schema_version();
  co_return to_json(VersionReply{KPSD_VERSION, schema, static_cast<std::int64_t>(::getpid())});
}

std::string ControlHandlers::summary(const ControlRequest& r) {
  auto ids_text = [](const std::vector<std::int64_t>& ids) {
    std::string out = ids.size() == 1 ? "job " : "jobs ";
    for (std::size_t i = 0; i < ids.size() && i < 20; ++i) {
      out += (i ? " " : "") + std::to_string(ids[i]);
    }
    return ids.size() > 20 ? out + " and " + std::to_string(ids.size() - 20) + " more" : out;
  };
  auto of_batch = [](const std::optional<std::string>& b) {
    return b ? " of batch " + *b : std::string();
  };
  if (auto* q = std::get_if<RetryRequest>(&r)) {
    if (!q->ids.empty()) return "retry " + ids_text(q->ids);
    return "retry all " + std::string(to_string(q->state.value_or(JobState::failed))) + " jobs" +
           of_batch(q->batch);
  }
  if (auto* c = std::get_if<CancelRequest>(&r)) {
    return c->batch ? "cancel every unfinished job of batch " + *c->batch
                    : "cancel " + ids_text(c->ids);
  }
  if (auto* p = std::get_if<PauseRequest>(&r)) {
    return std::string(p->pause ? "pause" : "resume") + (p->batch ? " batch " + *p->batch : "");
  }
  if (std::holds_alternative<ReloadRequest>(r)) return "reload";
  if (auto* p = std::get_if<PruneRequest>(&r)) {
    std::string what =
        p->before_ms
            ? "prune finished jobs that ended before " + std::to_string(*p->before_ms)
            : "prune finished jobs older than " + std::to_string(p->older_than_ms / 1000) + " s";
    if (p->state) what += ", only " + std::string(to_string(*p->state));
    return what + of_batch(p->batch) + (p->dry_run ? " (dry run)" : "");
  }
  return "request";
}

net::awaitable<json::object> ControlHandlers::execute(ReloadRequest&, PeerCred) {
  if (!reload_) co_return to_json(ErrorReply{"reload is not available here"});
  ReloadOutcome outcome = reload_();
  ReloadReply reply{std::move(outcome.applied), std::move(outcome.need_restart), std::nullopt};
  if (!outcome.error.empty()) reply.error = outcome.error;
  co_return to_json(reply);
}

}  // namespace kpsd
