#include "protocol/control_protocol.hpp"

#include "core/zeroing_storage.hpp"
#include "protocol/control_reply.hpp"
#include "protocol/duplicate_keys.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <vector>

namespace kpsd {

namespace json = boost::json;

namespace {

struct Invalid {
  std::string message;
};

std::int64_t integer_field(const json::object& o, std::string_view key, std::int64_t min,
                           std::int64_t max, std::string_view where) {
  const json::value& v = o.at(key);
  std::int64_t n = 0;
  if (v.is_int64()) {
    n = v.as_int64();
  } else if (v.is_uint64() && v.as_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
    n = static_cast<std::int64_t>(v.as_uint64());
  } else {
    throw Invalid{std::string(where) + std::string(key) + " must be an integer"};
  }
  if (n < min || n > max) {
    throw Invalid{std::string(where) + std::string(key) + " must be between " +
                  std::to_string(min) + " and " + std::to_string(max)};
  }
  return n;
}

std::string string_field(const json::object& o, std::string_view key, std::string_view where) {
  const json::value& v = o.at(key);
  if (!v.is_string()) throw Invalid{std::string(where) + std::string(key) + " must be a string"};
  return std::string(v.as_string());
}

void reject_unknown(const json::object& o, std::initializer_list<std::string_view> known,
                    std::string_view where) {
  for (const auto& kv : o) {
    bool ok = false;
    for (auto k : known) ok = ok || kv.key() == k;
    if (!ok) throw Invalid{"unknown field " + std::string(where) + std::string(kv.key())};
  }
}

// A batch named by id (a number, or digits in a string) or by name; a name is checked as
// enqueue checks it, on every op, before anything logs it (issue 31).
std::string batch_field(const json::object& o) {
  const json::value& v = o.at("batch");
  if (v.is_int64() && v.as_int64() > 0) return std::to_string(v.as_int64());
  if (!v.is_string() || v.as_string().empty() || v.as_string().size() > 64) {
    throw Invalid{"batch must be a batch id or name (1 to 64 characters)"};
  }
  std::string_view text = v.as_string();
  bool digits = std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) {
    if (auto valid = validate_batch_name(text); !valid) throw Invalid{valid.error().message};
  }
  return std::string(text);
}

NewJob parse_job(const json::value& v, std::size_t index) {
  std::string where = "jobs[" + std::to_string(index) + "].";
  if (!v.is_object()) throw Invalid{"jobs[" + std::to_string(index) + "] must be an object"};
  const json::object& o = v.as_object();
  reject_unknown(o, {"server_id", "port", "auth"}, where);
  if (!o.contains("server_id")) throw Invalid{where + "server_id is missing"};
  NewJob job;
  job.server_id = string_field(o, "server_id", where);
  if (auto valid = validate_server_id(job.server_id); !valid) {
    throw Invalid{where + valid.error().message};
  }
  if (o.contains("port")) job.port = integer_field(o, "port", 1, 65535, where);
  if (o.contains("auth")) {
    const json::value& a = o.at("auth");
    std::string aw = where + "auth.";
    if (!a.is_object()) throw Invalid{where + "auth must be an object"};
    const json::object& ao = a.as_object();
    reject_unknown(ao, {"type", "key"}, aw);
    if (!ao.contains("type")) throw Invalid{aw + "type is missing"};
    if (!ao.contains("key")) throw Invalid{aw + "key is missing"};
    std::string type = string_field(ao, "type", aw);
    if (type != "password" && type != "keypair") {
      throw Invalid{aw + "type must be \"password\" or \"keypair\""};
    }
    if (!ao.at("key").is_string()) throw Invalid{aw + "key must be a string"};
    const json::string& key = ao.at("key").as_string();
    if (key.empty()) throw Invalid{aw + "key is empty"};
    if (key.size() > max_auth_key_bytes) throw Invalid{aw + "key is longer than 64 KiB"};
    job.auth = JobAuth{type, Secret(std::string(key))};
  }
  return job;
}

}  // namespace

