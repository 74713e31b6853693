// libFuzzer: one line of a `kpsctl enqueue --file` file (a server id or an NDJSON object).
#include "ctl/job_lines.hpp"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto line = kpsd::parse_job_line(std::string_view(reinterpret_cast<const char*>(data), size));
  // A line taken as a job always carries a valid server id.
  if (line && line->kind == kpsd::JobLine::Kind::job &&
      !kpsd::validate_server_id(line->job.server_id)) {
    __builtin_trap();
  }
  if (!line && line.error().message.empty()) __builtin_trap();  // a refusal always says why
  return 0;
}
