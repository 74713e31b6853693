#pragma once
// The pace and the permission of every request kpsd sends to the API (calls, task polls, task
// list reads): the rate controller (RateLimiter) and the call gate (CallGate), each told every
// answer, their changes reported once (scheduler_log), and the wait for a rate token outside
// the dispatch loop. The rules are the two plain classes; this is the shell that feeds them.
// The dispatch loop's Dispatcher reads both.
#include "config/config.hpp"
#include "model/metrics.hpp"
#include "net/http_result.hpp"
#include "scheduling/call_gate.hpp"
#include "scheduling/job_policy.hpp"
#include "scheduling/rate_limiter.hpp"
#include "scheduling/scheduler_log.hpp"
#include "scheduling/task_finder.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string_view>

namespace kpsd {

class CallPacing : public CallPace {
 public:
  // What kpsd is doing, as the scheduler keeps it: a stop ends the waits for a token.
  struct Flags {
    const bool& stopping;
    const bool& aborted;
  };
  struct Hooks {
    std::function<void()> wake;            // the dispatch loop: calls may go now
    std::function<void()> health_changed;  // blocked or resumed (STATUS=, the page)
  };

  // `settings` (its retry_after_max) is read at each answer: a SIGHUP changes it.
  CallPacing(boost::asio::any_io_executor executor, const Config& config,
             const RetrySettings& settings, Metrics& metrics, Flags flags, Hooks hooks);

  RateLimiter limiter;
  CallGate gate;  // open, verifying the credentials, or blocked; starts verifying

  // Tells the rate controller how the gateway answered a request that took its token at
  // `sent_at` (steady clock); `retry_after`: the 429's, parsed.
  void answered(RateLimiter::Clock::time_point sent_at, const HttpResult& r,
                std::optional<std::chrono::milliseconds> retry_after);
  // Tells the gate how a call or poll's answer went: a 401, a transport that sent nothing (TLS,
  // credentials, descriptors, proxy: `blocked_reason_text` says why), an answer that proves the
  // credentials, or nothing known. `probe`: it was the gate's probe.
  void tell_gate(const HttpResult& r, bool probe, std::string_view blocked_reason_text);
  // Counts what the wire did beyond a call's outcome (kpsd_answers_unreadable_total,
  // kpsd_stale_connection_resends_total).
  void count_transport(const HttpResult& r);

  enum class Until { abort, stop };  // what ends a wait for a token
  // Waits for a rate token (requests outside the dispatch loop); its time, or nothing once kpsd
  // aborts (Until::abort) or stops (Until::stop): a Retry-After hold can be an hour.
  boost::asio::awaitable<std::optional<RateLimiter::Clock::time_point>> token(Until until);

  // CallPace: the task finder's list reads take tokens and report answers like any call.
  boost::asio::awaitable<std::optional<RateLimiter::Clock::time_point>> list_token() override;
  void list_answered(RateLimiter::Clock::time_point sent_at, const HttpResult& r) override;

 private:
  boost::asio::any_io_executor executor_;
  const RetrySettings& settings_;
  Metrics& metrics_;
  Flags flags_;
  Hooks hooks_;
  RateReport rate_report_;
};

}  // namespace kpsd
