#pragma once
#include "config.hpp"
#include "exit_codes.hpp"

#include <string>

namespace kpsd {

class Credentials;
class KpsClient;
class Scheduler;

// What `kpsd --check-config` checks beyond parsing: the files kpsd reads at start (the token,
// AK/SK or IAM password files, the CA file) exist and can be read. Makes no network call and
// opens no database. Returns the reason it would not start, or empty.
std::string check_startup_files(const Config& config);

// Runs kpsd until SIGTERM/SIGINT; returns the process exit code. Start-up failures are logged
// as one line and mapped to an exit code. `config_path` is re-read on SIGHUP.
int run_daemon(const Config& config, const std::string& config_path);

// SIGHUP: re-reads the configuration and the credential and CA files; applies what can change
// while running (see applies_on_reload) to the scheduler, records in `running` the keys in
// force (written) and the concurrency, and logs the changed keys that need a restart.
void reload(const std::string& config_path, Config& running, Credentials& credentials,
            KpsClient& client, Scheduler& scheduler, std::uint64_t open_file_limit);

}  // namespace kpsd
