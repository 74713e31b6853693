#include "control/reload.hpp"

#include "auth/credentials.hpp"
#include "kps/kps_client.hpp"
#include "net/fd_limit.hpp"
#include "scheduling/scheduler.hpp"

#include <spdlog/spdlog.h>

namespace kpsd {

namespace {

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
  return out;
}

void add_error(ReloadOutcome& out, const std::string& error) {
  out.error += (out.error.empty() ? "" : "; ") + error;
}

// Sorts the changed keys into applied and need-restart, and records the applied ones in
// `running`. A concurrency that cannot fit is neither: it is an error.
void sort_changes(const Config& fresh, Config& running, bool concurrency_fits,
                  std::uint64_t open_file_limit, ReloadOutcome& out) {
  for (const std::string& key : changed_keys(running, fresh)) {
    auto value_of = [&key](const Config& c) {
      auto it = c.written.find(key);
      return it == c.written.end() ? std::string("(default)") : it->second;
    };
    std::string change = key + " " + value_of(running) + " -> " + value_of(fresh);
    if (!applies_on_reload(key)) {
      out.need_restart.push_back(change);
      continue;
    }
    if (key == "queue.concurrency" && !concurrency_fits) {
      add_error(out, "queue.concurrency = " + std::to_string(fresh.queue.concurrency) +
                         " needs up to " + std::to_string(descriptors_needed(fresh)) +
                         " open files, but the limit is " + std::to_string(open_file_limit) +
                         "; keeping " + std::to_string(running.queue.concurrency));
      continue;
    }
    out.applied.push_back(change);
    if (auto it = fresh.written.find(key); it != fresh.written.end()) {
      running.written[key] = it->second;
    } else {
      running.written.erase(key);
    }
  }
}

}  // namespace

ReloadOutcome reload(const std::string& config_path, Config& running, Credentials& credentials,
                     KpsClient& client, Scheduler& scheduler, std::uint64_t open_file_limit,
                     const std::string& origin) {
  // What can change safely while running: the log level, the credential files, the CA file,
  // concurrency, the rate ceiling and the retry and poll settings. Other changes are named and
  // need a restart. The file is read first: one that does not parse changes nothing at all.
  ReloadOutcome out;
  Config fresh;
  try {
    fresh = load_config(config_path);
  } catch (const ConfigError& e) {
    out.error = std::string(e.what()) + "; keeping the running configuration";
    spdlog::error("{}: {}", origin, out.error);
    return out;
  }
  if (auto reloaded = credentials.reload(); !reloaded) {
    add_error(out, reloaded.error().message + "; keeping the credentials in use");
  }
  spdlog::set_level(spdlog::level::from_str(fresh.log.level));
  if (auto ca = client.reload_ca(fresh.kps.ca_file); !ca) {
    add_error(out, ca.error().message + "; keeping the CA in use");
  }
  spdlog::info("{}: reloaded log level ({}), credentials and CA file", origin, fresh.log.level);

  bool concurrency_fits = descriptors_needed(fresh) <= open_file_limit;
  sort_changes(fresh, running, concurrency_fits, open_file_limit, out);
  // The scheduler reads only live keys: it takes them all from the fresh read, except a
  // concurrency refused above.
  Config live = fresh;
  if (!concurrency_fits) live.queue.concurrency = running.queue.concurrency;
  scheduler.apply(live);
  running.queue.concurrency = live.queue.concurrency;
  if (!out.error.empty()) spdlog::error("{}: {}", origin, out.error);
  if (!out.applied.empty()) spdlog::info("{}: applied {}", origin, joined(out.applied));
  if (!out.need_restart.empty()) {
    spdlog::warn("{}: these changes need a restart (systemctl restart kpsd): {}", origin,
                 joined(out.need_restart));
  }
  return out;
}

}  // namespace kpsd
