#pragma once
// Jobs' keys at rest: sealed (AES-256-GCM, OpenSSL) before they reach SQLite, opened when a
// claim reads them, so SQLite's buffers, pages, WAL and freed memory only ever hold ciphertext
// (issue 31: a core held a private key in SQLite's freed heap; zeroing all of SQLite's memory
// cost 40 % of kpsd's CPU a job). The key lives in a file beside the database.
#include "core/secret.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace kpsd {

class SecretBox {
 public:
  // The box of the database at `database_path`: its key file `<database_path>.key` (32 random
  // bytes, mode 0600, made on first use, O_EXCL); ":memory:" or "" gets a random key that lives
  // as long as the box. Throws std::runtime_error naming the file when it cannot be made or
  // read, or does not hold 32 bytes.
  static SecretBox for_database(const std::string& database_path);

  // "kpsd-box1" + a 12-byte random nonce + the ciphertext + the 16-byte tag (bytes).
  std::string seal(std::string_view plaintext) const;
  // Whether `stored` was sealed (rows written before kpsd sealed keys hold the key itself).
  static bool sealed(std::string_view stored) noexcept;
  // The key sealed in `stored`; nullopt when this box's key did not seal it (another key file,
  // or changed bytes).
  std::optional<Secret> open(std::string_view stored) const;

 private:
  explicit SecretBox(Secret key) : key_(std::move(key)) {}
  Secret key_;
};

}  // namespace kpsd
