// libFuzzer: one line of a `kpsctl enqueue --file` file (a server id or an NDJSON object).
#include "ctl/job_lines.hpp"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  kpsd::JobLine line;
  std::string error =
      kpsd::parse_job_line(std::string_view(reinterpret_cast<const char*>(data), size), line);
  // A line taken as a job always carries a valid server id.
  if (error.empty() && line.kind == kpsd::JobLine::Kind::job &&
      !kpsd::validate_server_id(line.job.server_id).empty()) {
    __builtin_trap();
  }
  return 0;
}
