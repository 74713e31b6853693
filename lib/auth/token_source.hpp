#pragma once
// The IAM token kpsd sends as X-Auth-Token, read from a file (systemd's LoadCredential= puts it
// under $CREDENTIALS_DIRECTORY). The file is re-read when it changes, so a token can be rotated
// without a restart. It is looked at (one stat) at most once a second, not once per call: a
// rotated token is picked up within a second, or at once after a 401.
#include "core/secret.hpp"
#include "core/secret_file.hpp"

#include <chrono>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

namespace kpsd {

class TokenSource {
 public:
  // `what` names the file in errors ("token file", "file").
  explicit TokenSource(std::string path, std::string what = "token file")
      : path_(std::move(path)), what_(std::move(what)) {}

  // The current token, or a failure saying why (the message never holds the token).
  Result<Secret> current(
      std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());
  // Forces a re-read on the next call (after a 401).
  void invalidate() noexcept {
    mtime_ = {};
    checked_ = {};
  }

  static constexpr std::chrono::seconds check_interval{1};

 private:
  std::string path_;
  std::string what_;
  Secret token_;
  timespec mtime_{};
  off_t size_ = -1;
  std::chrono::steady_clock::time_point checked_{};  // last stat; {} = never
};

}  // namespace kpsd
