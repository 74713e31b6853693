#pragma once
// kpsctl's commands, one function each; the command line (kpsctl.cpp) fills their arguments.
// Each returns the process exit code.
#include "ctl/output.hpp"

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
  std::optional<std::int64_t> canary;  // --canary N (0: none, over a [queue] default)
  std::string max_failures;            // --max-failures N or P% ("0": none)
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
  std::string timeout;  // a duration ("" or 0: never); checked by the command line
  bool strict = false;  // a cancelled job fails the wait too
};
int cmd_wait(const Options& opt, const WaitArgs& args);
int cmd_version(const Options& opt);

// retry and cancel: job ids, or (retry) a state, or a batch (id or name).
struct BulkArgs {
  std::vector<std::int64_t> ids;
  std::string state;  // retry: failed or cancelled
  std::string batch;
};
int cmd_retry(const Options& opt, const BulkArgs& args);
int cmd_cancel(const Options& opt, const BulkArgs& args);
// pause and resume: every call (batch empty), or one batch's jobs.
int cmd_pause(const Options& opt, bool pause, const std::string& batch);
struct PruneArgs {
  std::string older_than;  // a duration: 90m, 12h, 7d
  std::string state;       // succeeded, failed or cancelled ("": all three)
  std::string batch;       // one batch's jobs (id or name)
  bool dry_run = false;    // counts per batch and state; deletes nothing
  bool force = false;      // allows an age under an hour
};
int cmd_prune(const Options& opt, const PruneArgs& args);
// Re-reads kpsd's configuration and credential files and answers once they are applied: what
// `systemctl reload` runs. Exit 0 when all of it was applied, 78 (EX_CONFIG) with kpsd's
// reason when it was not (a file that does not parse changes nothing).
int cmd_reload(const Options& opt);

}  // namespace kpsd::ctl
