#include "scheduling/call_gate.hpp"

#include <algorithm>

namespace kpsd {

CallGate::CallGate(bool verify_first) : mode_(verify_first ? Mode::verifying : Mode::open) {}

bool CallGate::may_probe(Clock::time_point now) const noexcept {
  return holding() && !probe_in_flight_ && now >= next_probe_;
}

CallGate::Clock::duration CallGate::until_probe(Clock::time_point now) const noexcept {
  return std::max(next_probe_ - now, Clock::duration::zero());
}

CallGate::Change CallGate::on_refused(bool was_probe, Clock::time_point now, std::int64_t unix_ms) {
  ++refusals_;
  switch (mode_) {
    case Mode::open:
      // The first refusal: hold everything; the next call refreshes the credentials (the
      // client marked them rejected) and goes out alone, at once.
      mode_ = Mode::verifying;
      refreshed_ = true;
      next_probe_ = now;
      return Change::verifying;
    case Mode::verifying:
      if (!was_probe) return Change::none;  // sent before the hold, with the old credentials
      probe_in_flight_ = false;
      if (!refreshed_) {
        // The first probe at start carried the credentials as configured: refresh, probe again.
        refreshed_ = true;
        next_probe_ = now;
        return Change::none;
      }
      return on_blocked("credentials refused: HTTP 401 again after a refresh", "credentials", true,
                        now, unix_ms);
    case Mode::blocked:
      if (!was_probe) return Change::none;
      // Whatever blocked calls before (TLS, say), the credentials are what fails now.
      reason_ = "credentials refused: HTTP 401 again after a refresh";
      cause_ = "credentials";
      back_off(now);
      return Change::none;
  }
  return Change::none;
}

CallGate::Change CallGate::on_admitted(bool was_probe) noexcept {
  if (!was_probe || mode_ == Mode::open) return Change::none;
  bool was_blocked = mode_ == Mode::blocked;
  mode_ = Mode::open;
  probe_in_flight_ = false;
  refreshed_ = false;
  probe_delay_ = first_probe_delay;
  reason_.clear();
  cause_ = {};
  since_ms_ = 0;
  return was_blocked ? Change::resumed : Change::none;
}

CallGate::Change CallGate::on_blocked(std::string reason, std::string_view cause, bool was_probe,
                                      Clock::time_point now, std::int64_t unix_ms) {
  if (mode_ != Mode::blocked) {
    mode_ = Mode::blocked;
    reason_ = reason.empty() ? "blocked" : std::move(reason);
    cause_ = cause;
    since_ms_ = unix_ms;
    // A probe still in flight (sent while verifying) keeps its place: one at a time.
    if (was_probe) probe_in_flight_ = false;
    probe_delay_ = first_probe_delay;
    next_probe_ = now + probe_delay_;
    return Change::blocked;
  }
  if (!reason.empty()) reason_ = std::move(reason);
  if (!cause.empty()) cause_ = cause;
  if (was_probe) back_off(now);
  return Change::none;
}

void CallGate::on_inconclusive(bool was_probe, Clock::time_point now) noexcept {
  if (!was_probe || mode_ == Mode::open) return;
  if (mode_ == Mode::verifying) {
    // Not a refusal, and nothing known to be broken: the next due call is the next probe, at
    // the pace of the jobs' own backoff. A delay here held a job whose retry was due in 1 ms
    // for a second, call after call, while a server answered 5xx (issue 30 item 10). One
    // probe at a time still bounds what a refused token can cost.
    probe_in_flight_ = false;
    next_probe_ = now;
    return;
  }
  back_off(now);
}

void CallGate::probe_now(Clock::time_point now) noexcept {
  if (holding()) next_probe_ = now;
}

void CallGate::back_off(Clock::time_point now) noexcept {
  probe_in_flight_ = false;
  probe_delay_ = std::min<std::chrono::milliseconds>(probe_delay_ * 2, max_probe_delay);
  next_probe_ = now + probe_delay_;
}

}  // namespace kpsd
