#pragma once
// The control protocol's replies as values, one struct per reply beside its request
// (control_protocol.hpp). Every reply is one JSON object: "ok": true, or "ok": false with
// "error" (the envelope), and the fields below. to_json writes a reply's fields without "ok"
// (the server adds it last: false when "error" is there); parse_reply reads them back, so
// parse(to_json(r)) == r for every reply (a round-trip test covers each). The wire is what
// docs/ and scripts read: fields are only ever added, never renamed. No I/O.
#include "core/result.hpp"
#include "model/job.hpp"
#include "model/job_records.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kpsd {

// "ok" and, on a refusal, "error": what every reply has.
struct ReplyEnvelope {
  bool ok = false;
  std::string error;  // "" when the reply has none
  bool operator==(const ReplyEnvelope&) const = default;
};

// A refusal with nothing else to say: {"error": ...}.
struct ErrorReply {
  std::string error;
  bool operator==(const ErrorReply&) const = default;
};

// enqueue: each job's id (or the id of the unfinished job its server already had), in order.
struct EnqueueReply {
  std::vector<EnqueueResult> jobs;
  std::int64_t batch_id = 0;
  bool operator==(const EnqueueReply&) const = default;
};

// list: a page of jobs; next_after_id when the page was full (there may be more).
struct ListReply {
  std::vector<Job> jobs;
  // Each job's newest X-Request-Id ("last_request_id"), in the order of `jobs`; empty when the
  // page was read without them (kpsctl's list is).
  std::vector<std::optional<std::string>> request_ids;
  std::optional<std::int64_t> next_after_id;
  bool operator==(const ListReply&) const = default;
};

// show: the job and its attempts, oldest first.
using ShowReply = JobDetail;

// A batch whose jobs are held, as stats lists them.
struct PausedBatchView {
  std::int64_t id = 0;
  std::optional<std::string> name;
  std::string reason;  // "operator", "canary", "failures"
  std::int64_t paused_at = 0;
  std::optional<std::string> detail;
  bool operator==(const PausedBatchView&) const = default;
};

// What kpsd is doing: the part of stats the status page's /api/overview shows too.
struct StatsView {
  std::map<JobState, std::int64_t> states;  // "total" is their sum, written, not kept
  std::int64_t in_flight = 0;
  double rate_per_second = 0;
  double send_rate_per_second = 0;
  double configured_rate_per_second = 0;
  double throttled_share = 0;
  struct Quota {
    bool holding = false;
    std::int64_t window_ms = 0;
    std::int64_t calls = 0;
    bool operator==(const Quota&) const = default;
  } quota;
  bool paused = false;
  bool stopping = false;
  std::optional<std::int64_t> oldest_queued_ms;
  struct Store {
    bool writable = true;
    std::int64_t outcomes_waiting = 0;
    std::optional<std::string> problem;       // set when not writable
    std::optional<std::int64_t> down_ms;      // set when not writable
    std::optional<std::string> read_problem;  // the counts could not be read
    bool operator==(const Store&) const = default;
  } store;
  struct Blocked {
    std::string reason;
    std::string cause;
    std::int64_t for_ms = 0;
    bool operator==(const Blocked&) const = default;
  };
  std::optional<Blocked> blocked;
  std::vector<PausedBatchView> paused_batches;
  bool operator==(const StatsView&) const = default;
};

// stats: the view, and what kpsctl wait and enqueue need besides.
struct StatsReply {
  StatsView view;
  std::int64_t now_ms = 0;
  std::int64_t max_id = 0;
  std::optional<std::int64_t> min_unfinished_id;  // null: every job has ended
  std::optional<Batch> batch;                     // stats --batch
  std::optional<bool> waiting;                    // a wait request: its jobs not all ended
  bool operator==(const StatsReply&) const = default;
};

// batches: the newest batches first.
struct BatchesReply {
  std::vector<Batch> batches;
  bool operator==(const BatchesReply&) const = default;
};

// prune --dry-run: what would go, per batch and state ("dry_run": true on the wire).
struct PruneCount {
  std::int64_t batch_id = 0;  // 0: jobs of no batch
  JobState state = JobState::succeeded;
  std::int64_t jobs = 0;
  bool operator==(const PruneCount&) const = default;
};
struct PrunePreviewReply {
  std::int64_t would_prune = 0;
  std::vector<PruneCount> counts;
  std::int64_t before_ms = 0;
  bool operator==(const PrunePreviewReply&) const = default;
};
// prune: what one request deleted; kpsctl asks again while `more`.
struct PruneReply {
  std::int64_t pruned = 0;
  bool more = false;
  std::int64_t before_ms = 0;
  bool operator==(const PruneReply&) const = default;
};

