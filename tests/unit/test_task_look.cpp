// Look before sending again: the decision from the two task lists (task_look), the record it
// leads to (outcome_records' look_finish), and the shared list fetches (task_lists), on a
// virtual fetch without sockets.
#include "kps/task_lists.hpp"
#include "kps/task_look.hpp"
#include "scheduling/outcome_records.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <doctest/doctest.h>

using namespace kpsd;
namespace net = boost::asio;

namespace {

TaskListEntry task(std::string id, std::string server, std::int64_t time_ms = 0,
                   std::string op = "UNBIND") {
  TaskListEntry t;
  t.task_id = std::move(id);
  t.server_id = std::move(server);
  t.operate_type = std::move(op);
  if (time_ms) t.task_time_ms = time_ms;
  return t;
}

TaskListing listing(std::vector<TaskListEntry> tasks, std::int64_t total = -1) {
  TaskListing l;
  l.total = total < 0 ? static_cast<std::int64_t>(tasks.size()) : total;
  l.tasks = std::move(tasks);
  return l;
}

TaskListing full_running_list() {
  std::vector<TaskListEntry> tasks;
  for (int i = 0; i < running_tasks_cap; ++i)
    tasks.push_back(task("r" + std::to_string(i), "other-" + std::to_string(i)));
  return listing(std::move(tasks));
}

}  // namespace

TEST_CASE("look: a running task for the server is adopted - a bind is not") {
  LookSettings s;
  auto running = listing({task("t-bind", "srv", 0, "BIND"), task("t-1", "srv")});
  auto d = decide_look("srv", 1000, running, nullptr, 0, s);
  CHECK(d.kind == LookDecision::Kind::adopt);
  CHECK(d.task.task_id == "t-1");
  CHECK(d.note == "outcome unknown; adopted running task t-1");
  auto only_bind = listing({task("t-bind", "srv", 0, "BIND")});
  CHECK(decide_look("srv", 1000, only_bind, nullptr, 0, s).kind == LookDecision::Kind::send_again);
}

TEST_CASE("look: a failed task newer than the lost call applies - an older one does not") {
  LookSettings s;
  s.clock_slack = std::chrono::milliseconds(100);
  auto running = listing({});
  auto failed = listing({task("old", "srv", 500), task("new", "srv", 950), task("x", "o", 2000)});
  failed.tasks[1].error_code = "KPS.0004";
  auto d = decide_look("srv", 1000, running, &failed, 0, s);
  CHECK(d.kind == LookDecision::Kind::task_failed);
  CHECK(d.task.task_id == "new");  // 950 is within the slack of 1000; 500 is an older failure
  CHECK(d.note == "outcome unknown; its task new failed (KPS.0004)");
  auto only_old = listing({task("old", "srv", 500), task("no-time", "srv")});
  CHECK(decide_look("srv", 1000, running, &only_old, 0, s).kind == LookDecision::Kind::send_again);
}

TEST_CASE("look: a full or unreadable running list is no proof - wait a bounded number of times") {
  LookSettings s;
  auto failed = listing({});
  auto full = full_running_list();
  for (std::int64_t waits = 0; waits < s.max_waits; ++waits) {
    auto d = decide_look("srv", 1000, full, &failed, waits, s);
    CHECK(d.kind == LookDecision::Kind::wait);
  }
  auto last = decide_look("srv", 1000, full, &failed, s.max_waits, s);
  CHECK(last.kind == LookDecision::Kind::send_again);
  CHECK(last.note.find("after 4 looks") != std::string::npos);
  // A list that says total 1000 on its first page is full even if fewer came back.
  CHECK(decide_look("srv", 1000, listing({}, running_tasks_cap), &failed, 0, s).kind ==
        LookDecision::Kind::wait);
  TaskListing unreadable;
  unreadable.error = "HTTP 403";
  auto d = decide_look("srv", 1000, unreadable, &failed, 0, s);
  CHECK(d.kind == LookDecision::Kind::wait);
  CHECK(d.note.find("unreadable (HTTP 403)") != std::string::npos);
  // Found in a full list: adopted all the same.
  full.tasks.back().server_id = "srv";
  CHECK(decide_look("srv", 1000, full, &failed, 0, s).kind == LookDecision::Kind::adopt);
  // A complete list without the server: send again.
  CHECK(decide_look("srv", 1000, listing({task("t", "o")}), &failed, 0, s).kind ==
        LookDecision::Kind::send_again);
}

