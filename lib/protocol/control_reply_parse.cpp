// The control replies read back from JSON: what kpsctl shows comes from these structs, so a
// field renamed on one side is a parse error naming it, in the round-trip test and at run time,
// never a silent "" or 0. Stats is in stats_reply_json.cpp.
#include "protocol/control_reply.hpp"
#include "protocol/job_json.hpp"
#include "protocol/json_fields.hpp"

#include <boost/json.hpp>

namespace kpsd {

namespace json = boost::json;

namespace {

JobResult job_result_of(const JsonFields& f) {
  JobResult r{f.int64("id"), f.opt_string("result"), f.opt_string("error")};
  if (!r.result && !r.error) f.fail("result", "is missing");
  return r;
}

}  // namespace

template <>
Result<ReplyEnvelope> parse_reply(const json::value& v) {
  return read_reply<ReplyEnvelope>(v, [](const JsonFields& f, ReplyEnvelope& r) {
    r.ok = f.boolean("ok");
    r.error = f.opt_string("error").value_or("");
  });
}

template <>
Result<ErrorReply> parse_reply(const json::value& v) {
  return read_reply<ErrorReply>(
      v, [](const JsonFields& f, ErrorReply& r) { r.error = f.string("error"); });
}

template <>
Result<EnqueueReply> parse_reply(const json::value& v) {
  return read_reply<EnqueueReply>(v, [](const JsonFields& f, EnqueueReply& r) {
    r.jobs = f.objects("jobs", [](const JsonFields& j) {
      return EnqueueResult{j.int64("id"), j.boolean("existing")};
    });
    r.batch_id = f.int64("batch_id");
  });
}

template <>
Result<ListReply> parse_reply(const json::value& v) {
  return read_reply<ListReply>(v, [](const JsonFields& f, ListReply& r) {
    r.jobs = f.objects("jobs", job_from_json);
    // Request ids come with every job of the page, or with none.
    auto ids = f.objects("jobs", [](const JsonFields& j) {
      return std::pair(j.has("last_request_id"), j.opt_string("last_request_id"));
    });
    if (!ids.empty() && ids.front().first) {
      for (auto& entry : ids) r.request_ids.push_back(std::move(entry.second));
    }
    r.next_after_id = f.opt_int64("next_after_id");
  });
}

template <>
Result<ShowReply> parse_reply(const json::value& v) {
  return read_reply<ShowReply>(v, [](const JsonFields& f, ShowReply& r) {
    r.job = job_from_json(f.object("job"));
    r.attempts = f.objects("attempts", attempt_from_json);
  });
}

template <>
Result<BatchesReply> parse_reply(const json::value& v) {
  return read_reply<BatchesReply>(v, [](const JsonFields& f, BatchesReply& r) {
    r.batches = f.objects("batches", batch_from_json);
  });
}

template <>
Result<PrunePreviewReply> parse_reply(const json::value& v) {
  return read_reply<PrunePreviewReply>(v, [](const JsonFields& f, PrunePreviewReply& r) {
    if (!f.boolean("dry_run")) f.fail("dry_run", "must be true in a dry run's reply");
    r.would_prune = f.int64("would_prune");
    r.counts = f.objects("counts", [](const JsonFields& c) {
      auto state = parse_job_state(c.string("state"));
      if (!state) c.fail("state", "is not a job state");
      return PruneCount{c.int64("batch_id"), *state, c.int64("jobs")};
    });
    r.before_ms = f.int64("before_ms");
  });
}

template <>
Result<PruneReply> parse_reply(const json::value& v) {
  return read_reply<PruneReply>(v, [](const JsonFields& f, PruneReply& r) {
    r.pruned = f.int64("pruned");
    r.more = f.boolean("more");
    r.before_ms = f.int64("before_ms");
  });
}

template <>
Result<VersionReply> parse_reply(const json::value& v) {
  return read_reply<VersionReply>(v, [](const JsonFields& f, VersionReply& r) {
    r.version = f.string("version");
    r.schema_version = f.int64("schema_version");
    r.pid = f.int64("pid");
  });
}

template <>
Result<RetryCountsReply> parse_reply(const json::value& v) {
  return read_reply<RetryCountsReply>(v, [](const JsonFields& f, RetryCountsReply& r) {
    r.requeued = f.int64("requeued");
    r.rechecking = f.int64("rechecking");
    r.skipped_key_gone = f.int64("skipped_key_gone");
    r.skipped_call_in_flight = f.int64("skipped_call_in_flight");
    r.skipped_server_busy = f.int64("skipped_server_busy");
    r.batch_id = f.opt_int64("batch_id");
  });
}

template <>
Result<CancelBatchReply> parse_reply(const json::value& v) {
  return read_reply<CancelBatchReply>(v, [](const JsonFields& f, CancelBatchReply& r) {
    r.batch_id = f.int64("batch_id");
    r.cancelled = f.int64("cancelled");
  });
}

template <>
Result<PerJobReply> parse_reply(const json::value& v) {
  return read_reply<PerJobReply>(v, [](const JsonFields& f, PerJobReply& r) {
    if (f.has("results")) {
      r.results = f.objects("results", job_result_of);
      r.error = f.opt_string("error");
    } else if (f.has("id")) {
      r.results.push_back(job_result_of(f));  // one job, done
    } else {
      r.error = f.string("error");  // one job, refused
    }
  });
}

template <>
Result<PauseReply> parse_reply(const json::value& v) {
  return read_reply<PauseReply>(v, [](const JsonFields& f, PauseReply& r) {
    r.paused = f.boolean("paused");
    if (f.has("batch_id")) {
      r.batch = PauseReply::OfBatch{f.int64("batch_id"), f.int64(r.paused ? "held" : "released"),
                                    f.boolean("changed")};
    }
  });
}

template <>
Result<ReloadReply> parse_reply(const json::value& v) {
  return read_reply<ReloadReply>(v, [](const JsonFields& f, ReloadReply& r) {
    r.applied = f.strings("applied");
    r.need_restart = f.strings("need_restart");
    r.error = f.opt_string("error");
  });
}

}  // namespace kpsd