struct VersionReply {
  std::string version;
  std::int64_t schema_version = 0;
  std::int64_t pid = 0;
  bool operator==(const VersionReply&) const = default;
};

// retry of a state or a batch: how many jobs went which way.
struct RetryCountsReply {
  std::int64_t requeued = 0;
  std::int64_t rechecking = 0;
  std::int64_t skipped_key_gone = 0;
  std::int64_t skipped_call_in_flight = 0;
  std::int64_t skipped_server_busy = 0;
  std::optional<std::int64_t> batch_id;  // retry --batch
  bool operator==(const RetryCountsReply&) const = default;
};

// cancel --batch.
struct CancelBatchReply {
  std::int64_t batch_id = 0;
  std::int64_t cancelled = 0;
  bool operator==(const CancelBatchReply&) const = default;
};

// retry or cancel of job ids: one result each, the first refusal as the error. On the wire
// several results are {"results": [...], "error"?}; one job keeps the shape it had before
// several could be given: {"id", "result"} when done, {"error"} alone when refused (here:
// no results, the error).
struct JobResult {
  std::int64_t id = 0;
  std::optional<std::string> result;  // what was done ...
  std::optional<std::string> error;   // ... or why not: one of the two
  bool operator==(const JobResult&) const = default;
};
struct PerJobReply {
  std::vector<JobResult> results;
  std::optional<std::string> error;
  bool operator==(const PerJobReply&) const = default;
};

// pause and resume: of all calls, or of one batch ("held" or "released" jobs, by `paused`).
struct PauseReply {
  bool paused = false;
  struct OfBatch {
    std::int64_t batch_id = 0;
    std::int64_t jobs = 0;  // held (pause) or released (resume)
    bool changed = false;   // false: it was already so
    bool operator==(const OfBatch&) const = default;
  };
  std::optional<OfBatch> batch;
  bool operator==(const PauseReply&) const = default;
};

// reload: what was applied and what waits for a restart; "error" when not all of it was.
struct ReloadReply {
  std::vector<std::string> applied;
  std::vector<std::string> need_restart;
  std::optional<std::string> error;
  bool operator==(const ReloadReply&) const = default;
};

// The envelope alone, "ok" first: what the server sends when a request line is not even read
// (error_reply).
boost::json::object to_json(const ReplyEnvelope& r);
// Each reply's fields as JSON, without "ok" (control_reply_json.cpp, stats_reply_json.cpp).
boost::json::object to_json(const ErrorReply& r);
boost::json::object to_json(const EnqueueReply& r);
boost::json::object to_json(const ListReply& r);
boost::json::object to_json(const ShowReply& r);
boost::json::object to_json(const StatsView& r);
boost::json::object to_json(const StatsReply& r);
boost::json::object to_json(const BatchesReply& r);
boost::json::object to_json(const PrunePreviewReply& r);
boost::json::object to_json(const PruneReply& r);
boost::json::object to_json(const VersionReply& r);
boost::json::object to_json(const RetryCountsReply& r);
boost::json::object to_json(const CancelBatchReply& r);
boost::json::object to_json(const PerJobReply& r);
boost::json::object to_json(const PauseReply& r);
boost::json::object to_json(const ReloadReply& r);

// A reply read (control_reply_parse.cpp, stats_reply_json.cpp): the struct, or why not, naming
// the field ("jobs[2].state must be a string"). Fields kpsd added later are ignored; "ok" is
// the envelope's. Defined for each reply type below.
template <class Reply>
Result<Reply> parse_reply(const boost::json::value& v);
template <>
Result<ReplyEnvelope> parse_reply(const boost::json::value& v);
template <>
Result<ErrorReply> parse_reply(const boost::json::value& v);
template <>
Result<EnqueueReply> parse_reply(const boost::json::value& v);
template <>
Result<ListReply> parse_reply(const boost::json::value& v);
template <>
Result<ShowReply> parse_reply(const boost::json::value& v);
template <>
Result<StatsView> parse_reply(const boost::json::value& v);
template <>
Result<StatsReply> parse_reply(const boost::json::value& v);
template <>
Result<BatchesReply> parse_reply(const boost::json::value& v);
template <>
Result<PrunePreviewReply> parse_reply(const boost::json::value& v);
template <>
Result<PruneReply> parse_reply(const boost::json::value& v);
template <>
Result<VersionReply> parse_reply(const boost::json::value& v);
template <>
Result<RetryCountsReply> parse_reply(const boost::json::value& v);
template <>
Result<CancelBatchReply> parse_reply(const boost::json::value& v);
template <>
Result<PerJobReply> parse_reply(const boost::json::value& v);
template <>
Result<PauseReply> parse_reply(const boost::json::value& v);
template <>
Result<ReloadReply> parse_reply(const boost::json::value& v);

}  // namespace kpsd
