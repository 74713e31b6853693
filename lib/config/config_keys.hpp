#pragma once
// Every key kpsd.conf may hold, in one table (config/config_keys.cpp): the parser's known keys
// and sections, the keys SIGHUP applies, and the reader that checks each are derived from it,
// and a unit test checks that conf/kpsd.conf (the kpsd.conf(5) page) documents every key of it
// in its section and no other.
#include "config/config.hpp"

#include <span>
#include <string_view>

namespace kpsd {

namespace detail {
class Parser;
}  // namespace detail

struct ConfigKey {
  std::string_view name;    // "section.key": `key = value` under `[section]`
  bool reloadable = false;  // SIGHUP applies it while running; a change to another needs a restart
  // What checks it and fills Config: one reader per section, since a section's keys are checked
  // together (auth.method decides which auth keys may be set; an endpoint follows kps.region).
  // Throws ConfigError naming the file, line and key.
  void (*reader)(detail::Parser&, Config&) = nullptr;

  std::string_view section() const noexcept { return name.substr(0, name.find('.')); }
  std::string_view key() const noexcept { return name.substr(name.find('.') + 1); }
};

// The table, in the order the readers run (and conf/kpsd.conf lists the sections).
std::span<const ConfigKey> config_keys() noexcept;
// The entry for "section.key", or nullptr for a key kpsd does not know.
const ConfigKey* find_config_key(std::string_view name) noexcept;

}  // namespace kpsd
