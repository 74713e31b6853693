#pragma once
// The configuration file's reader (not a public header): INI-style lines into settings, and the
// typed reads with their range checks that name the file, the line and the key in every error.
// Used by config.cpp only; covered by its unit tests and fuzz_config.
#include "config/config.hpp"
#include "config/config_keys.hpp"
#include "core/suggest.hpp"
#include "core/text.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace kpsd::detail {

// Strips a `#` comment. A `#` only starts a comment at the line start or after whitespace,
// so values such as URLs with fragments are not cut (none of ours has one, but paths may).
inline std::string_view strip_comment(std::string_view line) {
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '#' && (i == 0 || std::isspace(static_cast<unsigned char>(line[i - 1])))) {
      return line.substr(0, i);
    }
  }
  return line;
}

struct Setting {
  std::string value;
  int line = 0;
};

class Parser {
 public:
  Parser(std::string_view file_name) : file_(file_name) {}
  const std::map<std::string, std::string>& written() const { return written_; }

  [[noreturn]] void fail(int line, std::string_view key, std::string_view what) const {
    std::string msg = file_;
    if (line > 0) msg += ":" + std::to_string(line);
    msg += ": ";
    if (!key.empty()) msg += std::string(key) + ": ";
    msg += what;
    throw ConfigError(msg);
  }

  void read(std::string_view text) {
    std::string section;
    int line_no = 0;
    while (!text.empty()) {
      ++line_no;
      auto nl = text.find('\n');
      std::string_view raw = text.substr(0, nl);
      text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
      std::string_view line = trim(strip_comment(raw));
      if (line.empty()) continue;
      if (line.front() == '[') {
        if (line.back() != ']') fail(line_no, "", "section header must look like [name]");
        section = std::string(trim(line.substr(1, line.size() - 2)));
        if (!known_sections().contains(section)) {
          std::vector<std::string> sections(known_sections().begin(), known_sections().end());
          fail(line_no, "[" + section + "]", "unknown section" + did_you_mean(section, sections));
        }
        continue;
      }
      auto eq = line.find('=');
      if (eq == std::string_view::npos) fail(line_no, "", "expected `key = value`");
      std::string key(trim(line.substr(0, eq)));
      std::string value(trim(line.substr(eq + 1)));
      if (key.empty()) fail(line_no, "", "missing key before `=`");
      if (section.empty()) fail(line_no, key, "key outside of a [section]");
      std::string full = section + "." + key;
      if (!known_keys().contains(full)) fail(line_no, full, "unknown key" + key_hint(section, key));
      if (settings_.contains(full)) {
        fail(line_no, full,
             "set twice (first on line " + std::to_string(settings_[full].line) + ")");
      }
      settings_[full] = Setting{value, line_no};
      written_[full] = value;
    }
  }

  // " (did you mean `concurrency`?)" for a key close to one of its section's; else, for a key
  // of another section, where it belongs; else "".
  static std::string key_hint(const std::string& section, const std::string& key) {
    std::vector<std::string> ours;
    std::string belongs;
    for (const std::string& full : known_keys()) {
      auto dot = full.find('.');
      std::string its_section = full.substr(0, dot), its_key = full.substr(dot + 1);
      if (its_section == section) {
        ours.push_back(its_key);
      } else if (its_key == key) {
        belongs = its_section;
      }
    }
    std::string hint = did_you_mean(key, ours);
    if (hint.empty() && !belongs.empty()) hint = " (`" + key + "` belongs in [" + belongs + "])";
    return hint;
  }

  // Both from the one table of keys (config/config_keys.cpp).
  static const std::set<std::string>& known_sections() {
    static const std::set<std::string> s = [] {
      std::set<std::string> out;
      for (const ConfigKey& k : config_keys()) out.emplace(k.section());
      return out;
    }();
    return s;
  }
  static const std::set<std::string>& known_keys() {
    static const std::set<std::string> k = [] {
      std::set<std::string> out;
      for (const ConfigKey& key : config_keys()) out.emplace(key.name);
      return out;
    }();
    return k;
  }

  const Setting* get(const std::string& key) const {
    auto it = settings_.find(key);
    return it == settings_.end() ? nullptr : &it->second;
  }

  void string_value(const std::string& key, std::string& out, bool required = false) {
    const Setting* s = get(key);
    if (!s) {
      if (required) fail(0, key, "required but not set");
      return;
    }
    if (required && s->value.empty()) fail(s->line, key, "must not be empty");
    out = s->value;
  }

  std::int64_t integer(const Setting& s, const std::string& key, std::int64_t min, std::int64_t max,
                       int base = 10) {
    std::int64_t v = 0;
    const char* first = s.value.data();
    const char* last = first + s.value.size();
    auto [ptr, ec] = std::from_chars(first, last, v, base);
    if (ec != std::errc{} || ptr != last || s.value.empty()) {
      fail(s.line, key, "`" + s.value + "` is not a whole number");
    }
    if (v < min || v > max) {
      fail(s.line, key,
           "`" + s.value + "` is out of range (" + std::to_string(min) + " to " +
               std::to_string(max) + ")");
    }
    return v;
  }

  void unsigned_value(const std::string& key, unsigned& out, std::int64_t min, std::int64_t max) {
    if (const Setting* s = get(key)) out = static_cast<unsigned>(integer(*s, key, min, max));
  }

  void millis(const std::string& key, milliseconds& out, std::int64_t min) {
    // Upper bound of 30 days: large enough for any sane timeout, small enough that adding it
    // to a Unix-millisecond time cannot overflow.
    if (const Setting* s = get(key)) out = milliseconds(integer(*s, key, min, 30LL * 86400000));
  }

  void boolean(const std::string& key, bool& out) {
    const Setting* s = get(key);
    if (!s) return;
    if (s->value == "true" || s->value == "yes" || s->value == "on" || s->value == "1") {
      out = true;
    } else if (s->value == "false" || s->value == "no" || s->value == "off" || s->value == "0") {
      out = false;
    } else {
      fail(s->line, key, "`" + s->value + "` is not a boolean (true or false)");
    }
  }

  int line_of(const std::string& key) const {
    const Setting* s = get(key);
    return s ? s->line : 0;
  }

 private:
  std::string file_;
  std::map<std::string, Setting> settings_;
  std::map<std::string, std::string> written_;
};

// The section readers (config/config.cpp), one per section, named in the table of keys.
void parse_kps(Parser& p, Config& c);
void parse_auth(Parser& p, Config& c);
void parse_queue(Parser& p, Config& c);
void parse_control(Parser& p, Config& c);
void parse_metrics(Parser& p, Config& c);
void parse_log(Parser& p, Config& c);

}  // namespace kpsd::detail
