#include "core/secret_file.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

namespace kpsd {

Result<Secret> read_secret_file(const std::string& path, std::string_view what, bool one_line) {
  std::string name = what.empty() ? path : std::string(what) + " " + path;
  // A directory opens and reads as empty: say what it is.
  if (struct stat st{}; ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    return fail("cannot read " + name + ": it is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail("cannot read " + name + ": " + std::strerror(errno));
  std::ostringstream buf;
  buf << in.rdbuf();
  std::string text = buf.str();
  while (one_line && !text.empty() && (text.back() == '\n' || text.back() == '\r')) {
    text.pop_back();
  }
  if (text.empty()) return fail(name + " is empty");
  return Secret(std::move(text));
}

std::string loose_mode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return {};
  if ((st.st_mode & (S_IRGRP | S_IROTH)) == 0) return {};
  char mode[8];
  std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
  std::string who = (st.st_mode & S_IROTH) ? "every user" : "its group";
  return path + " holds a secret but " + who + " may read it (mode " + mode +
         "): chmod go-rwx, and give it to the user that reads it (root, or kpsd)";
}

}  // namespace kpsd
