#pragma once
// Whether calls may flow, as plain code with the clock passed in (no I/O): the scheduler asks
// it before every claim and tells it how each call's answer went.
//
//   open ──401──► verifying ──probe admitted──► open
//     │             │  (every call held; the credentials refresh once, single-flight, inside
//     │             │   the next call: that call is the probe, sent at once)
//     │             └──probe refused (401) again after a refresh──► blocked
//     └──TLS, no credentials, no descriptors──► blocked ──probe admitted──► open
//                                                (one probe at a time, 1 s doubling to 30 s)
//
// kpsd starts in `verifying`: the first call proves the credentials before the others go, so
// a refused token costs at most 2 refused calls (the first, and one after its refresh)
// whatever the queue's length. A 401 while calls flow costs the calls already in flight (at
// most queue.concurrency) and the probe. Only a probe's answer moves the gate: calls sent
// before the hold prove nothing about the credentials now in use.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace kpsd {

class CallGate {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Mode { open, verifying, blocked };
  // What changed, for the caller to log and report.
  enum class Change { none, verifying, blocked, resumed };

  static constexpr std::chrono::milliseconds first_probe_delay{1000};
  static constexpr std::chrono::milliseconds max_probe_delay{30000};

  // `verify_first`: hold every call until a first probe is admitted (at start).
  explicit CallGate(bool verify_first = true);

  Mode mode() const noexcept { return mode_; }
  bool holding() const noexcept { return mode_ != Mode::open; }  // at most one probe goes out
  // While holding: whether a probe may go out now (none in flight, its time has come).
  bool may_probe(Clock::time_point now) const noexcept;
  Clock::duration until_probe(Clock::time_point now) const noexcept;  // 0 when due
  void probe_sent() noexcept { probe_in_flight_ = true; }
  void probe_unsent() noexcept { probe_in_flight_ = false; }  // the claim found nothing
  bool probe_in_flight() const noexcept { return probe_in_flight_; }

  // A 401 (the credentials were refused) to a call; `was_probe` says it was sent as a probe.
  Change on_refused(bool was_probe, Clock::time_point now, std::int64_t unix_ms);
  // An answer from the API that accepted the credentials: 2xx to 4xx other than 401 and 429
  // (a 5xx may come from a load balancer in front of authentication: inconclusive).
  Change on_admitted(bool was_probe) noexcept;
  // Nothing could be sent: TLS failed, no credentials, no descriptors (`cause` labels it).
  Change on_blocked(std::string reason, std::string_view cause, bool was_probe,
                    Clock::time_point now, std::int64_t unix_ms);
  // A probe that proved nothing either way (a transport error, a 5xx, a 429): while verifying,
  // the next due call is the next probe at once (its job's backoff paces it); while blocked,
  // the probe backs off (1 s doubling to 30 s).
  void on_inconclusive(bool was_probe, Clock::time_point now) noexcept;
  void probe_now(Clock::time_point now) noexcept;  // SIGHUP fixed it: the next probe at once

  // While blocked: why ("" otherwise), its kpsd_blocked label, since when (Unix ms).
  const std::string& blocked_reason() const noexcept { return reason_; }
  std::string_view blocked_cause() const noexcept { return cause_; }
  std::int64_t blocked_since_ms() const noexcept { return since_ms_; }
  // Refused calls (401s) seen since start: every call and probe.
  std::int64_t refusals() const noexcept { return refusals_; }

 private:
  void back_off(Clock::time_point now) noexcept;

  Mode mode_;
  bool refreshed_ = false;  // verifying after a refusal: the probe carries refreshed credentials
  bool probe_in_flight_ = false;
  Clock::time_point next_probe_{};
  std::chrono::milliseconds probe_delay_{first_probe_delay};
  std::string reason_;
  std::string_view cause_;
  std::int64_t since_ms_ = 0;
  std::int64_t refusals_ = 0;
};

}  // namespace kpsd