TEST_CASE("look: the job's own earlier tasks are never taken for the lost call's") {
  LookSettings s;
  auto running = listing({task("t-old", "srv")});
  auto failed = listing({task("t-counted", "srv", 990)});
  std::vector<std::string> known{"t-old", "t-counted"};
  auto d = decide_look("srv", 1000, running, &failed, 0, s, known);
  CHECK(d.kind == LookDecision::Kind::send_again);
  CHECK(decide_look("srv", 1000, running, &failed, 0, s).kind == LookDecision::Kind::adopt);
}

TEST_CASE(
    "look: a failed list read in part is searched - and when it lacks the server it is doubt") {
  LookSettings s;
  auto running = listing({});
  auto partial = listing({task("t-9", "srv", 2000)});
  partial.error = "HTTP 500";
  auto d = decide_look("srv", 1000, running, &partial, 0, s);
  CHECK(d.kind == LookDecision::Kind::task_failed);  // found in what was read
  partial.tasks.clear();
  d = decide_look("srv", 1000, running, &partial, 0, s);
  CHECK(d.kind == LookDecision::Kind::wait);
  CHECK(d.note.find("failed-task list unreadable (HTTP 500)") != std::string::npos);
}

TEST_CASE("look: not before the lost call has settled") {
  LookSettings s;
  s.settle = std::chrono::milliseconds(1000);
  auto early = settle_first(5000, 5500, s);
  REQUIRE(early);
  CHECK(early->kind == LookDecision::Kind::settle);
  CHECK(early->look_at_ms == 6000);
  CHECK_FALSE(settle_first(5000, 6000, s));
  DeliveryWork w;
  w.unknown_since = 4000;
  w.look_waits = 2;
  auto f = look_finish(w, *early, RetrySettings{}, s, 5500);
  REQUIRE(f);
  CHECK(f->no_call);
  CHECK(f->next_state == JobState::retrying);
  CHECK(f->next_attempt_at == 6000);
  CHECK(f->unknown_since == 4000);
  CHECK(f->look_waits == 2);  // not a look: no wait used
}

TEST_CASE("look_finish: adopt - wait - failed task with and without budget - send again") {
  RetrySettings rs;
  LookSettings ls;
  DeliveryWork w;
  w.job_id = 4;
  w.attempt_n = 2;
  w.unknown_since = 900;

  LookDecision adopt{LookDecision::Kind::adopt, task("t-1", "srv"), "adopted"};
  auto f = look_finish(w, adopt, rs, ls, 1000);
  REQUIRE(f);
  CHECK(f->no_call);
  CHECK(f->next_state == JobState::delivered);
  CHECK(f->task_id == "t-1");
  CHECK_FALSE(f->unknown_since);  // resolved
  CHECK(f->look == "adopted");

  LookDecision wait{LookDecision::Kind::wait, {}, "full"};
  f = look_finish(w, wait, rs, ls, 1000);
  REQUIRE(f);
  CHECK(f->next_state == JobState::retrying);
  CHECK(f->next_attempt_at == 1000 + ls.wait.count());
  CHECK(f->look_waits == 1);
  CHECK(f->unknown_since == 900);  // still unknown: look again

  LookDecision failed{LookDecision::Kind::task_failed, task("t-2", "srv"), "failed"};
  failed.task.error_code = "KPS.0004";
  failed.task.error_msg = "authorized_keys changed";
  DeliveryWork first = w;
  CHECK_FALSE(look_finish(first, failed, rs, ls, 1000));  // one new disassociate allowed
  CHECK(first.task_failures == 1);
  CHECK_FALSE(first.unknown_since);
  CHECK_FALSE(first.sent_after_unknown);  // the failed task was the lost call's outcome
  DeliveryWork second = w;
  second.task_failures = 1;
  f = look_finish(second, failed, rs, ls, 1000);
  REQUIRE(f);
  CHECK(f->next_state == JobState::failed);
  CHECK(f->error_code == "KPS.0004");
  CHECK(f->error_msg == "task t-2 ended FAILED_UNBIND: authorized_keys changed");
  CHECK(f->task_failures == 2);

  LookDecision again{LookDecision::Kind::send_again, {}, "none"};
  DeliveryWork third = w;
  CHECK_FALSE(look_finish(third, again, rs, ls, 1000));
  CHECK(third.sent_after_unknown);
  CHECK_FALSE(third.unknown_since);
}

