#pragma once
// The input of `kpsctl enqueue --file`: one server id or one NDJSON object per line (see
// job_lines.hpp). Every line is checked before any job is queued, so a bad line 4,501 leaves
// nothing half-queued; then the file is read a second time and sent in chunks. Standard input
// ("-") cannot be read twice and is held in memory.
#include "core/result.hpp"
#include "model/job.hpp"

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace kpsd::ctl {

// Reads a password or private key file for the replace form. A password file's trailing
// newline is not part of the password; a private key is sent as it is. A failure says why
// (the path, never the content).
Result<Secret> read_key_file(const std::string& type, const std::string& path);

struct BadLine {
  std::size_t line = 0;
  std::string error;
};

// A line whose server an earlier line already named: kpsd queues the server once (one
// unfinished job per server), so the later line's port or key would be dropped unseen.
struct RepeatedLine {
  std::size_t line = 0;
  std::size_t first_line = 0;  // the line that named the server first
  std::string server_id;
};

struct JobFileCheck {
  std::size_t jobs = 0;
  std::size_t bad_line_count = 0;
  std::vector<BadLine> bad_lines;  // the first max_reported_bad_lines
  std::size_t repeated_count = 0;
  std::vector<RepeatedLine> repeated;  // the first max_reported_bad_lines, by line
  std::string error;                   // the file itself could not be read
  bool ok() const { return error.empty() && bad_line_count == 0; }
};

class JobFile {
 public:
  static constexpr std::size_t max_reported_bad_lines = 20;

  explicit JobFile(std::string name) : name_(std::move(name)) {}
  const std::string& name() const { return name_; }

  // Pass 1: every line, and every key file a line names, without keeping the jobs (a hash and
  // a line number per job, 16 bytes, to find repeated servers: a million lines need 16 MB).
  // Repeats found are read once more for their server ids.
  JobFileCheck check();
  // Pass 2: the jobs, a chunk at a time (sink returns false to stop). True when every job was
  // sent, false when the sink stopped (it says why itself); a failure when reading failed or a
  // line no longer passes the check.
  using Sink = std::function<bool(std::vector<NewJob>&)>;
  Result<bool> send(std::size_t chunk_jobs, std::size_t chunk_bytes, const Sink& sink);

 private:
  // Calls `fn(line_no, line)` for each line: true when it saw them all, false when `fn`
  // stopped; a failure when the input could not be read.
  Result<bool> for_each_line(const std::function<bool(std::size_t, const std::string&)>& fn);
  void name_repeats(JobFileCheck& result);
  std::string name_;
  std::optional<std::string> stdin_text_;  // "-": read once, kept for the second pass
};

// What one job adds to a request line, roughly (JSON keys, quotes, escapes of a key).
std::size_t request_bytes(const NewJob& job);

}  // namespace kpsd::ctl
