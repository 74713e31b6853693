#pragma once
#include "config/config.hpp"
#include "core/exit_codes.hpp"
#include "core/result.hpp"

#include <string>
#include <vector>

namespace kpsd {

// What `kpsd --check-config` checks beyond parsing: the files kpsd reads at start (the token,
// AK/SK or IAM password files, the CA file) exist and can be read. Makes no network call and
// opens no database. A failure says why it would not start.
Result<void> check_startup_files(const Config& config);

// What --check-config and the start say, without refusing (issue 31): secret files others may
// read (loose_secret_files), and a metrics/status port that listens beyond loopback.
std::vector<std::string> startup_warnings(const Config& config);

// Runs kpsd until SIGTERM/SIGINT; returns the process exit code. Start-up failures are logged
// as one line and mapped to an exit code. `config_path` is re-read on SIGHUP.
int run_daemon(const Config& config, const std::string& config_path);

}  // namespace kpsd
