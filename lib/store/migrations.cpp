#include "store/migrations.hpp"

#include "store/sqlite.hpp"

#include <stdexcept>
#include <string>

namespace kpsd {

int apply_migrations(sql::Database& db, std::span<const Migration> migrations) {
  int current = static_cast<int>(db.pragma_int("user_version"));
  int newest = migrations.empty() ? 0 : migrations.back().version;
  if (current > newest) {
    throw std::runtime_error("database schema version " + std::to_string(current) +
                             " is newer than this kpsd knows (" + std::to_string(newest) +
                             "); refusing to touch it");
  }
  for (const Migration& m : migrations) {
    if (m.version <= current) continue;
    if (m.version != current + 1) {
      throw std::runtime_error("migration " + std::string(m.name) + " is out of sequence");
    }
    sql::Transaction tx(db);
    try {
      db.exec(m.sql);
    } catch (const sql::Error& e) {
      throw sql::Error("migration " + std::string(m.name) + " failed: " + e.what(), e.code());
    }
    db.exec("PRAGMA user_version = " + std::to_string(m.version));
    tx.commit();
    current = m.version;
  }
  return current;
}

}  // namespace kpsd
