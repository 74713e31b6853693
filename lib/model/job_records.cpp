#include "model/job_records.hpp"

namespace kpsd {

std::string describe(const BatchStop& stop) {
  std::string batch = std::to_string(stop.batch_id) + (stop.name ? " (" + *stop.name + ")" : "");
  if (stop.reason == PauseReason::failures) {
    return "batch " + batch + " paused itself: " + stop.line +
           "; its queued jobs wait for kpsctl resume --batch " + std::to_string(stop.batch_id);
  }
  return "batch " + batch + ": " + stop.line;
}

std::string_view describe(RetryOutcome o) noexcept {
  switch (o) {
    case RetryOutcome::requeued:
      return "queued again";
    case RetryOutcome::rechecking:
      return "polling its task again";
    case RetryOutcome::not_found:
      return "no such job";
    case RetryOutcome::not_ended:
      return "not failed or cancelled: nothing to retry yet";
    case RetryOutcome::succeeded:
      return "already succeeded";
    case RetryOutcome::key_gone:
      return "replace-form job whose key was deleted when it ended: enqueue it again with its key";
    case RetryOutcome::call_in_flight:
      return "its call (cancelled) is still in flight: retry once it has ended";
    case RetryOutcome::server_busy:
      return "its server already has an unfinished job: retry refused (one unfinished job per "
             "server)";
  }
  return "unknown";
}

}  // namespace kpsd
