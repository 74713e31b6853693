#include "scheduling/scheduler_log.hpp"

#include <spdlog/spdlog.h>

namespace kpsd {

void log_transition(std::int64_t job_id, std::string_view what, JobState next,
                    std::string_view code, std::string_view msg, std::int64_t delay_ms) {
  std::string_view gap = code.empty() ? "" : " ";
  switch (next) {
    case JobState::succeeded:
      spdlog::info("job {} ({}): succeeded", job_id, what);
      break;
    case JobState::failed:
      spdlog::warn("job {} ({}): failed: {}{}{}", job_id, what, code, gap, msg);
      break;
    case JobState::retrying:
      spdlog::info("job {} ({}): retry in {} ms: {}{}{}", job_id, what, delay_ms, code, gap, msg);
      break;
    default:
      spdlog::debug("job {} ({}): {}", job_id, what, to_string(next));
      break;
  }
}

void log_gate_change(CallGate::Change change, const CallGate& gate, std::string_view was_reason,
                     std::int64_t outage_ms) {
  switch (change) {
    case CallGate::Change::none:
      return;
    case CallGate::Change::verifying:
      spdlog::warn(
          "KPS refused the credentials (401): calls held while they are refreshed; one probe "
          "call goes first");
      return;
    case CallGate::Change::blocked:
      spdlog::error(
          "calls paused: {}; one probe at a time until it clears, no attempts used (fix it; "
          "SIGHUP re-reads credentials and CA and probes at once)",
          gate.blocked_reason());
      return;
    case CallGate::Change::resumed:
      spdlog::warn("calls resume: {} cleared after {} ms", was_reason, outage_ms);
      return;
  }
}

bool RateReport::changed(RateLimiter::Change change, const RateLimiter& limiter,
                         Clock::time_point now, std::optional<Clock::duration> retry_after) {
  switch (change) {
    case RateLimiter::Change::none:
      return false;
    case RateLimiter::Change::cut:
      // One line a minute at most: a steady gateway limit is found again every few seconds.
      if (++cuts_unreported_, now - last_cut_report_ >= std::chrono::minutes(1)) {
        spdlog::warn(
            "throttled by the API gateway (429): rate now {:.1f}/s ({} cut{} since the last "
            "report; {:.1f}% of answers in the last minute were 429)",
            limiter.rate(now), cuts_unreported_, cuts_unreported_ == 1 ? "" : "s",
            100 * limiter.throttled_share(now));
        cuts_unreported_ = 0;
        last_cut_report_ = now;
      }
      return false;
    case RateLimiter::Change::holding:
      if (retry_after) {
        spdlog::info("throttled with Retry-After: no calls for {} ms",
                     std::chrono::duration_cast<std::chrono::milliseconds>(*retry_after).count());
      } else if (!hold_reported_) {
        hold_reported_ = true;
        spdlog::warn(
            "the API gateway refuses every call (a quota window): holding, one probe at a "
            "time until it admits calls again");
      } else {
        spdlog::debug("quota window: holding");
      }
      return false;
    case RateLimiter::Change::resumed:
      if (auto window = limiter.window(); window && !window_reported_ && limiter.window_quota()) {
        window_reported_ = true;
        spdlog::info(
            "quota window recognised: about {} calls per {} ms; calls stop at the quota and "
            "resume when the window turns",
            limiter.window_quota(),
            std::chrono::duration_cast<std::chrono::milliseconds>(*window).count());
      } else {
        spdlog::debug("quota window turned: calls resume");
      }
      return true;
  }
  return false;
}

}  // namespace kpsd
