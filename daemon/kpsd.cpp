// kpsd: the daemon. Parses its command line and configuration, then runs (lib/app/daemon.cpp).
#include "app/daemon.hpp"
#include "app/preflight.hpp"
#include "auth/project_lookup.hpp"
#include "config/config.hpp"
#include "core/logging.hpp"
#include "core/process_signals.hpp"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <iostream>
#include <sys/prctl.h>

int main(int argc, char** argv) {
  // Before anything else: a SIGHUP or SIGTERM while kpsd starts is held for its handlers, and
  // SIGPIPE never kills it (lib/core/process_signals.hpp).
  kpsd::hold_signals_until_handled();
  // No core file and no ptrace by the same user: kpsd's memory holds the cloud credential and
  // jobs' keys (issue 31). The unit also says LimitCORE=0.
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  CLI::App app{
      "kpsd: unbinds SSH key pairs from Huawei Cloud servers in bulk through the KPS v3 API.\n"
      "Jobs arrive over the control socket (kpsctl) or as rows in the jobs table; every attempt\n"
      "and task is kept in SQLite. Logs go to stderr."};
  app.set_version_flag("--version", "kpsd " KPSD_VERSION);
  app.footer(
      "Exit codes: 0 stopped, 64 usage, 65 the database is malformed, 70 internal error,\n"
      "73 cannot create the database, its lock or the control socket (or the file is not a\n"
      "kpsd database), 75 another kpsd holds the database's lock, 78 configuration error\n"
      "(also: concurrency too high for the open-file limit).");
  std::string config_path = "/etc/kpsd/kpsd.conf";
  bool check_only = false;
  bool preflight = false;
  app.add_option("-c,--config", config_path, "configuration file (INI)")->capture_default_str();
  app.add_flag("--check-config", check_only,
               "parse the configuration, check the credential and CA files it names can be "
               "read, report, and exit (78 when not)");
  app.add_flag("--preflight", preflight,
               "with --check-config: also make one read-only authenticated call (GET "
               "failed-tasks, limit 1) and say ok or why not (77 credentials refused or not "
               "permitted, 69 unreachable, 78 wrong endpoint or project)")
      ->needs("--check-config");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kpsd::exit_usage;
  }

  kpsd::Config config;
  try {
    config = kpsd::load_config(config_path);
  } catch (const kpsd::ConfigError& e) {
    std::cerr << "kpsd: " << e.what() << "\n";
    return kpsd::exit_config;
  }
  if (check_only) {
    kpsd::release_held_signals();  // a one-shot check: Ctrl-C ends it as usual
    return kpsd::check_config(std::move(config), config_path, preflight);
  }
  kpsd::setup_logging(config.log.level);
  if (int code = kpsd::resolve_project_id(config)) return code;
  try {
    return kpsd::run_daemon(config, config_path);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return kpsd::exit_software;
  }
}
