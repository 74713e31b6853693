#pragma once
// Schema changes come only from numbered files in migrations/ (NNNN_name.sql), embedded into
// the binary at build time so an installed kpsd needs no data files to find.
#include <span>
#include <string_view>

namespace kpsd {
namespace sql {
class Database;
}

struct Migration {
  int version;            // NNNN of the file name; versions are 1, 2, 3 ... without gaps
  std::string_view name;  // file name, for messages
  std::string_view sql;
};

// The migrations found in migrations/ when kpsd was built (generated source).
std::span<const Migration> embedded_migrations();

// Applies, in order, each migration newer than `PRAGMA user_version`, each in its own
// transaction that also sets user_version. Returns the resulting version. Throws sql::Error
// when a migration fails, and std::runtime_error when the database is newer than this kpsd.
int apply_migrations(sql::Database& db, std::span<const Migration> migrations);

}  // namespace kpsd
