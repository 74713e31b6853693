// CallGate on a virtual clock: one refusal holds everyone, one probe at a time, at most 2
// refused calls per refresh whatever the queue, and the blocked machine's backoff.
#include "scheduling/call_gate.hpp"

#include <doctest/doctest.h>

#include <deque>
#include <random>

using namespace kpsd;
using namespace std::chrono_literals;
using Mode = CallGate::Mode;
using Change = CallGate::Change;

namespace {

// A queue of jobs dispatched through the gate against an API that refuses every call until
// `good_from` refreshes have happened. Counts refused calls. No sockets, no sleeps.
struct Simulation {
  CallGate gate;
  CallGate::Clock::time_point now{};
  int refreshes = 0;
  int good_from_refresh = 1000000;
  std::int64_t refused = 0, admitted = 0;
  int concurrency = 16;
  std::deque<bool> in_flight;  // each call's probe flag
  bool refresh_pending = false;

  // One step: start what the gate allows, then answer the oldest call in flight.
  void step() {
    while (static_cast<int>(in_flight.size()) < concurrency) {
      if (gate.holding()) {
        if (!gate.may_probe(now)) break;
        gate.probe_sent();
        if (refresh_pending) ++refreshes, refresh_pending = false;
        in_flight.push_back(true);
        break;
      }
      in_flight.push_back(false);
    }
    if (in_flight.empty()) {
      now += 100ms;
      return;
    }
    bool probe = in_flight.front();
    in_flight.pop_front();
    now += 5ms;
    if (refreshes >= good_from_refresh) {
      ++admitted;
      gate.on_admitted(probe);
    } else {
      ++refused;
      refresh_pending = true;  // the client marks the credentials rejected
      gate.on_refused(probe, now, 0);
    }
  }
};

}  // namespace

TEST_CASE("kpsd starts verifying: one probe first and the rest only after it is admitted") {
  CallGate gate;
  auto t0 = CallGate::Clock::time_point{} + 1h;
  CHECK(gate.mode() == Mode::verifying);
  REQUIRE(gate.may_probe(t0));
  gate.probe_sent();
  CHECK_FALSE(gate.may_probe(t0));  // one at a time
  CHECK(gate.on_admitted(true) == Change::none);
  CHECK(gate.mode() == Mode::open);
  CHECK_FALSE(gate.holding());
}

TEST_CASE("a refused token at start: 2 refused calls then blocked with backoff") {
  CallGate gate;
  auto now = CallGate::Clock::time_point{} + 1h;
  gate.probe_sent();
  CHECK(gate.on_refused(true, now, 1) == Change::none);  // refresh, then probe again at once
  CHECK(gate.mode() == Mode::verifying);
  REQUIRE(gate.may_probe(now));
  gate.probe_sent();
  CHECK(gate.on_refused(true, now, 1) == Change::blocked);
  CHECK(gate.blocked_cause() == "credentials");
  CHECK(gate.blocked_reason().find("401 again after a refresh") != std::string::npos);
  CHECK(gate.refusals() == 2);
  CHECK_FALSE(gate.may_probe(now));
  CHECK(gate.until_probe(now) == std::chrono::milliseconds(1000));
  // Each refused probe doubles the wait, to 30 s.
  std::chrono::milliseconds expected{1000};
  for (int i = 0; i < 8; ++i) {
    now += gate.until_probe(now);
    REQUIRE(gate.may_probe(now));
    gate.probe_sent();
    gate.on_refused(true, now, 1);
    expected = std::min<std::chrono::milliseconds>(expected * 2, 30s);
    CHECK(gate.until_probe(now) == expected);
  }
  CHECK(gate.on_admitted(true) == Change::resumed);
  CHECK(gate.mode() == Mode::open);
}

TEST_CASE("a 401 while calls flow holds everyone and only the probe decides") {
  CallGate gate(false);
  auto now = CallGate::Clock::time_point{} + 1h;
  CHECK(gate.on_refused(false, now, 1) == Change::verifying);
  CHECK(gate.holding());
  // Calls sent before the hold come back refused, or admitted: neither moves the gate.
  CHECK(gate.on_refused(false, now, 1) == Change::none);
  CHECK(gate.on_admitted(false) == Change::none);
  CHECK(gate.mode() == Mode::verifying);
  REQUIRE(gate.may_probe(now));  // at once: the refresh happens inside the probe
  gate.probe_sent();
  CHECK(gate.on_admitted(true) == Change::none);
  CHECK(gate.mode() == Mode::open);
}

