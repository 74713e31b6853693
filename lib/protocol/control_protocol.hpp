#pragma once
// The control protocol's requests and replies as values: parsing and validation of one request
// line, and the JSON shapes of jobs and attempts. No I/O; the ControlServer does that.
#include "core/result.hpp"
#include "model/job.hpp"
#include "model/job_records.hpp"
#include "protocol/job_json.hpp"

#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace kpsd {

inline constexpr std::size_t max_request_line = 1024 * 1024;  // bytes, newline excluded
inline constexpr std::size_t max_jobs_per_enqueue = 10000;
inline constexpr std::size_t max_auth_key_bytes = 64 * 1024;

struct EnqueueRequest {
  std::vector<NewJob> jobs;
  BatchTarget batch;  // "batch_id": a later chunk of the same enqueue; "batch": a new batch's name
  bool operator==(const EnqueueRequest&) const = default;
};
struct ListRequest {
  ListQuery query;
  std::optional<std::string> batch;  // id or name; resolved to query.batch_id by the server
  bool operator==(const ListRequest&) const = default;
};
struct ShowRequest {
  std::int64_t id = 0;
  bool operator==(const ShowRequest&) const = default;
};
struct StatsRequest {
  std::optional<std::string> batch;  // this batch's jobs only (id or name)
  // A bare `kpsctl wait`: jobs with ids from min_id to max_id that had not finished at `since`
  // (ms).
  struct UnfinishedSince {
    std::int64_t min_id = 0;
    std::int64_t max_id = 0;
    std::int64_t since = 0;
    bool operator==(const UnfinishedSince&) const = default;
  };
  std::optional<UnfinishedSince> unfinished_since;
  // The caller waits for these jobs to finish: while any is unfinished the reply says
  // "waiting": true and counts nothing (a seek, not a count of a million rows).
  bool wait = false;
  bool operator==(const StatsRequest&) const = default;
};
struct BatchesRequest {
  std::int64_t limit = 20;
  bool operator==(const BatchesRequest&) const = default;
};
struct PruneRequest {
  std::int64_t older_than_ms = 0;         // finished jobs that ended longer ago than this ...
  std::optional<std::int64_t> before_ms;  // ... or before this time (a later request of a run)
  std::optional<JobState> state;          // only this final state
  std::optional<std::string> batch;       // only this batch's jobs (id or name)
  bool dry_run = false;                   // count per batch and state; delete nothing
  // kpsd refuses a cut-off in the future, and one under min_prune_age_ms ago without this.
  bool force = false;
  bool operator==(const PruneRequest&) const = default;
};
// Jobs that ended less than this long ago are pruned only with `force` (kpsctl prune --force):
// a young cut deletes what an operator may still report on or retry.
inline constexpr std::int64_t min_prune_age_ms = 3600 * 1000;
struct VersionRequest {
  bool operator==(const VersionRequest&) const = default;
};
// At most this many job ids in one cancel or retry request.
inline constexpr std::size_t max_ids_per_request = 10000;

struct RetryRequest {
  std::vector<std::int64_t> ids;     // these jobs ...
  std::optional<JobState> state;     // ... or every job in this state (failed or cancelled)
  std::optional<std::string> batch;  // ... of this batch (id or name; state failed if unset)
  bool operator==(const RetryRequest&) const = default;
};
struct CancelRequest {
  std::vector<std::int64_t> ids;     // these jobs ...
  std::optional<std::string> batch;  // ... or every unfinished job of this batch
  bool operator==(const CancelRequest&) const = default;
};
struct PauseRequest {
  bool pause = true;                 // false: resume
  std::optional<std::string> batch;  // this batch only (its queued jobs held); unset: all calls
  bool operator==(const PauseRequest&) const = default;
};
// Re-read the configuration and credential files and apply them, answering once applied (or
// with the reason nothing was): what `systemctl reload` waits for (kpsctl reload).
struct ReloadRequest {
  bool operator==(const ReloadRequest&) const = default;
};

using ControlRequest = std::variant<EnqueueRequest, ListRequest, ShowRequest, StatsRequest,
                                    RetryRequest, CancelRequest, PauseRequest, BatchesRequest,
                                    PruneRequest, VersionRequest, ReloadRequest>;

// Requests that change state; the server logs the peer's uid and pid for these.
inline bool changes_state(const ControlRequest& r) {
  return !std::holds_alternative<ListRequest>(r) && !std::holds_alternative<ShowRequest>(r) &&
         !std::holds_alternative<StatsRequest>(r) && !std::holds_alternative<BatchesRequest>(r) &&
         !std::holds_alternative<VersionRequest>(r);
}

// Parses one request line. A failure names the offending field (never its value when the field
// is a secret).
Result<ControlRequest> parse_control_request(std::string_view line);

// The request as one line's JSON object, as kpsctl sends it and parse_control_request reads it
// back: parse(to_json(r)) == r for every op. An enqueue's object uses zeroing storage (it may
// carry job keys).
boost::json::object to_json(const ControlRequest& request);

std::string error_reply(std::string_view message);  // {"ok":false,"error":...} + '\n'

}  // namespace kpsd
