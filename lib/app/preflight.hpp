#pragma once
// kpsd --check-config --preflight: one read-only authenticated call (GET failed-tasks, limit 1)
// with the configured endpoint, project and credentials, before a batch is trusted to them.
#include "config/config.hpp"
#include "kps/classify.hpp"

#include <string>

namespace kpsd {

struct PreflightVerdict {
  int exit_code = 0;    // 0 ok; 69 unreachable or the service failing; 77 credentials refused
                        // or not permitted; 78 the configuration points at the wrong place
  std::string message;  // "ok: ..." or the exact reason (never a secret)
};

// Judges the answer to the preflight call. Plain code: tested without a network.
PreflightVerdict judge_preflight(const HttpResult& result, const std::string& endpoint);

// Builds the client and credentials as kpsd would (IAM password: gets a token first), makes
// the call, and judges it. Bounded by the configured request timeout per step.
PreflightVerdict run_preflight(const Config& config);

// kpsd --check-config [--preflight], whole: the files kpsd reads at start, the endpoints and
// routes it resolved (stdout), then with `preflight` the project lookup (project_id = auto) and
// run_preflight. Reasons go to stderr. Returns the exit code (0, 69, 77, 78).
int check_config(Config config, const std::string& path, bool preflight);

}  // namespace kpsd
