#pragma once
// Brakes for a mass change: when a batch stops itself. Plain rules, no I/O; the job store applies
// them in the transaction that records each outcome (migration 0009 holds a paused batch's jobs).
// Modeled on the controls operators already trust for rollouts: AWS Systems Manager's
// MaxErrors (a count or a percentage), Ansible's max_fail_percentage, a canary step.
#include "core/result.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kpsd {

// Why a batch is paused.
enum class PauseReason {
  operator_asked,  // kpsctl pause --batch
  canary,          // enqueue --canary N: its first N jobs run, the others wait for resume
  failures,        // enqueue --max-failures: its failure budget is spent
};
std::string_view to_string(PauseReason r) noexcept;  // "operator", "canary", "failures"
std::optional<PauseReason> parse_pause_reason(std::string_view text) noexcept;

// A batch's brakes as enqueue set them (all optional: off by default). Set to 0, a brake is
// explicitly off (over a [queue] default); the store keeps only brakes that are on.
struct Brakes {
  std::optional<std::int64_t> canary;        // jobs that run before the batch waits; 0: none
  std::optional<std::int64_t> max_failures;  // failed jobs that pause the batch; 0: none
  std::optional<double> max_failure_pct;     // percent of ended jobs, 0 < P < 100
  bool operator==(const Brakes&) const = default;
};

// A percentage budget is judged only once this many of the batch's jobs have ended: one failure
// among the first two jobs is 50 %, and says nothing yet.
inline constexpr std::int64_t min_ended_for_percentage = 20;

// "N" or "P%" (P may have decimals: "2.5%") as a failure budget: `brakes` with that budget in
// place of any other; "0" is none (it turns off a [queue] default). A failure says why it is
// not one (quoting the text).
Result<Brakes> parse_max_failures(std::string_view text, Brakes brakes);
// The budget as the operator wrote it: "10", "5%", "2.5%"; empty when none is set.
std::string describe_max_failures(const Brakes& brakes);

// When the budget is spent, the one line that says so (for the log, the batch's detail, the
// page): "12 of 40 ended jobs failed (budget: 10)". nullopt while it holds, or with no budget.
// `ended` and `failed` count the batch's own jobs; failures at or over the count pause it, a
// percentage pauses it when failures pass it (strictly) once min_ended_for_percentage have ended.
std::optional<std::string> failure_budget_spent(const Brakes& brakes, std::int64_t ended,
                                                std::int64_t failed);

}  // namespace kpsd
