#include "protocol/json_fields.hpp"

#include <boost/json.hpp>

namespace kpsd {

namespace json = boost::json;

JsonFields::JsonFields(const json::value& v, std::string path) : o_(v.if_object()), path_(path) {
  if (!o_)
    throw BadReply{(path_.empty() ? std::string("the reply") : path_) + " must be an object"};
}

std::string JsonFields::name(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

void JsonFields::fail(std::string_view key, std::string_view problem) const {
  throw BadReply{name(key) + " " + std::string(problem)};
}

const json::value* JsonFields::find(std::string_view key) const { return o_->if_contains(key); }

const json::value& JsonFields::at(std::string_view key) const {
  const json::value* v = find(key);
  if (!v) fail(key, "is missing");
  return *v;
}

const json::array& JsonFields::array(std::string_view key) const {
  const json::value& v = at(key);
  if (!v.is_array()) fail(key, "must be an array");
  return v.as_array();
}

std::int64_t JsonFields::int64(std::string_view key) const {
  const json::value& v = at(key);
  if (v.is_int64()) return v.as_int64();
  // Boost.JSON reads a number past INT64_MAX as unsigned: not one kpsd writes.
  fail(key, "must be an integer");
}

double JsonFields::number(std::string_view key) const {
  const json::value& v = at(key);
  // kpsd writes a whole rate as an integer (40, not 4E1): both are numbers here.
  if (v.is_double()) return v.as_double();
  if (v.is_int64()) return static_cast<double>(v.as_int64());
  fail(key, "must be a number");
}

bool JsonFields::boolean(std::string_view key) const {
  const json::value& v = at(key);
  if (!v.is_bool()) fail(key, "must be true or false");
  return v.as_bool();
}

std::string JsonFields::string(std::string_view key) const {
  const json::value& v = at(key);
  if (!v.is_string()) fail(key, "must be a string");
  return std::string(v.as_string());
}

std::vector<std::string> JsonFields::strings(std::string_view key) const {
  const json::array& a = array(key);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!a[i].is_string())
      fail(std::string(key) + "[" + std::to_string(i) + "]", "must be a string");
    out.emplace_back(a[i].as_string());
  }
  return out;
}

JsonFields JsonFields::object(std::string_view key) const { return JsonFields(at(key), name(key)); }

bool JsonFields::given(std::string_view key) const {
  const json::value* v = find(key);
  return v && !v->is_null();
}

std::optional<std::int64_t> JsonFields::opt_int64(std::string_view key) const {
  return given(key) ? std::optional(int64(key)) : std::nullopt;
}

std::optional<bool> JsonFields::opt_boolean(std::string_view key) const {
  return given(key) ? std::optional(boolean(key)) : std::nullopt;
}

std::optional<std::string> JsonFields::opt_string(std::string_view key) const {
  return given(key) ? std::optional(string(key)) : std::nullopt;
}

std::optional<JsonFields> JsonFields::opt_object(std::string_view key) const {
  return given(key) ? std::optional(object(key)) : std::nullopt;
}

}  // namespace kpsd
