// The Dispatcher driving a model of the scheduler's loop on a virtual clock with the real
// RateLimiter and CallGate: the calls and the store are modelled, every decision (step,
// placement, reservation, release) is the Dispatcher's own. Running <= concurrency at every
// step, one probe at a time, and task polls never starved by paced deliveries.
#include "scheduling/call_gate.hpp"
#include "scheduling/dispatch_plan.hpp"
#include "scheduling/dispatcher.hpp"
#include "scheduling/rate_limiter.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <numeric>
#include <random>
#include <vector>

using namespace kpsd;
using namespace std::chrono_literals;
using Clock = RateLimiter::Clock;

namespace {

// A model of the scheduler's loop: jobs to deliver, tasks that end `task_time` after their
// 202, polls due `poll_interval` apart, calls that take a random time, outcomes committed a
// random time after the call ends. It uses the plan exactly as the scheduler does.
struct Model {
  struct Call {
    Clock::time_point ends, committed;
    bool poll = false, probe = false;
    int job = 0;
    Clock::time_point sent;
  };
  std::size_t concurrency = 64;
  Clock::time_point now = Clock::time_point{} + 1h;
  RateLimiter limiter;
  CallGate gate{false};
  std::mt19937 rng{7};
  std::chrono::milliseconds task_time{3000}, poll_interval{1000};
  std::deque<int> queued;                      // jobs due for a delivery
  std::map<int, Clock::time_point> task_ends;  // delivered jobs: when their task ends
  std::map<int, Clock::time_point> poll_due;   // delivered jobs: next poll
  std::vector<Call> calls;                     // in flight or waiting for their commit
  std::deque<int> ready_polls, ready;          // claimed ahead of their tokens
  std::vector<double> lag_ms;                  // task end to the poll that saw it
  std::size_t max_busy = 0, probes_out = 0, max_probes_out = 0;
  std::int64_t refused_until_probe = 0;  // 401s to send before a probe admits
  bool paused = false;
  std::size_t released = 0;          // calls claimed ahead and given back unsent
  bool refuse_during_claim = false;  // a 401 arrives while the next claim's transaction runs
  Dispatcher dispatcher{limiter, gate};

  explicit Model(double ceiling) : limiter(ceiling, Clock::time_point{} + 1h) {}

  SlotCount slots() const {
    SlotCount s;
    for (const Call& c : calls) (c.ends > now ? s.in_flight : s.outcomes_waiting)++;
    s.claimed_ahead = ready_polls.size() + ready.size();
    s.reserved = dispatcher.reserved();
    return s;
  }

  void start(int job, bool poll, bool probe) {
    std::uniform_int_distribution<int> call_ms(10, 200), commit_ms(0, 60);
    Call c{now + std::chrono::milliseconds(call_ms(rng)), {}, poll, probe, job, now};
    c.committed = c.ends + std::chrono::milliseconds(commit_ms(rng));
    if (probe) max_probes_out = std::max(max_probes_out, ++probes_out);
    calls.push_back(c);
  }

  // Due polls in due order, then queued deliveries: what claim_for_poll/_delivery return.
  std::vector<int> due_polls(std::size_t n) {
    std::vector<std::pair<Clock::time_point, int>> due;
    for (auto& [job, at] : poll_due)
      if (at <= now) due.emplace_back(at, job);
    std::sort(due.begin(), due.end());
    std::vector<int> out;
    for (std::size_t i = 0; i < due.size() && out.size() < n; ++i) {
      out.push_back(due[i].second);
      poll_due.erase(due[i].second);  // leased
    }
    return out;
  }

  void finish(const Call& c) {
    if (c.probe) --probes_out;
    if (refused_until_probe > 0 && !c.probe) {
      gate.on_refused(false, now, 0);
      if (c.poll)
        poll_due[c.job] = now;
      else
        queued.push_back(c.job);
      return;
    }
    if (c.probe && refused_until_probe > 0) --refused_until_probe;
    gate.on_admitted(c.probe);
    limiter.on_answer(c.sent, now, RateLimiter::Answer::admitted);
    if (!c.poll) {
      task_ends[c.job] = now + task_time;
      poll_due[c.job] = now + poll_interval;
    } else if (now >= task_ends[c.job]) {
      lag_ms.push_back(std::chrono::duration<double, std::milli>(now - task_ends[c.job]).count());
      task_ends.erase(c.job);
    } else {
      poll_due[c.job] = now + poll_interval;
    }
  }

  DispatchView view() const {
    DispatchView v;
    v.slots = slots();
    v.concurrency = concurrency;
    v.ready_polls = ready_polls.size();
    v.ready_deliveries = ready.size();
    v.paused = paused;
    return v;
  }

