// kpsctl retry, cancel, pause and resume: one job, several, every job in a state, or a batch.
#include "ctl/commands.hpp"
#include "ctl/control_client.hpp"
#include "protocol/control_protocol.hpp"

#include <boost/json.hpp>

#include <iostream>

namespace kpsd::ctl {

namespace json = boost::json;

namespace {

void print_retry_counts(const json::object& reply) {
  std::cout << "requeued " << int_of(reply, "requeued") << ", rechecking "
            << int_of(reply, "rechecking") << " pending tasks";
  if (auto skipped = int_of(reply, "skipped_key_gone")) {
    std::cout << "; skipped " << skipped
              << " replace-form jobs whose key is gone (enqueue them again with their key)";
  }
  if (auto skipped = int_of(reply, "skipped_call_in_flight")) {
    std::cout << "; skipped " << skipped
              << " cancelled jobs whose call is still in flight (retry once it has ended)";
  }
  if (auto skipped = int_of(reply, "skipped_server_busy")) {
    std::cout << "; skipped " << skipped
              << " jobs whose server already has an unfinished job (one per server)";
  }
  std::cout << "\n";
}

// A reply to several job ids: one line per job ("job 7: cancelled"), refusals on stderr; exit
// 1 when any was refused.
int print_per_job(const Options& opt, const json::object& reply, const std::string& done_key) {
  bool all_ok = !reply.contains("error");
  if (opt.json()) {
    print_json(reply);
    return all_ok ? exit_ok : exit_failed;
  }
  if (auto* results = reply.if_contains("results"); results && results->is_array()) {
    for (const auto& v : results->as_array()) {
      const json::object& r = v.as_object();
      if (r.contains("error")) {
        print_error(text_of(r, "error"));
      } else {
        std::cout << "job " << int_of(r, "id") << ": " << text_of(r, done_key) << "\n";
      }
    }
  } else if (!all_ok) {  // one job, refused
    print_error("kpsd refused the request: " + text_of(reply, "error"));
  } else {
    std::cout << "job " << int_of(reply, "id") << ": " << text_of(reply, done_key) << "\n";
  }
  return all_ok ? exit_ok : exit_failed;
}

}  // namespace

namespace {

// retry and cancel have one shape: several job ids get a line each; a state or a batch gets
// counts, printed by `print_counts`.
template <class Request>
int send_bulk(const Options& opt, const BulkArgs& a, Request req,
              void (*print_counts)(const json::object&)) {
  ControlClient client(opt.socket);
  req.ids = a.ids;
  if (!a.batch.empty()) req.batch = a.batch;
  if (!a.ids.empty()) return print_per_job(opt, client.request(to_json(req)), "result");
  auto reply = ask(opt, client, to_json(req));
  if (!reply) return exit_failed;
  if (opt.json()) {
    print_json(*reply);
  } else {
    print_counts(*reply);
  }
  return exit_ok;
}

void print_cancel_counts(const json::object& reply) {
  std::cout << "batch " << int_of(reply, "batch_id") << ": cancelled " << int_of(reply, "cancelled")
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
  json::object reply = client.request(to_json(StatsRequest{}));
  auto* batches = reply.if_contains("paused_batches");
  if (!batches || !batches->is_array()) return;
  for (const auto& v : batches->as_array()) {
    const json::object& b = v.as_object();
    std::string name = text_of(b, "name");
    std::cout << "batch " << int_of(b, "id") << (name.empty() ? "" : " (" + printable(name) + ")")
              << " is still paused (" << text_of(b, "reason") << "): kpsctl resume --batch "
              << int_of(b, "id") << "\n";
  }
}

}  // namespace

int cmd_pause(const Options& opt, bool pause, const std::string& batch) {
  ControlClient client(opt.socket);
  PauseRequest req{pause, std::nullopt};
  if (!batch.empty()) req.batch = batch;
  auto reply = ask(opt, client, to_json(req));
  if (!reply) return exit_failed;
  std::string id = text_of(*reply, "batch_id");
  if (opt.json()) {
    print_json(*reply);
  } else if (batch.empty() && pause) {
    std::cout << "paused: no new calls until kpsctl resume\n";
  } else if (batch.empty()) {
    std::cout << "resumed\n";
    name_paused_batches(client);
  } else if (pause && text_of(*reply, "changed") == "false") {
    std::cout << "batch " << id
              << " was already paused (kpsctl stats says why); its jobs stay held until kpsctl "
                 "resume --batch "
              << batch << "\n";
  } else if (pause && int_of(*reply, "held") == 0) {
    std::cout << "batch " << id << " paused: its queued jobs were already held (a canary); none "
              << "starts until kpsctl resume --batch " << batch << " (calls in flight finish)\n";
  } else if (pause) {
    std::cout << "batch " << id << " paused: " << int_of(*reply, "held")
              << " queued jobs held until kpsctl resume --batch " << batch
              << " (calls in flight finish)\n";
  } else {
    std::cout << "batch " << id << " resumed: " << int_of(*reply, "released") << " jobs released\n";
  }
  return exit_ok;
}

}  // namespace kpsd::ctl
