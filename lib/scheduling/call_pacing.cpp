#include "scheduling/call_pacing.hpp"

#include "core/clock.hpp"
#include "kps/classify.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace kpsd {

namespace net = boost::asio;

namespace {

RateLimiter::Tuning limiter_tuning(const Config& cfg) {
  RateLimiter::Tuning t;
  // While the gateway refuses everything (a quota window), probes go at most this far apart.
  t.max_probe_gap = cfg.queue.throttle_backoff;
  return t;
}

}  // namespace

CallPacing::CallPacing(net::any_io_executor executor, const Config& config,
                       const RetrySettings& settings, Metrics& metrics, Flags flags, Hooks hooks)
    : limiter(config.queue.rate_per_second, RateLimiter::Clock::now(), limiter_tuning(config)),
      executor_(std::move(executor)),
      settings_(settings),
      metrics_(metrics),
      flags_(flags),
      hooks_(std::move(hooks)) {}

void CallPacing::answered(RateLimiter::Clock::time_point sent_at, const HttpResult& r,
                          std::optional<std::chrono::milliseconds> retry_after) {
  auto answer = RateLimiter::Answer::admitted;
  if (r.transport != HttpResult::Transport::ok) {
    answer = RateLimiter::Answer::none;  // nothing known of the gateway (or nothing sent)
  } else if (r.status == 429) {
    answer = RateLimiter::Answer::throttled;
  }
  if (answer != RateLimiter::Answer::none) {
    metrics_.history.answered(answer == RateLimiter::Answer::throttled, unix_ms());
  }
  auto now = RateLimiter::Clock::now();
  std::optional<RateLimiter::Clock::duration> wait;
  if (answer == RateLimiter::Answer::throttled && retry_after) {
    retry_after_capped(retry_after, settings_);
    wait = *retry_after;
  }
  RateLimiter::Change change = limiter.on_answer(sent_at, now, answer, wait);
  if (change == RateLimiter::Change::cut) ++metrics_.throttled_rate_cuts;
  if (rate_report_.changed(change, limiter, now, wait)) hooks_.wake();
}

void CallPacing::tell_gate(const HttpResult& r, bool probe, std::string_view blocked_reason_text) {
  auto now = std::chrono::steady_clock::now();
  std::string reason_was = gate.blocked_reason();
  std::int64_t since_was = gate.blocked_since_ms();
  CallGate::Change change = CallGate::Change::none;
  std::string_view cause = blocked_cause(r.transport);
  if (!cause.empty()) {
    if (flags_.aborted) return;
    change = gate.on_blocked(std::string(blocked_reason_text), cause, probe, now, unix_ms());
  } else if (r.transport == HttpResult::Transport::ok && r.status == 401) {
    change = gate.on_refused(probe, now, unix_ms());
  } else if (r.transport == HttpResult::Transport::ok && r.status != 429 && r.status < 500) {
    change = gate.on_admitted(probe);
  } else if (probe) {
    gate.on_inconclusive(probe, now);  // proved nothing either way: back off, try again
    hooks_.wake();
    return;
  }
  if (change == CallGate::Change::none) return;
  log_gate_change(change, gate, reason_was, unix_ms() - since_was);
  if (change != CallGate::Change::verifying) hooks_.health_changed();
  hooks_.wake();
}

void CallPacing::count_transport(const HttpResult& r) {
  if (r.request_sent && r.transport == HttpResult::Transport::io_error)
    ++metrics_.answers_unreadable;
  if (r.resent_on_fresh_connection) ++metrics_.stale_connection_resends;
}

net::awaitable<std::optional<RateLimiter::Clock::time_point>> CallPacing::token(Until until) {
  net::steady_timer wait(executor_);
  for (;;) {
    if (flags_.aborted || (until == Until::stop && flags_.stopping)) co_return std::nullopt;
    auto now = RateLimiter::Clock::now();
    if (limiter.try_acquire(now)) co_return now;
    wait.expires_after(std::min<RateLimiter::Clock::duration>(limiter.time_until_available(now),
                                                              std::chrono::milliseconds(200)));
    co_await wait.async_wait(net::as_tuple(net::use_awaitable));
  }
}

net::awaitable<std::optional<RateLimiter::Clock::time_point>> CallPacing::list_token() {
  return token(Until::abort);
}

void CallPacing::list_answered(RateLimiter::Clock::time_point sent_at, const HttpResult& r) {
  answered(sent_at, r, std::nullopt);
  count_transport(r);
}

}  // namespace kpsd
