#pragma once
// Applying a changed configuration to a running kpsd: SIGHUP and the control op `reload` (which
// `systemctl reload` runs through kpsctl, and waits for).
#include "config/config.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace kpsd {

class Credentials;
class KpsClient;
class Scheduler;

struct ReloadOutcome {
  // Why the reload, or a part of it, was not applied: one line, empty when all of it was. A
  // configuration that does not parse changes nothing; a credential or CA file that cannot be
  // read keeps the one in use while the rest is applied.
  std::string error;
  std::vector<std::string> applied;       // "queue.concurrency 64 -> 128", in key order
  std::vector<std::string> need_restart;  // changed keys that take effect only at a restart
};

// Re-reads `config_path` and the credential and CA files; applies what can change while running
// (see applies_on_reload) to the scheduler, records in `running` the keys in force (as written)
// and the concurrency, and logs each step prefixed by `origin` ("SIGHUP", "reload"). A
// concurrency that does not fit `open_file_limit` (descriptors) is refused and the old one kept.
ReloadOutcome reload(const std::string& config_path, Config& running, Credentials& credentials,
                     KpsClient& client, Scheduler& scheduler, std::uint64_t open_file_limit,
                     const std::string& origin);

}  // namespace kpsd
