// kpsctl retry, cancel, pause and resume: one job, several, every job in a state, or a batch.
#include "ctl/commands.hpp"
#include "ctl/control_client.hpp"
#include "protocol/control_protocol.hpp"

#include <boost/json.hpp>

#include <iostream>

namespace kpsd::ctl {

namespace json = boost::json;

namespace {

void print_retry_counts(const RetryCountsReply& reply) {
  std::cout << "requeued " << reply.requeued << ", rechecking " << reply.rechecking
            << " pending tasks";
  if (auto skipped = reply.skipped_key_gone) {
    std::cout << "; skipped " << skipped
              << " replace-form jobs whose key is gone (enqueue them again with their key)";
  }
  if (auto skipped = reply.skipped_call_in_flight) {
    std::cout << "; skipped " << skipped
              << " cancelled jobs whose call is still in flight (retry once it has ended)";
  }
  if (auto skipped = reply.skipped_server_busy) {
    std::cout << "; skipped " << skipped
              << " jobs whose server already has an unfinished job (one per server)";
  }
  std::cout << "\n";
}

// A reply to several job ids: one line per job ("job 7: cancelled"), refusals on stderr; exit
// 1 when any was refused.
int print_per_job(const Options& opt, const json::object& raw) {
  auto parsed = parse_reply<PerJobReply>(raw);
  if (!parsed) return fail(opt, exit_failed, bad_reply(parsed.error().message));
  const PerJobReply& reply = *parsed;
  bool all_ok = !reply.error;
  if (opt.json()) {
    print_json(raw);
    return all_ok ? exit_ok : exit_failed;
  }
  if (reply.results.empty() && reply.error) {  // one job, refused
    print_error("kpsd refused the request: " + printable(*reply.error));
  }
  for (const JobResult& r : reply.results) {
    if (r.error) {
      print_error(text_of(r.error));
    } else {
      std::cout << "job " << r.id << ": " << text_of(r.result) << "\n";
    }
  }
  return all_ok ? exit_ok : exit_failed;
}

}  // namespace

namespace {

// retry and cancel have one shape: several job ids get a line each; a state or a batch gets
// counts, printed by `print_counts`.
template <class Request, class Counts>
int send_bulk(const Options& opt, const BulkArgs& a, Request req,
              void (*print_counts)(const Counts&)) {
  ControlClient client(opt.socket);
  req.ids = a.ids;
  if (!a.batch.empty()) req.batch = a.batch;
  if (!a.ids.empty()) return print_per_job(opt, client.request(to_json(req)));
  json::object raw;
  auto reply = ask_for<Counts>(opt, client, to_json(req), &raw);
  if (!reply) return exit_failed;
  if (opt.json()) {
    print_json(raw);
  } else {
    print_counts(*reply);
  }
  return exit_ok;
}

void print_cancel_counts(const CancelBatchReply& reply) {
  std::cout << "batch " << reply.batch_id << ": cancelled " << reply.cancelled
            << " unfinished jobs\n";
}

}  // namespace

int cmd_retry(const Options& opt, const BulkArgs& a) {
  bool many = !a.state.empty() || !a.batch.empty();
  if (a.ids.empty() == !many) {
    return fail(opt, exit_cli_usage,
                "retry: give JOB_ID..., or --state failed|cancelled and/or --batch B");
  }
  RetryRequest req;
  if (!a.state.empty()) req.state = parse_job_state(a.state);  // failed or cancelled (CLI)
  return send_bulk(opt, a, std::move(req), print_retry_counts);
}

int cmd_cancel(const Options& opt, const BulkArgs& a) {
  if (a.ids.empty() == a.batch.empty()) {
    return fail(opt, exit_cli_usage, "cancel: give JOB_ID... or --batch B");
  }
  return send_bulk(opt, a, CancelRequest{}, print_cancel_counts);
}

namespace {

// After a global resume: the batches that are still paused (a batch's pause is its own).
void name_paused_batches(ControlClient& client) {
  // A courtesy: a reply that does not say (or does not parse) names none.
  auto parsed = parse_reply<StatsReply>(client.request(to_json(StatsRequest{})));
  if (!parsed) return;
  const StatsReply& stats = *parsed;
  for (const PausedBatchView& b : stats.view.paused_batches) {
    std::string name = text_of(b.name);
    std::cout << "batch " << b.id << (name.empty() ? "" : " (" + printable(name) + ")")
              << " is still paused (" << printable(b.reason) << "): kpsctl resume --batch " << b.id
              << "\n";
  }
}

}  // namespace

int cmd_pause(const Options& opt, bool pause, const std::string& batch) {
  ControlClient client(opt.socket);
  PauseRequest req{pause, std::nullopt};
  if (!batch.empty()) req.batch = batch;
  json::object raw;
  auto reply = ask_for<PauseReply>(opt, client, to_json(req), &raw);
  if (!reply) return exit_failed;
  // A batch's pause says what it did to the batch (a reply without it: as if it held none).
  PauseReply::OfBatch of = reply->batch.value_or(PauseReply::OfBatch{0, 0, true});
  std::string id = reply->batch ? std::to_string(of.batch_id) : std::string();
  if (opt.json()) {
    print_json(raw);
  } else if (batch.empty() && pause) {
    std::cout << "paused: no new calls until kpsctl resume\n";
  } else if (batch.empty()) {
    std::cout << "resumed\n";
    name_paused_batches(client);
  } else if (pause && !of.changed) {
    std::cout << "batch " << id
              << " was already paused (kpsctl stats says why); its jobs stay held until kpsctl "
                 "resume --batch "
              << batch << "\n";
  } else if (pause && of.jobs == 0) {
    std::cout << "batch " << id << " paused: its queued jobs were already held (a canary); none "
              << "starts until kpsctl resume --batch " << batch << " (calls in flight finish)\n";
  } else if (pause) {
    std::cout << "batch " << id << " paused: " << of.jobs
              << " queued jobs held until kpsctl resume --batch " << batch
              << " (calls in flight finish)\n";
  } else {
    std::cout << "batch " << id << " resumed: " << of.jobs << " jobs released\n";
  }
  return exit_ok;
}

}  // namespace kpsd::ctl