TEST_CASE("a call sent again after an unknown outcome and then refused reads as maybe done") {
  DeliveryWork w;
  w.sent_after_unknown = true;
  AttemptOutcome refused;
  refused.verdict = Verdict::permanent;
  refused.http_status = 400;
  refused.error_code = "KPS.6004";
  refused.error_msg = "no key pair found";
  Decision d;
  d.next = JobState::failed;
  auto f = attempt_finish(w, refused, d, 1000);
  CHECK(f.error_msg == std::string(maybe_done_prefix) + "no key pair found");
  CHECK(f.sent_after_unknown);
  w.sent_after_unknown = false;
  CHECK(attempt_finish(w, refused, d, 1000).error_msg == "no key pair found");
}

TEST_CASE("task lists: one fetch serves every caller that asks while it runs") {
  net::io_context io;
  int fetched = 0;
  auto fetch = [&](TaskList) -> net::awaitable<TaskListing> {
    ++fetched;
    net::steady_timer t(io, std::chrono::milliseconds(20));  // a page-through in progress
    co_await t.async_wait(net::use_awaitable);
    co_return listing({task("t-" + std::to_string(fetched), "srv")});
  };
  TaskLists lists(io.get_executor(), fetch);
  std::vector<std::string> seen;
  auto asker = [&](TaskLists::Clock::time_point not_before) -> net::awaitable<void> {
    auto l = co_await lists.get(TaskList::failed, not_before);
    seen.push_back(l->tasks.at(0).task_id);
  };
  auto start = TaskLists::Clock::now();
  for (int i = 0; i < 50; ++i) net::co_spawn(io, asker(start), net::detached);
  io.run();
  CHECK(fetched == 1);
  CHECK(seen == std::vector<std::string>(50, "t-1"));

  // A caller that needs a listing newer than the one running waits for the next fetch, which
  // every such caller shares.
  io.restart();
  seen.clear();
  auto late = [&]() -> net::awaitable<void> {
    net::steady_timer t(io, std::chrono::milliseconds(5));  // after the fetch started
    co_await t.async_wait(net::use_awaitable);
    co_await asker(TaskLists::Clock::now());
  };
  net::co_spawn(io, asker(TaskLists::Clock::now()), net::detached);
  for (int i = 0; i < 10; ++i) net::co_spawn(io, late(), net::detached);
  io.run();
  CHECK(fetched == 3);
  REQUIRE(seen.size() == 11);
  CHECK(seen.front() == "t-2");
  CHECK(std::count(seen.begin(), seen.end(), "t-3") == 10);
  CHECK(lists.fetches(TaskList::failed) == 3);
  CHECK(lists.fetches(TaskList::running) == 0);
}

TEST_CASE("task lists: a fetch that throws becomes an unreadable listing, and the next one runs") {
  net::io_context io;
  int calls = 0;
  auto fetch = [&](TaskList) -> net::awaitable<TaskListing> {
    if (++calls == 1) throw std::runtime_error("boom");
    co_return listing({});
  };
  TaskLists lists(io.get_executor(), fetch);
  std::string first_error;
  bool second_ok = false;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        auto a = co_await lists.get(TaskList::running, TaskLists::Clock::now());
        first_error = a->error;
        auto b = co_await lists.get(TaskList::running, TaskLists::Clock::now());
        second_ok = b->error.empty();
      },
      net::detached);
  io.run();
  CHECK(first_error == "internal error: boom");
  CHECK(second_ok);
  CHECK(calls == 2);
}
