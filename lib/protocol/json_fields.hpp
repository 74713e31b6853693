#pragma once
// Reading the fields of a control reply by name, for kpsctl's side of the typed replies: each
// problem names the field's path ("jobs[2].state must be a string"), so a kpsd and a kpsctl
// that disagree about a field say which. No I/O.
#include "core/result.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kpsd {

// Thrown inside the reply parsers only; parse_reply catches it and returns its message (as
// parse_control_request does with its own).
struct BadReply {
  std::string message;
};

class JsonFields {
 public:
  // `path`: where `v` is in the reply ("" for the reply itself, "jobs[2]"). Throws BadReply
  // unless `v` is an object.
  JsonFields(const boost::json::value& v, std::string path);

  // A required field: missing, or of another type, throws BadReply naming it.
  std::int64_t int64(std::string_view key) const;
  double number(std::string_view key) const;  // an integer or a double
  bool boolean(std::string_view key) const;
  std::string string(std::string_view key) const;
  std::vector<std::string> strings(std::string_view key) const;
  JsonFields object(std::string_view key) const;
  // An optional field: absent or null is nullopt; another type throws.
  std::optional<std::int64_t> opt_int64(std::string_view key) const;
  std::optional<bool> opt_boolean(std::string_view key) const;
  std::optional<std::string> opt_string(std::string_view key) const;
  std::optional<JsonFields> opt_object(std::string_view key) const;
  bool has(std::string_view key) const { return o_->contains(key); }

  // A required array of objects, each read by `read` (a function of JsonFields).
  template <class Read>
  auto objects(std::string_view key, Read read) const {
    std::vector<decltype(read(std::declval<const JsonFields&>()))> out;
    const boost::json::array& a = array(key);
    out.reserve(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      out.push_back(read(JsonFields(a[i], name(key) + "[" + std::to_string(i) + "]")));
    }
    return out;
  }

  const boost::json::object& raw() const { return *o_; }
  std::string name(std::string_view key) const;  // the field's path: "jobs[2].state"
  [[noreturn]] void fail(std::string_view key, std::string_view problem) const;

 private:
  const boost::json::value* find(std::string_view key) const;  // null when absent
  bool given(std::string_view key) const;                      // there and not null
  const boost::json::value& at(std::string_view key) const;    // throws when absent
  const boost::json::array& array(std::string_view key) const;

  const boost::json::object* o_;
  std::string path_;
};

// Runs `read(fields, reply)` over a reply: the reply, or the BadReply's message.
template <class Reply, class Read>
Result<Reply> read_reply(const boost::json::value& v, Read read) {
  try {
    JsonFields f(v, "");
    Reply parsed;
    read(f, parsed);
    return parsed;
  } catch (const BadReply& e) {
    return fail(e.message);
  }
}

}  // namespace kpsd
