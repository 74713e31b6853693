#include "token_source.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

namespace kpsd {

std::optional<Secret> read_secret_file(const std::string& path, std::string_view what,
                                       std::string& error, bool one_line) {
  std::string name = what.empty() ? path : std::string(what) + " " + path;
  // A directory opens and reads as empty: say what it is.
  if (struct stat st{}; ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    error = "cannot read " + name + ": it is a directory";
    return std::nullopt;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = "cannot read " + name + ": " + std::strerror(errno);
    return std::nullopt;
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  std::string text = buf.str();
  while (one_line && !text.empty() && (text.back() == '\n' || text.back() == '\r')) {
    text.pop_back();
  }
  if (text.empty()) {
    error = name + " is empty";
    return std::nullopt;
  }
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

std::optional<Secret> TokenSource::current(std::string& error,
                                           std::chrono::steady_clock::time_point now) {
  if (!token_.empty() && checked_ != std::chrono::steady_clock::time_point{} &&
      now - checked_ < check_interval && now >= checked_) {
    return token_;
  }
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    error = "cannot read " + what_ + " " + path_ + ": " + std::strerror(errno);
    return std::nullopt;
  }
  bool changed = st.st_mtim.tv_sec != mtime_.tv_sec || st.st_mtim.tv_nsec != mtime_.tv_nsec ||
                 st.st_size != size_ || token_.empty();
  if (changed) {
    auto read = read_secret_file(path_, what_, error);
    if (!read) return std::nullopt;
    // A token is one line; editors and `echo` add line ends or spaces that are not part of it.
    std::string text(read->reveal());
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
      text.pop_back();
    }
    if (text.empty()) {
      error = what_ + " " + path_ + " is empty";
      return std::nullopt;
    }
    if (text.find_first_of("\r\n") != std::string::npos) {
      error = what_ + " " + path_ + " holds more than one line";
      return std::nullopt;
    }
    token_ = Secret(std::move(text));
    // A rotation written by a tool with umask 022 leaves the credential readable by all.
    if (std::string why = loose_mode(path_); !why.empty()) spdlog::warn("{}: {}", what_, why);
    mtime_ = st.st_mtim;
    size_ = st.st_size;
  }
  checked_ = now;
  return token_;
}

}  // namespace kpsd
