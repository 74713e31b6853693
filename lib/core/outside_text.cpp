#include "core/outside_text.hpp"

#include <algorithm>
#include <cstdint>

namespace kpsd {

namespace {

constexpr const char* hex = "0123456789abcdef";

// The length of the valid UTF-8 sequence at the start of `s` (1 to 4), or 0 if there is none
// (overlong forms, surrogates and values past U+10FFFF included).
std::size_t utf8_length(std::string_view s) {
  auto byte = [&s](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  unsigned char c = byte(0);
  std::size_t n = c < 0x80           ? 1
                  : (c >> 5) == 0x6  ? 2
                  : (c >> 4) == 0xe  ? 3
                  : (c >> 3) == 0x1e ? 4
                                     : 0;
  if (n == 0 || n > s.size() || (n == 2 && c < 0xc2) || c > 0xf4) return 0;
  for (std::size_t i = 1; i < n; ++i) {
    if ((byte(i) >> 6) != 0x2) return 0;
  }
  if (n == 3 && c == 0xe0 && byte(1) < 0xa0) return 0;   // overlong
  if (n == 3 && c == 0xed && byte(1) >= 0xa0) return 0;  // a surrogate
  if (n == 4 && c == 0xf0 && byte(1) < 0x90) return 0;   // overlong
  if (n == 4 && c == 0xf4 && byte(1) >= 0x90) return 0;  // past U+10FFFF
  return n;
}

std::uint32_t code_point(std::string_view s, std::size_t n) {
  auto byte = [&s](std::size_t i) { return static_cast<std::uint32_t>(s[i]) & 0xffu; };
  if (n == 1) return byte(0);
  std::uint32_t cp = byte(0) & (0x7fu >> n);
  for (std::size_t i = 1; i < n; ++i) cp = (cp << 6) | (byte(i) & 0x3fu);
  return cp;
}

bool shown_escaped(std::uint32_t cp) {
  return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

void escape_byte(std::string& out, unsigned char byte) {
  out += "\\x";
  out += hex[byte >> 4];
  out += hex[byte & 15];
}

void escape(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    escape_byte(out, static_cast<unsigned char>(cp));
    return;
  }
  out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4) out += hex[(cp >> shift) & 15];
}

}  // namespace

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    std::size_t n = utf8_length(text);
    if (n == 0) {
      escape_byte(out, static_cast<unsigned char>(text.front()));  // not UTF-8: the byte
      n = 1;
    } else if (std::uint32_t cp = code_point(text, n); shown_escaped(cp)) {
      escape(out, cp);
    } else {
      out.append(text.substr(0, n));
    }
    text.remove_prefix(n);
  }
  return out;
}

std::string printable_capped(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) return printable(text);
  // Cut at a character's start, so the cut does not show as a broken byte.
  std::size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) --cut;
  return printable(text.substr(0, cut)) + "...(" + std::to_string(text.size()) + " bytes)";
}

std::string spreadsheet_safe(std::string_view cell) {
  if (!cell.empty() && (cell.front() == '=' || cell.front() == '+' || cell.front() == '-' ||
                        cell.front() == '@' || cell.front() == '\t' || cell.front() == '\r'))
    return "'" + std::string(cell);
  return std::string(cell);
}

std::string excerpt(std::string_view s, std::size_t max_bytes) {
  std::size_t cut = std::min(max_bytes, s.size());
  while (cut > 0 && cut < s.size() && (static_cast<unsigned char>(s[cut]) & 0xc0) == 0x80) --cut;
  std::string out;
  for (char c : s.substr(0, cut)) out += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
  if (s.size() > cut) out += "...";
  return out;
}

}  // namespace kpsd
