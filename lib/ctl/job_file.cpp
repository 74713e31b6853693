#include "job_file.hpp"

#include "job_lines.hpp"
#include "token_source.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

namespace kpsd::ctl {

std::optional<Secret> read_key_file(const std::string& type, const std::string& path,
                                    std::string& error) {
  // A password file's trailing newline is not part of the password; a private key is sent as
  // it is.
  return read_secret_file(path, "key file", error, /*one_line=*/type == "password");
}

std::size_t request_bytes(const NewJob& j) {
  return 64 + j.server_id.size() + (j.auth ? 2 * j.auth->key.reveal().size() : 0);
}

namespace {
// One line as a job, its key file read; "" or the reason it is not a job. `skip`: blank line.
std::string job_of_line(const std::string& line, NewJob& job, bool& skip) {
  JobLine parsed;
  std::string error = parse_job_line(line, parsed);
  if (!error.empty()) return error;
  skip = parsed.kind == JobLine::Kind::skip;
  if (skip) return "";
  job = std::move(parsed.job);
  if (!parsed.key_file.empty()) {
    if (parsed.key_type != "password" && parsed.key_type != "keypair") {
      return "auth.type must be password or keypair";
    }
    auto key = read_key_file(parsed.key_type, parsed.key_file, error);
    if (!key) return error;
    job.auth = JobAuth{parsed.key_type, std::move(*key)};
  }
  return "";
}
}  // namespace

bool JobFile::for_each_line(const std::function<bool(std::size_t, const std::string&)>& fn,
                            std::string& error) {
  std::ifstream file;
  std::istringstream text;
  std::istream* in = nullptr;
  if (name_ == "-") {
    if (!stdin_text_) {
      std::ostringstream all;
      all << std::cin.rdbuf();
      stdin_text_ = all.str();
    }
    text.str(*stdin_text_);
    in = &text;
  } else {
    file.open(name_);
    if (!file) {
      error = "cannot read " + name_ + ": " + std::strerror(errno);
      return false;
    }
    in = &file;
  }
  std::string line;
  std::size_t line_no = 0;
  while (std::getline(*in, line)) {
    if (!fn(++line_no, line)) return false;
  }
  if (in->bad()) {
    error = "error reading " + name_ + " after line " + std::to_string(line_no);
    return false;
  }
  return true;
}

JobFileCheck JobFile::check() {
  JobFileCheck result;
  for_each_line(
      [&](std::size_t line_no, const std::string& line) {
        NewJob job;
        bool skip = false;
        std::string error = job_of_line(line, job, skip);
        if (!error.empty()) {
          ++result.bad_line_count;
          if (result.bad_lines.size() < max_reported_bad_lines) {
            result.bad_lines.push_back({line_no, error});
          }
        } else if (!skip) {
          ++result.jobs;
        }
        return true;
      },
      result.error);
  return result;
}

bool JobFile::send(std::size_t chunk_jobs, std::size_t chunk_bytes, const Sink& sink,
                   std::string& error) {
  std::vector<NewJob> chunk;
  std::size_t bytes = 0;
  bool ok = for_each_line(
      [&](std::size_t line_no, const std::string& line) {
        NewJob job;
        bool skip = false;
        if (std::string problem = job_of_line(line, job, skip); !problem.empty()) {
          // Checked a moment ago: the file (or a key file) changed since.
          error = name_ + ":" + std::to_string(line_no) + ": " + problem +
                  " (it changed after the check)";
          return false;
        }
        if (skip) return true;
        bytes += request_bytes(job);
        chunk.push_back(std::move(job));
        if (chunk.size() >= chunk_jobs || bytes >= chunk_bytes) {
          if (!sink(chunk)) return false;
          chunk.clear();
          bytes = 0;
        }
        return true;
      },
      error);
  if (!ok) return false;
  return chunk.empty() || sink(chunk);
}

}  // namespace kpsd::ctl
