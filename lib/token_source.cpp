#include "token_source.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

namespace kpsd {

std::optional<Secret> TokenSource::current(std::string& error) {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    error = "cannot read token file " + path_ + ": " + std::strerror(errno);
    return std::nullopt;
  }
  bool changed = st.st_mtim.tv_sec != mtime_.tv_sec || st.st_mtim.tv_nsec != mtime_.tv_nsec ||
                 st.st_size != size_ || token_.empty();
  if (changed) {
    std::ifstream in(path_, std::ios::binary);
    if (!in) {
      error = "cannot read token file " + path_ + ": " + std::strerror(errno);
      return std::nullopt;
    }
    std::ostringstream buf;
    buf << in.rdbuf();
    std::string text = buf.str();
    // A token is one line; editors and `echo` add a newline that is not part of it.
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
      text.pop_back();
    }
    if (text.empty()) {
      error = "token file " + path_ + " is empty";
      return std::nullopt;
    }
    if (text.find_first_of("\r\n") != std::string::npos) {
      error = "token file " + path_ + " holds more than one line";
      return std::nullopt;
    }
    token_ = Secret(std::move(text));
    mtime_ = st.st_mtim;
    size_ = st.st_size;
  }
  return token_;
}

}  // namespace kpsd