namespace {

// A new batch's brakes: "canary": N and "max_failures": N or "P%".
void parse_brakes(const json::object& o, Brakes& brakes) {
  if (o.contains("canary")) brakes.canary = integer_field(o, "canary", 0, INT64_MAX, "");
  if (o.contains("max_failures")) {
    const json::value& v = o.at("max_failures");
    std::string text = v.is_string()  ? std::string(v.as_string())
                       : v.is_int64() ? std::to_string(v.as_int64())
                                      : std::string();
    auto with_budget = parse_max_failures(text, brakes);
    if (!with_budget) throw Invalid{"max_failures " + with_budget.error().message};
    brakes = *with_budget;
  }
  if ((brakes.canary || brakes.max_failures || brakes.max_failure_pct) && o.contains("batch_id")) {
    throw Invalid{"canary and max_failures are set when a batch is made, not with batch_id"};
  }
}

ControlRequest parse_enqueue(const json::object& o) {
  reject_unknown(o, {"op", "jobs", "batch", "batch_id", "canary", "max_failures"}, "");
  if (!o.contains("jobs")) throw Invalid{"jobs is missing"};
  if (!o.at("jobs").is_array()) throw Invalid{"jobs must be an array"};
  const json::array& arr = o.at("jobs").as_array();
  if (arr.empty()) throw Invalid{"jobs is empty"};
  if (arr.size() > max_jobs_per_enqueue) {
    throw Invalid{"jobs holds more than " + std::to_string(max_jobs_per_enqueue) +
                  " entries; send them in chunks"};
  }
  EnqueueRequest r;
  if (o.contains("batch") && o.contains("batch_id")) {
    throw Invalid{"give batch (a new batch's name) or batch_id (an existing batch), not both"};
  }
  if (o.contains("batch_id")) r.batch.id = integer_field(o, "batch_id", 1, INT64_MAX, "");
  if (o.contains("batch")) {
    std::string name = string_field(o, "batch", "");
    if (auto valid = validate_batch_name(name); !valid) throw Invalid{valid.error().message};
    r.batch.name = name;
  }
  parse_brakes(o, r.batch.brakes);
  r.jobs.reserve(arr.size());
  for (std::size_t i = 0; i < arr.size(); ++i) r.jobs.push_back(parse_job(arr[i], i));
  return r;
}

ControlRequest parse_list(const json::object& o) {
  reject_unknown(o, {"op", "state", "server_id", "limit", "after_id", "batch", "maybe_done"}, "");
  ListRequest r;
  if (o.contains("maybe_done")) {
    if (!o.at("maybe_done").is_bool()) throw Invalid{"maybe_done must be true or false"};
    r.query.maybe_done = o.at("maybe_done").as_bool();
  }
  if (o.contains("batch")) r.batch = batch_field(o);
  if (o.contains("state")) {
    std::string s = string_field(o, "state", "");
    auto state = parse_job_state(s);
    if (!state) throw Invalid{"state \"" + s + "\" is not a job state"};
    r.query.state = state;
  }
  if (o.contains("server_id")) r.query.server_id = string_field(o, "server_id", "");
  if (o.contains("limit")) r.query.limit = integer_field(o, "limit", 1, 10000, "");
  if (o.contains("after_id")) r.query.after_id = integer_field(o, "after_id", 0, INT64_MAX, "");
  return r;
}

ControlRequest parse_show(const json::object& o) {
  reject_unknown(o, {"op", "id"}, "");
  if (!o.contains("id")) throw Invalid{"id is missing"};
  return ShowRequest{integer_field(o, "id", 1, INT64_MAX, "")};
}

ControlRequest parse_stats(const json::object& o) {
  reject_unknown(o, {"op", "batch", "unfinished_since", "wait"}, "");
  StatsRequest r;
  if (o.contains("wait")) {
    if (!o.at("wait").is_bool()) throw Invalid{"wait must be true or false"};
    r.wait = o.at("wait").as_bool();
  }
  if (o.contains("batch")) r.batch = batch_field(o);
  if (o.contains("unfinished_since")) {
    const json::value& u = o.at("unfinished_since");
    if (!u.is_object()) throw Invalid{"unfinished_since must be an object"};
    const json::object& uo = u.as_object();
    reject_unknown(uo, {"min_id", "max_id", "since"}, "unfinished_since.");
    if (!uo.contains("min_id") || !uo.contains("max_id") || !uo.contains("since")) {
      throw Invalid{"unfinished_since needs min_id, max_id and since"};
    }
    r.unfinished_since = StatsRequest::UnfinishedSince{
        integer_field(uo, "min_id", 0, INT64_MAX, "unfinished_since."),
        integer_field(uo, "max_id", 0, INT64_MAX, "unfinished_since."),
        integer_field(uo, "since", 0, INT64_MAX, "unfinished_since.")};
  }
  if (r.batch && r.unfinished_since) throw Invalid{"give batch or unfinished_since, not both"};
  return r;
}

ControlRequest parse_batches(const json::object& o) {
  reject_unknown(o, {"op", "limit"}, "");
  BatchesRequest r;
  if (o.contains("limit")) r.limit = integer_field(o, "limit", 1, 10000, "");
  return r;
}

ControlRequest parse_prune(const json::object& o) {
  reject_unknown(o, {"op", "older_than_ms", "before_ms", "state", "batch", "dry_run", "force"}, "");
  if (o.contains("older_than_ms") == o.contains("before_ms")) {
    throw Invalid{"give older_than_ms or before_ms"};
  }
  PruneRequest r;
  if (o.contains("state")) {
    std::string s = string_field(o, "state", "");
    auto state = parse_job_state(s);
    if (!state || !is_terminal(*state)) {
      throw Invalid{"state \"" + s + "\": only succeeded, failed or cancelled jobs are pruned"};
    }
    r.state = state;
  }
  if (o.contains("batch")) r.batch = batch_field(o);
  if (o.contains("dry_run")) {
    if (!o.at("dry_run").is_bool()) throw Invalid{"dry_run must be true or false"};
    r.dry_run = o.at("dry_run").as_bool();
  }
  if (o.contains("force")) {
    if (!o.at("force").is_bool()) throw Invalid{"force must be true or false"};
    r.force = o.at("force").as_bool();
  }
  if (o.contains("older_than_ms")) {
    r.older_than_ms = integer_field(o, "older_than_ms", 0, INT64_MAX / 2, "");
  } else {
    r.before_ms = integer_field(o, "before_ms", 0, INT64_MAX / 2, "");
  }
  return r;
}

ControlRequest parse_version(const json::object& o) {
  reject_unknown(o, {"op"}, "");
  return VersionRequest{};
}

// "id": N (one job) or "ids": [N, ...] (up to max_ids_per_request); empty when neither is there.
std::vector<std::int64_t> job_ids(const json::object& o) {
  if (o.contains("id") && o.contains("ids")) throw Invalid{"give id or ids, not both"};
  if (o.contains("id")) return {integer_field(o, "id", 1, INT64_MAX, "")};
  if (!o.contains("ids")) return {};
  if (!o.at("ids").is_array()) throw Invalid{"ids must be an array of job ids"};
  const json::array& a = o.at("ids").as_array();
  if (a.empty()) throw Invalid{"ids is empty"};
  if (a.size() > max_ids_per_request) {
    throw Invalid{"ids holds more than " + std::to_string(max_ids_per_request) + " job ids"};
  }
  std::vector<std::int64_t> ids;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!a[i].is_int64() || a[i].as_int64() < 1) {
      throw Invalid{"ids[" + std::to_string(i) + "] must be a job id (a positive integer)"};
    }
    ids.push_back(a[i].as_int64());
  }
  return ids;
}

