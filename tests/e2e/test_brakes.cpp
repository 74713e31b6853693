// A mass change with brakes (issue 22): bulk controls by job ids and by batch, a batch paused
// while others go on (and still paused after a restart), a canary, and a failure budget.
#include "e2e_rig.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <string>
#include <thread>
#include <vector>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> servers(const std::string& prefix, int n) {
  std::vector<std::string> out;
  for (int i = 1; i <= n; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

CommandResult enqueue(Rig& rig, const std::vector<std::string>& ids,
                      std::vector<std::string> options = {}) {
  std::vector<std::string> args{"enqueue"};
  args.insert(args.end(), options.begin(), options.end());
  args.insert(args.end(), ids.begin(), ids.end());
  auto r = rig.ctl(args);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  return r;
}

std::int64_t calls_to(Rig& rig, const std::vector<std::string>& ids) {
  std::int64_t n = 0;
  for (const auto& id : ids) n += rig.fake().calls_for(id);
  return n;
}

std::int64_t state_count(Rig& rig, const std::string& batch, const char* state) {
  return rig.ctl_json({"stats", "--batch", batch}).at("states").at(state).as_int64();
}

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("pause --batch holds one batch while another goes on - across a restart - resume") {
  Rig rig({.fake = {.task_duration = 20ms}});
  rig.start();
  REQUIRE(rig.ctl({"pause"}).exit_code == 0);  // both batches queued before anything runs
  auto a_ids = servers("held-", 20), b_ids = servers("free-", 20);
  std::string a = Rig::batch_of(enqueue(rig, a_ids, {"--batch", "held"}));
  std::string b = Rig::batch_of(enqueue(rig, b_ids));
  auto paused = rig.ctl({"pause", "--batch", "held"});
  REQUIRE(paused.exit_code == 0);
  CHECK(paused.out.find("batch " + a + " paused: 20 queued jobs held") != std::string::npos);
  REQUIRE(rig.ctl({"resume"}).exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", b, "--timeout", "60"}).exit_code == 0);
  CHECK(calls_to(rig, a_ids) == 0);
  CHECK(state_count(rig, a, "queued") == 20);
  auto stats = rig.ctl({"stats"});
  CHECK(stats.out.find("BATCH " + a + " (held) PAUSED (operator)") != std::string::npos);
  auto batches = rig.ctl({"batches"});
  CHECK(batches.out.find("PAUSED") != std::string::npos);
  CHECK(batches.out.find(" operator\n") != std::string::npos);
  auto held_job = rig.ctl_json({"list", "--batch", "held", "--limit", "1"});
  CHECK(held_job.at("jobs").as_array().at(0).as_object().at("held").as_bool());
  // A job of the paused batch cancelled and retried goes back to being held, and says so.
  std::string held_id = std::to_string(held_job.at("jobs").as_array().at(0).at("id").as_int64());
  REQUIRE(rig.ctl({"cancel", held_id}).exit_code == 0);
  auto back = rig.ctl({"retry", held_id});
  CHECK(back.out == "job " + held_id +
                        ": queued again (held: its batch is paused; kpsctl resume --batch to "
                        "send it)\n");
  auto twice = rig.ctl({"pause", "--batch", "held"});
  CHECK(twice.out == "batch " + a +
                         " was already paused (kpsctl stats says why); its jobs stay held until "
                         "kpsctl resume --batch held\n");

  // The pause is in the database: a restart keeps it.
  CHECK(rig.stop() == 0);
  rig.start();
  std::this_thread::sleep_for(500ms);
  CHECK(calls_to(rig, a_ids) == 0);
  auto json = rig.ctl_json({"stats"});
  REQUIRE(json.at("paused_batches").as_array().size() == 1);
  CHECK(json.at("paused_batches").as_array()[0].at("reason").as_string() == "operator");

  auto resumed = rig.ctl({"resume", "--batch", a});
  CHECK(resumed.exit_code == 0);
  CHECK(resumed.out.find("20 jobs released") != std::string::npos);
  CHECK(rig.ctl({"wait", "--batch", "held", "--timeout", "60"}).exit_code == 0);
  CHECK(calls_to(rig, a_ids) == 20);
  CHECK(rig.ctl_json({"stats"}).at("paused_batches").as_array().empty());
  CHECK(rig.log().find("control: uid ") != std::string::npos);
  CHECK(rig.log().find(": pause batch held") != std::string::npos);
  CHECK(rig.fake().violations().empty());
}

TEST_CASE("cancel and retry take several job ids and a batch") {
  Rig rig({.fake = {.task_duration = 20ms}});
  rig.start();
  REQUIRE(rig.ctl({"pause"}).exit_code == 0);
  auto one = enqueue(rig, {"multi-1", "multi-2", "multi-3"});
  auto ids = rig.ctl_json({"list", "--batch", Rig::batch_of(one)}).at("jobs").as_array();
  std::string id1 = std::to_string(ids.at(0).at("id").as_int64());
  std::string id2 = std::to_string(ids.at(1).at("id").as_int64());
  auto cancelled = rig.ctl({"cancel", id1, id2, "999999"});
  CHECK(cancelled.exit_code == 1);  // one of them was refused
  CHECK(cancelled.out == "job " + id1 + ": cancelled\njob " + id2 + ": cancelled\n");
  CHECK(cancelled.err == "kpsctl: error: no job with id 999999\n");
  auto retried = rig.ctl({"retry", id1, id2});
  CHECK(retried.exit_code == 0);
  CHECK(retried.out == "job " + id1 + ": queued again\njob " + id2 + ": queued again\n");

  std::string night = Rig::batch_of(enqueue(rig, servers("night-", 5), {"--batch", "night-run"}));
  auto all = rig.ctl({"cancel", "--batch", "night-run"});
  CHECK(all.exit_code == 0);
  CHECK(all.out == "batch " + night + ": cancelled 5 unfinished jobs\n");
  CHECK(state_count(rig, night, "cancelled") == 5);
  CHECK(state_count(rig, Rig::batch_of(one), "queued") == 3);  // the other batch untouched
  auto again = rig.ctl({"retry", "--state", "cancelled", "--batch", "night-run"});
  CHECK(again.exit_code == 0);
  CHECK(again.out.find("requeued 5,") == 0);
  CHECK(rig.ctl({"retry", "--state", "failed", "--batch", "night-run"}).exit_code == 0);
  CHECK(rig.ctl({"cancel", "--batch", "no-such-batch"}).err ==
        "kpsctl: error: kpsd refused the request: no batch no-such-batch\n");
  REQUIRE(rig.ctl({"resume"}).exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", "night-run", "--timeout", "60"}).exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(one), "--timeout", "60"}).exit_code == 0);
}

TEST_CASE("enqueue --canary 3: three jobs run - the others wait for resume --batch - said once") {
  Rig rig({.fake = {.task_duration = 30ms}});
  rig.start();
  auto ids = servers("canary-", 12);
  std::string batch = Rig::batch_of(enqueue(rig, ids, {"--canary", "3", "--batch", "canary"}));
  wait_until([&] { return rig.log().find("canary done") != std::string::npos; }, 30s,
             "the canary's end");
  std::this_thread::sleep_for(300ms);
  CHECK(calls_to(rig, ids) == 3);
  CHECK(state_count(rig, batch, "succeeded") == 3);
  CHECK(state_count(rig, batch, "queued") == 9);
  CHECK(occurrences(rig.log(), "canary done") == 1);
  CHECK(rig.log().find("batch " + batch +
                       " (canary): canary done: its first 3 jobs ended (3 "
                       "succeeded, 0 failed); the others wait for kpsctl resume --batch " +
                       batch) != std::string::npos);
  auto paused = rig.ctl_json({"stats"}).at("paused_batches").as_array();
  REQUIRE(paused.size() == 1);
  CHECK(paused[0].at("reason").as_string() == "canary");
  REQUIRE(rig.ctl({"resume", "--batch", "canary"}).exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", batch, "--timeout", "60"}).exit_code == 0);
  CHECK(calls_to(rig, ids) == 12);
}

TEST_CASE("--max-failures 5: a batch that fails pauses itself within budget plus calls in flight") {
  Rig rig({.config = {{"queue.concurrency", "4"}}});
  auto bad = servers("bad-", 200);
  for (const auto& id : bad) rig.fake().set_behavior(id, fake::error_answers(400, -1, "KPS.4016"));
  rig.start();
  std::string batch = Rig::batch_of(enqueue(rig, bad, {"--max-failures", "5"}));
  wait_until([&] { return rig.log().find("paused itself") != std::string::npos; }, 30s,
             "the budget to stop the batch");
  std::this_thread::sleep_for(500ms);
  std::int64_t failed = state_count(rig, batch, "failed");
  CHECK(failed >= 5);
  CHECK(failed <= 5 + 4);  // the budget, plus the calls already in flight
  CHECK(calls_to(rig, bad) == failed);
  CHECK(state_count(rig, batch, "queued") == 200 - failed);
  CHECK(occurrences(rig.log(), "paused itself") == 1);
  CHECK(rig.log().find("batch " + batch + " paused itself: ") != std::string::npos);
  CHECK(rig.log().find(" ended jobs failed (budget: 5); its queued jobs wait for kpsctl resume "
                       "--batch " +
                       batch) != std::string::npos);
  auto paused = rig.ctl_json({"stats"}).at("paused_batches").as_array();
  REQUIRE(paused.size() == 1);
  CHECK(paused[0].at("reason").as_string() == "failures");
  CHECK(std::string(paused[0].at("detail").as_string()).find("ended jobs failed (budget: 5)") !=
        std::string::npos);

  // Other batches go on.
  std::string good = Rig::batch_of(enqueue(rig, servers("good-", 5)));
  CHECK(rig.ctl({"wait", "--batch", good, "--timeout", "60"}).exit_code == 0);
  CHECK(calls_to(rig, bad) == failed);
  CHECK(rig.stop() == 0);
}

TEST_CASE("[queue] max_failures is every batch's budget - --max-failures 0 turns it off") {
  Rig rig({.config = {{"queue.max_failures", "2"}, {"queue.concurrency", "1"}}});
  auto bad = servers("qbad-", 6), bad2 = servers("qoff-", 6);
  for (const auto& id : bad) rig.fake().set_behavior(id, fake::error_answers(400, -1, "KPS.4016"));
  for (const auto& id : bad2) rig.fake().set_behavior(id, fake::error_answers(400, -1, "KPS.4016"));
  rig.start();
  std::string with_default = Rig::batch_of(enqueue(rig, bad));
  wait_until([&] { return rig.log().find("paused itself") != std::string::npos; }, 30s,
             "the default budget");
  CHECK(rig.ctl_json({"batches"}).at("batches").as_array().at(0).at("max_failures").as_string() ==
        "2");
  std::string off = Rig::batch_of(enqueue(rig, bad2, {"--max-failures", "0"}));
  CHECK(rig.ctl({"wait", "--batch", off, "--timeout", "60"}).exit_code == 1);  // all failed
  CHECK(state_count(rig, off, "failed") == 6);
  CHECK(state_count(rig, with_default, "queued") > 0);

  // show counts the attempts its rows list; the budget's count since the retry beside it.
  auto first = rig.ctl_json({"list", "--batch", off, "--limit", "1"}).at("jobs").as_array();
  std::string id = std::to_string(first.at(0).at("id").as_int64());
  REQUIRE(rig.ctl({"retry", id}).exit_code == 0);
  CHECK(rig.ctl({"wait", id, "--timeout", "60"}).exit_code == 1);
  CHECK(rig.ctl({"show", id}).out.find("\nattempts: 2 (1 since its last retry)\n") !=
        std::string::npos);
}

TEST_CASE("enqueue refuses a bad --max-failures and --canary, naming the value") {
  Rig rig;
  rig.start();
  auto pct = rig.ctl({"enqueue", "--max-failures", "150%", "x-1"});
  CHECK(pct.exit_code == 2);
  CHECK(pct.err.find("--max-failures `150%`: a percentage must be over 0% and under 100%") !=
        std::string::npos);
  auto word = rig.ctl({"enqueue", "--max-failures", "lots", "x-1"});
  CHECK(word.exit_code == 2);
  CHECK(word.err.find("`lots`") != std::string::npos);
  CHECK(rig.ctl({"enqueue", "--canary", "-1", "x-1"}).exit_code == 2);
  CHECK(rig.ctl_json({"stats"}).at("total").as_int64() == 0);
}
