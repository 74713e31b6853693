#pragma once
// A small RAII layer over the SQLite C API. <sqlite3.h> stays out of this header; handles are
// owned by unique_ptr with non-throwing deleters. Failures of the database itself (disk full,
// corrupt file, misuse) are infrastructure failures and throw sql::Error.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace kpsd::sql {

class Error : public std::runtime_error {
 public:
  Error(const std::string& what, int code) : std::runtime_error(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

class Database {
 public:
  enum class Mode { read_write_create, read_only };
  explicit Database(const std::string& path, Mode mode = Mode::read_write_create);
  sqlite3* handle() const noexcept { return db_.get(); }

  void exec(std::string_view sql);                   // one or more statements, no results
  std::int64_t pragma_int(std::string_view pragma);  // `PRAGMA x` returning one integer
  std::int64_t last_insert_rowid() const noexcept;
  int changes() const noexcept;
  [[noreturn]] void fail(std::string_view context, int code) const;

  // Called once a Transaction has ended: true after its COMMIT went through, false when it
  // rolled back (or its COMMIT failed). One callback; setting another replaces it.
  void on_transaction_end(std::function<void(bool committed)> callback) {
    transaction_end_ = std::move(callback);
  }
  void transaction_ended(bool committed) noexcept {
    if (transaction_end_) transaction_end_(committed);
  }

 private:
  struct Closer {
    void operator()(sqlite3* db) const noexcept;
  };
  std::unique_ptr<sqlite3, Closer> db_;
  std::string path_;
  std::function<void(bool)> transaction_end_;
};

class Statement {
 public:
  Statement(Database& db, std::string_view sql);  // prepared once (SQLITE_PREPARE_PERSISTENT)

  // Binding is 1-based as in SQLite. Each call returns *this so binds can chain.
  Statement& bind(int index, std::int64_t value);
  Statement& bind(int index, std::string_view value);
  Statement& bind(int index, std::nullptr_t);
  Statement& bind(int index, const std::optional<std::string>& value);
  Statement& bind(int index, const std::optional<std::int64_t>& value);
  Statement& bind_blob(int index, std::string_view bytes);
  // Named apart: bind(i, 5) would be ambiguous between an int64_t and a double overload.
  Statement& bind_double(int index, std::optional<double> value);  // nullopt: NULL

  bool step();   // true: a row is ready; false: done
  void reset();  // also clears bindings, so a statement never carries a stale value
  void run();    // step until done, then reset

  // The 0-based index of the result column called `name` (its alias, or the column's own name),
  // for a reader to look up once after preparing, so adding a column to a SELECT cannot shift
  // the others. Throws std::logic_error when the statement has no such column (a bug).
  int column_index(std::string_view name) const;
  std::int64_t column_int(int index) const;
  std::string column_text(int index) const;  // "" for NULL
  std::optional<std::string> column_optional_text(int index) const;
  std::optional<std::int64_t> column_optional_int(int index) const;
  std::optional<double> column_optional_double(int index) const;
  bool column_is_null(int index) const;

 private:
  struct Finalizer {
    void operator()(sqlite3_stmt* stmt) const noexcept;
  };
  Database* db_;
  std::unique_ptr<sqlite3_stmt, Finalizer> stmt_;
};

// Rolls back unless commit() was called. Writers use BEGIN IMMEDIATE so a busy database is
// met at the start (where busy_timeout waits) rather than on the first write.
class Transaction {
 public:
  enum class Kind { deferred, immediate };
  explicit Transaction(Database& db, Kind kind = Kind::immediate);
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();
  void commit();

 private:
  Database& db_;
  bool done_ = false;
};

}  // namespace kpsd::sql