ControlRequest parse_retry(const json::object& o) {
  reject_unknown(o, {"op", "id", "ids", "state", "batch"}, "");
  RetryRequest r;
  r.ids = job_ids(o);
  if (o.contains("state")) {
    std::string s = string_field(o, "state", "");
    if (s != "failed" && s != "cancelled")
      throw Invalid{"state must be \"failed\" or \"cancelled\""};
    r.state = parse_job_state(s);
  }
  if (o.contains("batch")) r.batch = batch_field(o);
  bool many = r.state.has_value() || r.batch.has_value();
  if (r.ids.empty() == !many) throw Invalid{"give job ids, or state and/or batch"};
  return r;
}

ControlRequest parse_cancel(const json::object& o) {
  reject_unknown(o, {"op", "id", "ids", "batch"}, "");
  CancelRequest r;
  r.ids = job_ids(o);
  if (o.contains("batch")) r.batch = batch_field(o);
  if (r.ids.empty() == !r.batch.has_value()) throw Invalid{"give job ids or a batch"};
  return r;
}

ControlRequest parse_pause(const json::object& o) {
  reject_unknown(o, {"op", "batch"}, "");
  PauseRequest r{true, std::nullopt};
  if (o.contains("batch")) r.batch = batch_field(o);
  return r;
}

ControlRequest parse_resume(const json::object& o) {
  reject_unknown(o, {"op", "batch"}, "");
  PauseRequest r{false, std::nullopt};
  if (o.contains("batch")) r.batch = batch_field(o);
  return r;
}

ControlRequest parse_reload(const json::object& o) {
  reject_unknown(o, {"op"}, "");
  return ReloadRequest{};
}

using OpParser = ControlRequest (*)(const json::object& o);

// Every op and its parser: one line an op.
constexpr std::pair<std::string_view, OpParser> op_parsers[] = {
    {"enqueue", parse_enqueue}, {"list", parse_list},       {"show", parse_show},
    {"stats", parse_stats},     {"batches", parse_batches}, {"prune", parse_prune},
    {"version", parse_version}, {"retry", parse_retry},     {"cancel", parse_cancel},
    {"pause", parse_pause},     {"resume", parse_resume},   {"reload", parse_reload},
};

}  // namespace

Result<ControlRequest> parse_control_request(std::string_view line) {
  boost::system::error_code ec;
  json::value v = parse_json_zeroing(line, ec);  // it may carry a job's key
  if (ec) return fail("request is not valid JSON: " + ec.message());
  if (!v.is_object()) return fail("request must be a JSON object");
  if (auto key = find_duplicate_key(line))
    return fail("duplicate key \"" + *key + "\" in the request");
  const json::object& o = v.as_object();
  try {
    if (!o.contains("op")) throw Invalid{"op is missing"};
    std::string op = string_field(o, "op", "");
    for (const auto& [name, parse] : op_parsers) {
      if (name == op) return parse(o);
    }
    throw Invalid{"unknown op \"" + op + "\""};
  } catch (const Invalid& e) {
    return fail(e.message);
  }
}

std::string error_reply(std::string_view message) {
  return json::serialize(to_json(ReplyEnvelope{false, std::string(message)})) + "\n";
}

}  // namespace kpsd
