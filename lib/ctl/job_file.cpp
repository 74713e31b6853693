#include "ctl/job_file.hpp"

#include "core/outside_text.hpp"
#include "core/secret_file.hpp"
#include "core/suggest.hpp"
#include "ctl/job_lines.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace kpsd::ctl {

Result<Secret> read_key_file(const std::string& type, const std::string& path) {
  // A password file's trailing newline is not part of the password; a private key is sent as
  // it is.
  auto key = read_secret_file(path, "key file", /*one_line=*/type == "password");
  if (!key) return key;
  // As OpenSSH says of a private key others may read: said, not refused (issue 31).
  if (std::string why = loose_mode(path); !why.empty())
    std::cerr << "kpsctl: warning: key file " << printable(why) << "\n";
  if (type == "password") {
    // A private key given as a password would be sent as one, and the server left as it was.
    std::string_view k = key->reveal();
    if (k.starts_with("-----BEGIN ") && k.find("PRIVATE KEY-----") != std::string_view::npos) {
      return kpsd::fail("key file " + path +
                        " holds a private key, not a password: use --auth-type keypair");
    }
    return key;
  }
  if (type != "keypair") return key;
  // KPS wants the private key that is bound now, as PEM or OpenSSH text. Said without ever
  // showing the content.
  std::string_view k = key->reveal();
  while (!k.empty() && (k.front() == ' ' || k.front() == '\n' || k.front() == '\r')) {
    k.remove_prefix(1);
  }
  if (k.starts_with("ssh-") || k.starts_with("ecdsa-sha2-") || k.starts_with("sk-ssh-")) {
    return kpsd::fail("key file " + path +
                      " holds a public key (an id_*.pub file): give the private key file it "
                      "pairs with");
  }
  if (k.starts_with("PuTTY-User-Key-File-")) {
    return kpsd::fail("key file " + path +
                      " is a PuTTY key (.ppk): convert it with PuTTYgen first, e.g. `puttygen "
                      "KEY.ppk -O private-openssh -o KEY`");
  }
  if (!k.starts_with("-----BEGIN ") || k.find("PRIVATE KEY-----") == std::string_view::npos) {
    return kpsd::fail("key file " + path +
                      " is not a private key (PEM or OpenSSH: -----BEGIN ... PRIVATE KEY-----)");
  }
  return key;
}

std::size_t request_bytes(const NewJob& j) {
  return 64 + j.server_id.size() + (j.auth ? 2 * j.auth->key.reveal().size() : 0);
}

