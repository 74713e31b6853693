// The control protocol's requests as JSON: what kpsctl sends, built from the same typed
// requests parse_control_request returns, so the two ends share one definition of the wire
// (a round-trip test covers every op).
#include "core/zeroing_storage.hpp"
#include "protocol/control_protocol.hpp"

#include <boost/json.hpp>

namespace kpsd {

namespace json = boost::json;

namespace {

json::object job_json(const NewJob& j) {
  json::object o({{"server_id", j.server_id}}, zeroing_storage());  // may hold a key
  if (j.port) o["port"] = *j.port;
  if (j.auth) {
    json::object auth(zeroing_storage());
    auth["type"] = j.auth->type;
    auth["key"] = j.auth->key.reveal();
    o["auth"] = std::move(auth);
  }
  return o;
}

// "batch" is a batch's id (digits) or name, sent as the string the operator gave.
void put_batch(json::object& o, const std::optional<std::string>& batch) {
  if (batch) o["batch"] = *batch;
}

// One job as "id": N (as before there were several), more as "ids": [...].
void put_ids(json::object& o, const std::vector<std::int64_t>& ids) {
  if (ids.size() == 1) {
    o["id"] = ids.front();
  } else if (!ids.empty()) {
    json::array a;
    for (std::int64_t id : ids) a.push_back(id);
    o["ids"] = std::move(a);
  }
}

struct ToJson {
  json::object operator()(const EnqueueRequest& r) const {
    json::object o({{"op", "enqueue"}}, zeroing_storage());
    json::array jobs(zeroing_storage());
    for (const NewJob& j : r.jobs) jobs.push_back(job_json(j));
    o["jobs"] = std::move(jobs);
    if (r.batch.id) o["batch_id"] = *r.batch.id;
    if (r.batch.name) o["batch"] = *r.batch.name;
    if (r.batch.brakes.canary) o["canary"] = *r.batch.brakes.canary;
    if (r.batch.brakes.max_failures) o["max_failures"] = *r.batch.brakes.max_failures;
    if (r.batch.brakes.max_failure_pct) o["max_failures"] = describe_max_failures(r.batch.brakes);
    return o;
  }
  json::object operator()(const ListRequest& r) const {
    json::object o{{"op", "list"}, {"limit", r.query.limit}, {"after_id", r.query.after_id}};
    if (r.query.state) o["state"] = to_string(*r.query.state);
    if (r.query.server_id) o["server_id"] = *r.query.server_id;
    if (r.query.maybe_done) o["maybe_done"] = true;
    put_batch(o, r.batch);
    return o;
  }
  json::object operator()(const ShowRequest& r) const { return {{"op", "show"}, {"id", r.id}}; }
  json::object operator()(const StatsRequest& r) const {
    json::object o{{"op", "stats"}};
    if (r.wait) o["wait"] = true;
    put_batch(o, r.batch);
    if (const auto& u = r.unfinished_since) {
      o["unfinished_since"] = {{"min_id", u->min_id}, {"max_id", u->max_id}, {"since", u->since}};
    }
    return o;
  }
  json::object operator()(const RetryRequest& r) const {
    json::object o{{"op", "retry"}};
    put_ids(o, r.ids);
    if (r.state) o["state"] = to_string(*r.state);
    put_batch(o, r.batch);
    return o;
  }
  json::object operator()(const CancelRequest& r) const {
    json::object o{{"op", "cancel"}};
    put_ids(o, r.ids);
    put_batch(o, r.batch);
    return o;
  }
  json::object operator()(const PauseRequest& r) const {
    json::object o{{"op", r.pause ? "pause" : "resume"}};
    put_batch(o, r.batch);
    return o;
  }
  json::object operator()(const BatchesRequest& r) const {
    return {{"op", "batches"}, {"limit", r.limit}};
  }
  json::object operator()(const PruneRequest& r) const {
    json::object o{{"op", "prune"}};
    if (r.before_ms) {
      o["before_ms"] = *r.before_ms;
    } else {
      o["older_than_ms"] = r.older_than_ms;
    }
    if (r.state) o["state"] = to_string(*r.state);
    put_batch(o, r.batch);
    if (r.dry_run) o["dry_run"] = true;
    if (r.force) o["force"] = true;
    return o;
  }
  json::object operator()(const VersionRequest&) const { return {{"op", "version"}}; }
  json::object operator()(const ReloadRequest&) const { return {{"op", "reload"}}; }
};

}  // namespace

json::object to_json(const ControlRequest& request) { return std::visit(ToJson{}, request); }

}  // namespace kpsd
