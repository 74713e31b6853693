#pragma once
// A value that must never be printed: tokens, passwords, secret keys, job private keys.
// There is deliberately no operator<< and no fmt formatter, so `log(secret)` does not compile;
// reading the value takes an explicit reveal() that is easy to grep for.
#include <iosfwd>
#include <string>
#include <string_view>

namespace kpsd {

class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string value) : value_(std::move(value)) {}
  Secret(const Secret& other) = default;
  Secret(Secret&& other) noexcept : value_(std::move(other.value_)) { other.wipe(); }
  Secret& operator=(const Secret& other);
  Secret& operator=(Secret&& other) noexcept;
  ~Secret() { wipe(); }

  std::string_view reveal() const noexcept { return value_; }
  bool empty() const noexcept { return value_.empty(); }
  std::size_t size() const noexcept { return value_.size(); }
  bool operator==(const Secret& other) const noexcept;

  friend std::ostream& operator<<(std::ostream&, const Secret&) = delete;

 private:
  void wipe() noexcept;  // zeroes the bytes (OPENSSL_cleanse) so freed memory keeps no copy
  std::string value_;
};

}  // namespace kpsd