namespace {

// The offending text as an error shows it: in backquotes, at most 64 characters, control
// characters as \xNN (a file line is not a secret; a key file's content never gets here).
std::string backquoted(std::string_view text) {
  std::string out = "`";
  std::size_t shown = 0;
  for (unsigned char c : text) {
    if (++shown > 64) return out + "...`";
    if (c < 0x20 || c == 0x7f) {
      static const char* hex = "0123456789abcdef";
      out += std::string("\\x") + hex[c >> 4] + hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "`";
}

// A first line that names columns instead of a server: its first column is a column name
// (server_id, id, ...), or it has commas and its first column is no server id ("Server Name,IP").
// A headerless CSV ("srv-a,web") is not a header: job_of_line names it as a CSV row.
bool looks_like_header(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
  if (line.empty() || line.front() == '{') return false;
  std::string_view first = line.substr(0, line.find(','));
  std::string lower;
  for (char c : first) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (std::string_view name : {"server_id", "serverid", "server", "servers", "server-id", "id",
                                "instance_id", "instance", "uuid", "host", "hostname", "name"}) {
    if (lower == name) return true;
  }
  return first.size() != line.size() && !validate_server_id(first);
}

std::string header_problem(std::string_view line) {
  bool csv = line.find(',') != std::string_view::npos;
  return backquoted(line) +
         ": the first line looks like a CSV header, not a server; skip it with " +
         (csv ? "`tail -n +2 FILE | cut -d, -f1 | kpsctl enqueue --file -`"
              : "`tail -n +2 FILE | kpsctl enqueue --file -`");
}

// One line as a job, its key file read; nullopt for a blank line or a comment; a failure says
// why it is not a job.
Result<std::optional<NewJob>> job_of_line(const std::string& line) {
  auto parsed = parse_job_line(line);
  if (!parsed) {
    const std::string& error = parsed.error().message;
    // A plain line: name the value it held. A JSON line's own error names its field.
    std::string_view t = line;
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    if (!t.empty() && t.back() == '\r') t.remove_suffix(1);
    if (t.starts_with("{")) return parsed.error();
    if (t.find(',') != std::string_view::npos) {
      return kpsd::fail(backquoted(t) +
                        ": a CSV row, not one server id: take its first column with `cut -d, "
                        "-f1 FILE | kpsctl enqueue --file -`");
    }
    return kpsd::fail(backquoted(t) + ": " + error);
  }
  if (parsed->kind == JobLine::Kind::skip) return std::optional<NewJob>();
  NewJob job = std::move(parsed->job);
  if (!parsed->key_file.empty()) {
    if (parsed->key_type != "password" && parsed->key_type != "keypair") {
      return kpsd::fail("auth.type " + backquoted(parsed->key_type) +
                        " must be password or keypair" +
                        did_you_mean(parsed->key_type, {"password", "keypair"}));
    }
    auto key = read_key_file(parsed->key_type, parsed->key_file);
    if (!key) return key.error();
    job.auth = JobAuth{parsed->key_type, std::move(*key)};
  }
  return std::optional<NewJob>(std::move(job));
}
}  // namespace

Result<bool> JobFile::for_each_line(
    const std::function<bool(std::size_t, const std::string&)>& fn) {
  std::ifstream file;
  std::istringstream text;
  std::istream* in = nullptr;
  struct stat st {};
  bool directory = name_ == "-" ? ::fstat(STDIN_FILENO, &st) == 0 && S_ISDIR(st.st_mode)
                                : ::stat(name_.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  if (directory) {  // it opens, and reads as nothing or as an error after line 0
    return kpsd::fail("cannot read " + std::string(name_ == "-" ? "standard input" : name_) +
                      ": it is a directory");
  }
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
    if (!file) return kpsd::fail("cannot read " + name_ + ": " + std::strerror(errno));
    in = &file;
  }
  std::string line;
  std::size_t line_no = 0;
  while (std::getline(*in, line)) {
    // A UTF-8 byte order mark (Windows editors, Excel's "CSV UTF-8") is not part of the id.
    if (line_no == 0 && line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3);
    if (!line.empty() && line.back() == '\r') line.pop_back();  // a CRLF file (Windows)
    if (!fn(++line_no, line)) return false;
  }
  if (in->bad())
    return kpsd::fail("error reading " + name_ + " after line " + std::to_string(line_no));
  return true;
}

JobFileCheck JobFile::check() {
  JobFileCheck result;
  std::vector<std::pair<std::size_t, std::uint32_t>> servers;  // (hash of the id, line)
  auto read = for_each_line([&](std::size_t line_no, const std::string& line) {
    auto job = line_no == 1 && looks_like_header(line)
                   ? Result<std::optional<NewJob>>(kpsd::fail(header_problem(line)))
                   : job_of_line(line);
    if (!job) {
      ++result.bad_line_count;
      if (result.bad_lines.size() < max_reported_bad_lines) {
        result.bad_lines.push_back({line_no, job.error().message});
      }
    } else if (*job) {
      ++result.jobs;
      servers.emplace_back(std::hash<std::string>{}((*job)->server_id),
                           static_cast<std::uint32_t>(line_no));
    }
    return true;
  });
  if (!read) {
    result.error = read.error().message;
    return result;
  }
  // Equal hashes sit together, each run in line order: every line after a run's first repeats it.
  std::sort(servers.begin(), servers.end());
  std::vector<std::pair<std::uint32_t, std::uint32_t>> repeats;  // (line, first line)
  for (std::size_t i = 1, first = 0; i < servers.size(); ++i) {
    if (servers[i].first != servers[first].first) {
      first = i;
      continue;
    }
    repeats.emplace_back(servers[i].second, servers[first].second);
  }
  result.repeated_count = repeats.size();
  std::size_t shown = std::min(repeats.size(), max_reported_bad_lines);
  std::partial_sort(repeats.begin(), repeats.begin() + static_cast<std::ptrdiff_t>(shown),
                    repeats.end());
  for (std::size_t i = 0; i < shown; ++i) {
    result.repeated.push_back({repeats[i].first, repeats[i].second, {}});
  }
  if (!result.repeated.empty()) name_repeats(result);
  return result;
}

void JobFile::name_repeats(JobFileCheck& result) {
  std::size_t next = 0;  // result.repeated is in line order
  // A file unreadable now was read a moment ago: its repeats stay unnamed.
  (void)for_each_line([&](std::size_t line_no, const std::string& line) {
    while (next < result.repeated.size() && result.repeated[next].line == line_no) {
      if (auto parsed = parse_job_line(line))
        result.repeated[next].server_id = parsed->job.server_id;
      ++next;
    }
    return next < result.repeated.size();
  });
}

Result<bool> JobFile::send(std::size_t chunk_jobs, std::size_t chunk_bytes, const Sink& sink) {
  std::vector<NewJob> chunk;
  std::size_t bytes = 0;
  std::string changed;
  auto read = for_each_line([&](std::size_t line_no, const std::string& line) {
    auto job = job_of_line(line);
    if (!job) {
      // Checked a moment ago: the file (or a key file) changed since.
      changed = name_ + ":" + std::to_string(line_no) + ": " + job.error().message +
                " (it changed after the check)";
      return false;
    }
    if (!*job) return true;
    bytes += request_bytes(**job);
    chunk.push_back(std::move(**job));
    if (chunk.size() >= chunk_jobs || bytes >= chunk_bytes) {
      if (!sink(chunk)) return false;
      chunk.clear();
      bytes = 0;
    }
    return true;
  });
  if (!changed.empty()) return kpsd::fail(std::move(changed));
  if (!read) return read.error();
  if (!*read) return false;
  return chunk.empty() || sink(chunk);
}

}  // namespace kpsd::ctl