  // Calls claimed ahead go back unsent: polls due again, deliveries queued again.
  void release() {
    released += ready_polls.size() + ready.size();
    for (int j : ready_polls) poll_due[j] = now;
    for (int j : ready) queued.push_front(j);
    ready_polls.clear();
    ready.clear();
  }

  // One turn of the loop, doing what the Dispatcher says as Scheduler::Impl::run does.
  void turn() {
    DispatchStep step = dispatcher.next(view(), now);
    if (!step.release.empty()) release();
    if (step.kind == DispatchStep::Kind::send_ready) {
      REQUIRE(step.send_polls <= ready_polls.size());
      REQUIRE(step.send_deliveries <= ready.size());
      for (std::size_t i = 0; i < step.send_polls; ++i) {
        start(ready_polls.front(), true, false);
        ready_polls.pop_front();
      }
      for (std::size_t i = 0; i < step.send_deliveries; ++i) {
        start(ready.front(), false, false);
        ready.pop_front();
      }
    }
    if (step.kind != DispatchStep::Kind::claim) return;
    REQUIRE(dispatcher.reserved() == step.size.total());  // the claim's slots, while it runs
    REQUIRE(step.size.total() <= concurrency - (slots().busy() - dispatcher.reserved()));
    // As Scheduler::Impl::claim_and_start: polls in one transaction, then deliveries in a
    // second, each placed by the Dispatcher as it returns (a 401 may arrive in between).
    std::vector<int> polls = due_polls(step.size.total());
    if (refuse_during_claim) gate.on_refused(false, now, 0);
    Placement p = dispatcher.place(step, polls.size(), 0);
    for (std::size_t i = 0; i < polls.size(); ++i) {
      if (i < p.polls_now)
        start(polls[i], true, step.probe);
      else
        ready_polls.push_back(polls[i]);
    }
    dispatcher.claimed(polls.size());  // in flight or ahead: slots of their own
    std::size_t started = p.polls_now;
    std::vector<int> deliveries;
    while (deliveries.size() < step.size.total() - polls.size() && !queued.empty()) {
      deliveries.push_back(queued.front());
      queued.pop_front();
    }
    p = dispatcher.place(step, started, deliveries.size());
    for (std::size_t i = 0; i < deliveries.size(); ++i) {
      if (i < p.deliveries_now)
        start(deliveries[i], false, step.probe);
      else
        ready.push_back(deliveries[i]);
    }
    started += p.deliveries_now;
    dispatcher.claim_ended(step, started, ready_polls.size() + ready.size());
    REQUIRE(dispatcher.reserved() == 0);
  }

  // Runs until every job's task was seen ended (or `limit` of virtual time).
  void run(int jobs, std::chrono::seconds limit) {
    for (int j = 0; j < jobs; ++j) queued.push_back(j);
    auto end = now + limit;
    while (now < end && static_cast<int>(lag_ms.size()) < jobs) {
      turn();
      max_busy = std::max(max_busy, slots().busy());
      REQUIRE(slots().busy() <= concurrency);
      now += 5ms;
      // Calls end; outcomes commit (a committed call frees its slot).
      for (auto it = calls.begin(); it != calls.end();) {
        if (it->committed <= now) {
          Call c = *it;
          it = calls.erase(it);
          finish(c);
        } else {
          ++it;
        }
      }
    }
  }
};

double mean(const std::vector<double>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}
double p95(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() * 95 / 100];
}

}  // namespace

TEST_CASE("polls get their share under a 40 per second ceiling: 600 and 2000 jobs of 3 s tasks") {
  for (int jobs : {600, 2000}) {
    CAPTURE(jobs);
    Model m(40);
    m.run(jobs, 1800s);
    REQUIRE(m.lag_ms.size() == static_cast<std::size_t>(jobs));
    MESSAGE("virtual clock, 40/s, " << jobs << " jobs: poll lag mean " << mean(m.lag_ms)
                                    << " ms, p95 " << p95(m.lag_ms) << " ms");
    CHECK(mean(m.lag_ms) <= 2000);  // within a poll interval plus a pacing step
    CHECK(p95(m.lag_ms) <= 3000);
    CHECK(m.max_busy <= m.concurrency);
  }
}

TEST_CASE("unpaced: running never passes concurrency under random call and commit times") {
  for (std::size_t concurrency : {1u, 7u, 64u}) {
    CAPTURE(concurrency);
    Model m(0);
    m.concurrency = concurrency;
    m.rng.seed(static_cast<unsigned>(concurrency));
    m.task_time = 200ms;
    m.poll_interval = 100ms;
    m.run(400, 600s);  // REQUIREs busy <= concurrency at every step
    CHECK(m.lag_ms.size() == 400);
    CHECK(m.max_busy <= concurrency);
    CHECK(m.max_busy >= std::min<std::size_t>(concurrency, 2));
  }
}

