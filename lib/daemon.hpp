#pragma once
#include "config.hpp"
#include "exit_codes.hpp"

#include <string>

namespace kpsd {

class Credentials;
class KpsClient;

// What `kpsd --check-config` checks beyond parsing: the files kpsd reads at start (the token,
// AK/SK or IAM password files, the CA file) exist and can be read. Makes no network call and
// opens no database. Returns the reason it would not start, or empty.
std::string check_startup_files(const Config& config);

// Runs kpsd until SIGTERM/SIGINT; returns the process exit code. Start-up failures are logged
// as one line and mapped to an exit code. `config_path` is re-read on SIGHUP.
int run_daemon(const Config& config, const std::string& config_path);

// SIGHUP: re-read the log level and CA file from the configuration file, and the credentials.
void reload(const std::string& config_path, Credentials& credentials, KpsClient& client);

}  // namespace kpsd
