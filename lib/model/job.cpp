#include "model/job.hpp"

#include "core/outside_text.hpp"

namespace kpsd {

std::string_view to_string(JobState state) noexcept {
  switch (state) {
    case JobState::queued:
      return "queued";
    case JobState::running:
      return "running";
    case JobState::retrying:
      return "retrying";
    case JobState::delivered:
      return "delivered";
    case JobState::succeeded:
      return "succeeded";
    case JobState::failed:
      return "failed";
    case JobState::cancelled:
      return "cancelled";
  }
  return "unknown";
}

std::optional<JobState> parse_job_state(std::string_view text) noexcept {
  for (JobState s : all_job_states) {
    if (to_string(s) == text) return s;
  }
  return std::nullopt;
}

Result<void> validate_server_id(std::string_view id) {
  if (id.empty()) return fail("server_id is empty");
  if (id.size() > 64) return fail("server_id is longer than 64 characters");
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return fail("server_id may only hold letters, digits, '-', '_' and '.'");
  }
  return {};
}

Result<void> validate_batch_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return fail("batch name must be 1 to 64 characters");
  // Shown in logs, tables and the page as it is: nothing a terminal or a reader would act on
  // (controls, C1, bidi overrides), and UTF-8 (outside_text.hpp).
  if (printable(name) != name)
    return fail("batch name has a control character, a bidi override or a byte that is not UTF-8");
  bool all_digits = true;
  for (unsigned char c : name) all_digits = all_digits && c >= '0' && c <= '9';
  if (all_digits) return fail("batch name must not be a number (numbers are batch ids)");
  return {};
}

}  // namespace kpsd
