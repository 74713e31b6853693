#include "store/sqlite.hpp"

#include <sqlite3.h>

namespace kpsd::sql {

void Database::Closer::operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }

namespace {
// Before SQLite's first use: no global memory statistics. They are on by default and take a
// global mutex on every allocation; kpsd never reads them (a profile of enqueue showed 12 % of
// kpsd's time in that mutex). SQLite's memory is not zeroed when freed: jobs' keys reach it
// only sealed (secret_box.hpp). A zeroing allocator (SQLITE_CONFIG_MALLOC) cost 40 % of kpsd's
// CPU a job (tests/bench/raw.sh: 108 to 164 us; 21 GB zeroed per 20,000 jobs, mostly the page
// cache's bulk of 20 pages made under sqlite3BtreeBeginTrans).
void configure_sqlite_once() {
  static const int configured = [] {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);  // SQLITE_MISUSE if already initialised: fine
    return 0;
  }();
  (void)configured;
}
}  // namespace

Database::Database(const std::string& path, Mode mode) : path_(path) {
  configure_sqlite_once();
  sqlite3* raw = nullptr;
  int flags =
      mode == Mode::read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  flags |= SQLITE_OPEN_NOMUTEX;  // each handle is used by one thread at a time
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  db_.reset(raw);  // sqlite3_open_v2 may hand back a handle even on failure: always own it
  if (rc != SQLITE_OK) {
    std::string msg = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    throw Error("cannot open database " + path + ": " + msg, rc);
  }
  sqlite3_extended_result_codes(raw, 1);
}

void Database::fail(std::string_view context, int code) const {
  std::string msg(context);
  msg += ": ";
  msg += db_ ? sqlite3_errmsg(db_.get()) : sqlite3_errstr(code);
  msg += " (" + path_ + ")";
  throw Error(msg, code);
}

void Database::exec(std::string_view sql) {
  std::string text(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_.get(), text.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    throw Error("sqlite: " + msg + " (" + path_ + ")", rc);
  }
}

std::int64_t Database::pragma_int(std::string_view pragma) {
  Statement s(*this, "PRAGMA " + std::string(pragma));
  if (!s.step()) fail("PRAGMA " + std::string(pragma) + " returned no row", SQLITE_ERROR);
  std::int64_t v = s.column_int(0);
  s.reset();
  return v;
}

std::int64_t Database::last_insert_rowid() const noexcept {
  return sqlite3_last_insert_rowid(db_.get());
}

int Database::changes() const noexcept { return sqlite3_changes(db_.get()); }

void Statement::Finalizer::operator()(sqlite3_stmt* stmt) const noexcept { sqlite3_finalize(stmt); }

Statement::Statement(Database& db, std::string_view sql) : db_(&db) {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v3(db.handle(), sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
  stmt_.reset(raw);
  if (rc != SQLITE_OK) db.fail("prepare `" + std::string(sql.substr(0, 60)) + "`", rc);
}

Statement& Statement::bind(int index, std::int64_t value) {
  int rc = sqlite3_bind_int64(stmt_.get(), index, value);
  if (rc != SQLITE_OK) db_->fail("bind", rc);
  return *this;
}

Statement& Statement::bind(int index, std::string_view value) {
  int rc = sqlite3_bind_text(stmt_.get(), index, value.data(), static_cast<int>(value.size()),
                             SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) db_->fail("bind", rc);
  return *this;
}

Statement& Statement::bind(int index, std::nullptr_t) {
  int rc = sqlite3_bind_null(stmt_.get(), index);
  if (rc != SQLITE_OK) db_->fail("bind", rc);
  return *this;
}

Statement& Statement::bind(int index, const std::optional<std::string>& value) {
  return value ? bind(index, std::string_view(*value)) : bind(index, nullptr);
}

Statement& Statement::bind(int index, const std::optional<std::int64_t>& value) {
  return value ? bind(index, *value) : bind(index, nullptr);
}

Statement& Statement::bind_blob(int index, std::string_view bytes) {
  int rc = sqlite3_bind_blob(stmt_.get(), index, bytes.data(), static_cast<int>(bytes.size()),
                             SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) db_->fail("bind", rc);
  return *this;
}

Statement& Statement::bind_double(int index, std::optional<double> value) {
  int rc = value ? sqlite3_bind_double(stmt_.get(), index, *value)
                 : sqlite3_bind_null(stmt_.get(), index);
  if (rc != SQLITE_OK) db_->fail("bind", rc);
  return *this;
}

bool Statement::step() {
  int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  sqlite3_reset(stmt_.get());
  db_->fail("step", rc);
}

void Statement::reset() {
  sqlite3_reset(stmt_.get());
  sqlite3_clear_bindings(stmt_.get());
}

void Statement::run() {
  while (step()) {
  }
  reset();
}

int Statement::column_index(std::string_view name) const {
  int n = sqlite3_column_count(stmt_.get());
  for (int i = 0; i < n; ++i) {
    const char* c = sqlite3_column_name(stmt_.get(), i);
    if (c && name == c) return i;
  }
  throw std::logic_error("statement has no column " + std::string(name) + ": " +
                         sqlite3_sql(stmt_.get()));
}

std::int64_t Statement::column_int(int index) const {
  return sqlite3_column_int64(stmt_.get(), index);
}

std::string Statement::column_text(int index) const {
  const unsigned char* text = sqlite3_column_text(stmt_.get(), index);
  if (!text) return {};
  return std::string(reinterpret_cast<const char*>(text),
                     static_cast<std::size_t>(sqlite3_column_bytes(stmt_.get(), index)));
}

std::optional<std::string> Statement::column_optional_text(int index) const {
  if (column_is_null(index)) return std::nullopt;
  return column_text(index);
}

std::optional<std::int64_t> Statement::column_optional_int(int index) const {
  if (column_is_null(index)) return std::nullopt;
  return column_int(index);
}

std::optional<double> Statement::column_optional_double(int index) const {
  if (column_is_null(index)) return std::nullopt;
  return sqlite3_column_double(stmt_.get(), index);
}

bool Statement::column_is_null(int index) const {
  return sqlite3_column_type(stmt_.get(), index) == SQLITE_NULL;
}

Transaction::Transaction(Database& db, Kind kind) : db_(db) {
  db_.exec(kind == Kind::immediate ? "BEGIN IMMEDIATE" : "BEGIN");
}

Transaction::~Transaction() {
  if (!done_) {
    // Never throws: a failed rollback leaves SQLite to roll back when the handle closes.
    sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
    db_.transaction_ended(false);
  }
}

void Transaction::commit() {
  db_.exec("COMMIT");
  done_ = true;
  db_.transaction_ended(true);
}

}  // namespace kpsd::sql
