#include "auth/token_source.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

namespace kpsd {

Result<Secret> TokenSource::current(std::chrono::steady_clock::time_point now) {
  if (!token_.empty() && checked_ != std::chrono::steady_clock::time_point{} &&
      now - checked_ < check_interval && now >= checked_) {
    return token_;
  }
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0)
    return fail("cannot read " + what_ + " " + path_ + ": " + std::strerror(errno));
  bool changed = st.st_mtim.tv_sec != mtime_.tv_sec || st.st_mtim.tv_nsec != mtime_.tv_nsec ||
                 st.st_size != size_ || token_.empty();
  if (changed) {
    auto read = read_secret_file(path_, what_);
    if (!read) return read.error();
    // A token is one line; editors and `echo` add line ends or spaces that are not part of it.
    std::string text(read->reveal());
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
      text.pop_back();
    }
    if (text.empty()) return fail(what_ + " " + path_ + " is empty");
    if (text.find_first_of("\r\n") != std::string::npos)
      return fail(what_ + " " + path_ + " holds more than one line");
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
