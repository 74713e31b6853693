#pragma once
// kps.project_id = auto: the project named after kps.region, looked up once at start from IAM
// as the vendor's SDKs do (GET {iam}/v3/projects?name={region}, authenticated as every other
// call: signed with AK/SK, or with the token; Go core/auth/internal/iam_helper.go). Zero or
// several matches is a configuration error that lists what IAM returned.
#include "config/config.hpp"

#include <string>

namespace kpsd {

struct ProjectLookup {
  std::string project_id;  // set on success
  std::string message;     // the log line: what was found, or why not
  int exit_code = 0;       // sysexits: 0, 69 IAM unreachable, 77 refused, 78 none or several
};

// Makes the lookup (its own event loop, before the scheduler starts). Network: the IAM endpoint
// through kpsd's proxy rules, deadline kps.request_timeout_ms per step.
ProjectLookup look_up_project(const Config& config);

// At start: for project_id = auto, looks the project up, logs what was found (or why not) and
// sets config.kps.project_id. Returns 0, or the lookup's exit code. Nothing for a set id.
int resolve_project_id(Config& config);

}  // namespace kpsd