TEST_CASE("a 401 while calls flow: one probe at a time until one is admitted") {
  Model m(0);
  m.task_time = 100ms;
  m.poll_interval = 100ms;
  m.refused_until_probe = 3;  // every call refused until three probes went out
  m.run(200, 600s);
  CHECK(m.lag_ms.size() == 200);
  CHECK(m.max_probes_out == 1);
  CHECK(m.gate.mode() == CallGate::Mode::open);
}

namespace {

// Runs a paced model until calls wait claimed ahead of their tokens.
void until_claimed_ahead(Model& m) {
  for (int j = 0; j < 400; ++j) m.queued.push_back(j);
  for (int i = 0; i < 400 && m.ready.empty() && m.ready_polls.empty(); ++i) {
    m.turn();
    m.now += 5ms;
  }
  REQUIRE(m.ready.size() + m.ready_polls.size() > 0);
}

// Turns for `span` of virtual time; returns the calls started meanwhile.
std::size_t calls_started_during(Model& m, std::chrono::milliseconds span) {
  std::size_t before = m.calls.size();
  for (auto end = m.now + span; m.now < end; m.now += 5ms) m.turn();
  return m.calls.size() - before;
}

}  // namespace

TEST_CASE("a pause gives back the calls claimed ahead unsent and starts nothing") {
  Model m(40);
  until_claimed_ahead(m);
  std::size_t ahead = m.ready.size() + m.ready_polls.size();
  m.paused = true;
  CHECK(calls_started_during(m, 2s) == 0);
  CHECK(m.released == ahead);
  CHECK(m.ready.empty());
  CHECK(m.queued.size() == 400 - m.calls.size());  // every released job is queued again
}

TEST_CASE("a Retry-After hold gives back the calls claimed ahead and sends nothing until it ends") {
  Model m(40);
  until_claimed_ahead(m);
  std::size_t ahead = m.ready.size() + m.ready_polls.size();
  std::size_t in_flight = m.calls.size();
  m.limiter.on_answer(m.now, m.now, RateLimiter::Answer::throttled, 3s);
  REQUIRE(m.limiter.holding());
  m.turn();
  CHECK(m.released == ahead);
  CHECK(m.ready.empty());
  // While held, at most the rate controller's probe goes out.
  CHECK(calls_started_during(m, 2500ms) <= 1);
  CHECK(m.calls.size() <= in_flight + 1);
}

TEST_CASE("a stop gives back the calls claimed ahead") {
  Model m(40);
  until_claimed_ahead(m);
  std::size_t ahead = m.ready.size() + m.ready_polls.size();
  DispatchView v = m.view();
  v.stopping = true;
  DispatchStep step = m.dispatcher.next(v, m.now);
  CHECK(step.release == "stopping");
  CHECK(step.kind == DispatchStep::Kind::sleep);
  CHECK(ahead > 0);
}

TEST_CASE("a 401 gives back the calls claimed ahead and only one probe goes out") {
  Model m(40);
  until_claimed_ahead(m);
  std::size_t ahead = m.ready.size() + m.ready_polls.size();
  m.gate.on_refused(false, m.now, 0);
  REQUIRE(m.gate.holding());
  m.turn();
  CHECK(m.released == ahead);
  for (auto end = m.now + 500ms; m.now < end; m.now += 5ms) m.turn();
  CHECK(m.max_probes_out == 1);
  CHECK(m.gate.probe_in_flight());  // the probe is out (its call has not ended: no commit here)
}

TEST_CASE("a 401 during a claim: nothing it claimed starts, all goes back, then one probe") {
  Model m(0);
  for (int j = 0; j < 100; ++j) m.queued.push_back(j);
  m.refuse_during_claim = true;
  m.turn();  // the claim: the gate closes while it runs
  m.refuse_during_claim = false;
  CHECK(m.calls.empty());
  CHECK(m.ready.size() == 64);  // every free slot was claimed, none started
  m.turn();                     // the next turn gives them back, unsent
  CHECK(m.released == 64);
  CHECK(m.ready.empty());
  CHECK(m.calls.empty());
  m.turn();  // (the shell's loop turns again when their release is committed) the probe
  REQUIRE(m.calls.size() == 1);
  CHECK(m.calls.front().probe);
  CHECK(m.gate.probe_in_flight());
}