TEST_CASE("a probe that proves nothing: the next due call probes at once - blocked backs off") {
  CallGate gate;
  auto now = CallGate::Clock::time_point{} + 1h;
  gate.probe_sent();
  gate.on_inconclusive(true, now);
  CHECK(gate.mode() == Mode::verifying);
  // Issue 30 item 10: no delay of its own (it was 1 s): the job's backoff paces the next call.
  CHECK(gate.until_probe(now) == CallGate::Clock::duration::zero());
  CHECK(gate.may_probe(now));
  CHECK_FALSE(gate.probe_in_flight());
  // Still one probe at a time.
  gate.probe_sent();
  CHECK_FALSE(gate.may_probe(now));
  // Blocked, an inconclusive probe backs off as before.
  CallGate blocked(false);
  blocked.on_blocked("TLS handshake failed", "tls", false, now, 1);
  blocked.probe_sent();
  blocked.on_inconclusive(true, now);
  CHECK(blocked.until_probe(now) >= CallGate::first_probe_delay);
}

TEST_CASE("TLS or credential failures block and SIGHUP probes at once") {
  CallGate gate(false);
  auto now = CallGate::Clock::time_point{} + 1h;
  CHECK(gate.on_blocked("TLS handshake failed", "tls", false, now, 42) == Change::blocked);
  CHECK(gate.blocked_cause() == "tls");
  CHECK(gate.blocked_since_ms() == 42);
  CHECK_FALSE(gate.may_probe(now));
  gate.probe_now(now);
  CHECK(gate.may_probe(now));
  gate.probe_sent();
  CHECK(gate.on_admitted(true) == Change::resumed);
  CHECK(gate.blocked_reason().empty());
}

TEST_CASE("refused calls stay at 2 per refresh whatever the queue and concurrency") {
  for (int concurrency : {1, 16, 512}) {
    CAPTURE(concurrency);
    Simulation sim;
    sim.concurrency = concurrency;
    for (int i = 0; i < 2000; ++i) sim.step();
    CHECK(sim.gate.mode() == Mode::blocked);
    // Two before the pause, then one per refresh (each probe refreshes first).
    CHECK(sim.refused <= 2 + sim.refreshes);
    CHECK(sim.refused >= 2);
    CHECK(sim.admitted == 0);
    // A valid token from the next refresh on: calls resume after one admitted probe.
    sim.good_from_refresh = sim.refreshes + 1;
    std::int64_t before = sim.refused;
    for (int i = 0; i < 20000 && sim.admitted < 100; ++i) sim.step();
    CHECK(sim.gate.mode() == Mode::open);
    CHECK(sim.admitted >= 100);
    CHECK(sim.refused - before <= 1);
  }
}

TEST_CASE("a token that dies while calls flow costs the calls in flight and one probe") {
  Simulation sim;
  sim.gate = CallGate(false);
  sim.good_from_refresh = 0;
  for (int i = 0; i < 100; ++i) sim.step();
  REQUIRE(sim.admitted > 50);
  sim.good_from_refresh = sim.refreshes + 1;  // dies now; the next refresh fixes it
  std::int64_t before = sim.refused;
  for (int i = 0; i < 500; ++i) sim.step();
  CHECK(sim.gate.mode() == Mode::open);
  CHECK(sim.refused - before <= sim.concurrency + 1);
}

TEST_CASE("a probe in flight keeps its place when an older call blocks the gate") {
  CallGate gate;
  auto now = CallGate::Clock::time_point{} + 1h;
  gate.probe_sent();
  // A call sent before the hold fails TLS: blocked, but the probe is still out.
  CHECK(gate.on_blocked("TLS handshake failed", "tls", false, now, 1) == Change::blocked);
  now += 5s;
  CHECK_FALSE(gate.may_probe(now));  // never two probes at once
  gate.probe_now(now);
  CHECK_FALSE(gate.may_probe(now));
  CHECK(gate.on_admitted(true) == Change::resumed);
}

TEST_CASE("a probe refused while blocked for TLS says the credentials are what fails now") {
  CallGate gate(false);
  auto now = CallGate::Clock::time_point{} + 1h;
  gate.on_blocked("TLS handshake failed", "tls", false, now, 1);
  now += gate.until_probe(now);
  gate.probe_sent();
  gate.on_refused(true, now, 2);
  CHECK(gate.blocked_cause() == "credentials");
  CHECK(gate.blocked_reason().find("401") != std::string::npos);
}
