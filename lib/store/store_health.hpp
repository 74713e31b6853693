#pragma once
// Whether the job store can be written, as the scheduler learns it from its own writes (claims
// and outcome commits). Plain code with the time passed in: it decides when to say something
// (once per outage, once on recovery) and how long to wait before the next try.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace kpsd {

class StoreHealth {
 public:
  enum class Writer { claim, outcomes };
  enum class Change { none, went_down, recovered };

  // A write by `writer` failed with `problem` (an SQLite message, never a secret).
  Change failed(Writer writer, std::string problem, std::int64_t now_ms);
  // A write by `writer` committed.
  Change succeeded(Writer writer, std::int64_t now_ms);

  bool writable() const noexcept { return !claim_failing_ && !outcomes_failing_; }
  bool failing(Writer writer) const noexcept {
    return writer == Writer::claim ? claim_failing_ : outcomes_failing_;
  }
  const std::string& problem() const noexcept { return problem_; }  // empty while writable
  std::int64_t down_since_ms() const noexcept { return down_since_; }
  std::int64_t last_outage_ms() const noexcept { return last_outage_ms_; }
  std::uint64_t outages() const noexcept { return outages_; }

  // How long to wait before the next try of a failing write: doubles from 100 ms to 2 s, so
  // recovery is noticed within about 2 s and a held lock is not hammered.
  std::chrono::milliseconds retry_delay() const noexcept;

 private:
  bool claim_failing_ = false;
  bool outcomes_failing_ = false;
  int consecutive_failures_ = 0;
  std::string problem_;
  std::int64_t down_since_ = 0;
  std::int64_t last_outage_ms_ = 0;
  std::uint64_t outages_ = 0;
};

// SQLite result codes that prove the file is not a usable database (SQLITE_CORRUPT,
// SQLITE_NOTADB): the one database error that ends kpsd after start-up.
bool is_malformed_database(int sqlite_code) noexcept;
// SQLITE_BUSY or SQLITE_LOCKED: another connection holds a lock; waiting helps.
bool is_lock_conflict(int sqlite_code) noexcept;

}  // namespace kpsd
