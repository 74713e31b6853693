#pragma once
// kpsctl's commands, one function each; the command line (kpsctl.cpp) fills their arguments.
// Each returns the process exit code.
#include "output.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kpsd::ctl {

struct EnqueueArgs {
  std::vector<std::string> server_ids;
  std::string file;
  std::string auth_type, key_file;
  int port = 0;
  std::string batch;  // a name for the new batch ("" = unnamed)
  bool dry_run = false;
};
int cmd_enqueue(const Options& opt, const EnqueueArgs& args);

struct ListArgs {
  std::string state, server, batch;
  int limit = 100;
  std::int64_t after = 0;
  bool maybe_done = false;
};
int cmd_list(const Options& opt, const ListArgs& args);
int cmd_show(const Options& opt, std::int64_t id);
int cmd_report(const Options& opt, const std::string& batch, bool maybe_done = false);
int cmd_batches(const Options& opt, int limit);

int cmd_stats(const Options& opt, const std::string& batch);
struct WaitArgs {
  std::vector<std::int64_t> ids;
  std::string batch;
  double timeout_s = 0;
};
int cmd_wait(const Options& opt, const WaitArgs& args);
int cmd_version(const Options& opt);

int cmd_retry(const Options& opt, std::int64_t id, const std::string& state);
int cmd_prune(const Options& opt, const std::string& older_than);
// Re-reads kpsd's configuration and credential files and answers once they are applied: what
// `systemctl reload` runs. Exit 0 when all of it was applied, 78 (EX_CONFIG) with kpsd's
// reason when it was not (a file that does not parse changes nothing).
int cmd_reload(const Options& opt);
// Requests that answer with nothing but "ok" (cancel, pause, resume): `done` is what to say.
int cmd_simple(const Options& opt, const boost::json::object& req, const std::string& done);

// "90s", "15m", "12h", "7d", "2w" as milliseconds; nullopt if it is not such a duration.
std::optional<std::int64_t> parse_duration_ms(std::string_view text);

}  // namespace kpsd::ctl
