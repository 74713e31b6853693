#pragma once
// One line of a `kpsctl enqueue --file` file: a server id, or an NDJSON object
// {"server_id": ..., "port": ..., "auth": {"type": ..., "key_file": ...}}. Parsing only; the
// key file is read by the caller. No I/O, so it is fuzzed on its own (tests/fuzz).
#include "core/result.hpp"
#include "model/job.hpp"

#include <string>
#include <string_view>

namespace kpsd {

struct JobLine {
  enum class Kind { skip, job };  // skip: blank or a # comment
  Kind kind = Kind::skip;
  NewJob job;            // server_id and port
  std::string key_type;  // auth.type when the line names a key file ("" otherwise)
  std::string key_file;  // auth.key_file
};

// A failure names what is wrong and quotes the offending field's value (a plain line's caller
// quotes the line).
Result<JobLine> parse_job_line(std::string_view line);

}  // namespace kpsd
