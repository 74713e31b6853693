// KPS's POST keypairs/disassociate: the body's checks, the faults each server's Behavior asks
// for, and the tasks accepted calls create; parse_behaviors reads Behaviors from JSON.
#include "fake_kps_impl.hpp"

#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <stdexcept>
#include <utility>
#include <zlib.h>

namespace kpsd::fake {

namespace {

std::string default_code(int status) {
  switch (status) {
    case 400:
      return "KPS.0002";
    case 401:
      return "APIGW.0301";
    case 403:
      return "KPS.9003";
    case 404:
      return "APIGW.0101";
    case 429:
      return "APIGW.0308";
    default:
      return status >= 500 ? "KPS.0003" : "KPS.0002";
  }
}

// `text` in the gzip format (RFC 1952), as a gateway that compresses answers sends it.
std::string gzip(const std::string& text) {
  z_stream z{};
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2 failed");
  std::string out(deflateBound(&z, text.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) throw std::runtime_error("deflate did not finish");
  return out;
}

std::string refuse(std::string& why, std::string reason) {
  why = std::move(reason);
  return {};
}

// One integer field of a Behavior by its JSON name; false for an unknown name.
bool set_behavior_field(Behavior& b, std::string_view key, int n, const std::string& where) {
  if (key == "accepted_failed_times")
    b.accepted_failed_times = n;
  else if (key == "error_status")
    b.error_status = n;
  else if (key == "error_times")
    b.error_times = n;
  else if (key == "delay_ms")
    b.delay = std::chrono::milliseconds(n);
  else if (key == "delay_times")
    b.delay_times = n;
  else if (key == "answer_delay_ms")
    b.answer_delay = std::chrono::milliseconds(n);
  else if (key == "answer_delay_times")
    b.answer_delay_times = n;
  else if (key == "drop_times")
    b.drop_times = n;
  else if (key == "garbage_times")
    b.garbage_times = n;
  else if (key == "task_poll_status")
    b.task_poll_status = n;
  else if (key == "task_poll_times")
    b.task_poll_times = n;
  else if (key == "task_failed_times") {
    if (n < -1) throw std::runtime_error(where + "task_failed_times must be -1 (all) or more");
    b.task_failed_times = n;
  } else if (key == "set_cookie_bytes")
    b.set_cookie_bytes = n;
  else if (key == "interim_status")
    b.interim_status = n;
  else if (key == "accept_status")
    b.accept_status = n;
  else if (key == "gzip_times")
    b.gzip_times = n;
  else
    return false;
  return true;
}

}  // namespace

// "" when server.auth is {type, key} as KPS takes it, else what is wrong.
std::string FakeKps::Impl::check_server_auth(const json::object& server) {
  const json::value& a = server.at("auth");
  if (!a.is_object() || a.as_object().size() != 2) return "server.auth must be {type, key}";
  const json::object& ao = a.as_object();
  const json::value* type = ao.if_contains("type");
  const json::value* key = ao.if_contains("key");
  if (!type || !type->is_string() ||
      (type->as_string() != "password" && type->as_string() != "keypair")) {
    return "server.auth.type must be password or keypair";
  }
  if (!key || !key->is_string() || key->as_string().empty()) {
    return "server.auth.key must be a non-empty string";
  }
  return {};
}

// Checks the disassociate body; returns the server id or sets `why`.
std::string FakeKps::Impl::check_body(const std::string& body, std::string& why) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return refuse(why, "body is not a JSON object");
  const json::object& root = v.as_object();
  if (root.size() != 1 || !root.contains("server") || !root.at("server").is_object()) {
    return refuse(why, "body must be exactly {\"server\": {...}}");
  }
  const json::object& server = root.at("server").as_object();
  for (const auto& kv : server) {
    if (kv.key() != "id" && kv.key() != "auth" && kv.key() != "port") {
      return refuse(why, "unknown field server." + std::string(kv.key()));
    }
  }
  if (!server.contains("id") || !server.at("id").is_string() ||
      server.at("id").as_string().empty()) {
    return refuse(why, "server.id missing or not a non-empty string");
  }
  if (server.contains("port")) {
    const json::value& p = server.at("port");
    if (!p.is_int64() || p.as_int64() < 1 || p.as_int64() > 65535) {
      return refuse(why, "server.port is not a port number");
    }
  }
  if (server.contains("auth")) {
    if (std::string auth_why = check_server_auth(server); !auth_why.empty())
      return refuse(why, std::move(auth_why));
  }
  return std::string(server.at("id").as_string());
}

// The answer of a fault phase after the drops (`k`: the call number within them, `n`: the
// call's number), or nullopt once they are past.
std::optional<FakeKps::Impl::Response> FakeKps::Impl::fault_answer(const Behavior& b,
                                                                   std::int64_t k, std::int64_t n,
                                                                   const std::string& server_id,
                                                                   unsigned v, bool ka) {
  if (b.error_status != 0 && (b.error_times < 0 || k <= b.error_times)) {
    std::string code = b.error_code.empty() ? default_code(b.error_status) : b.error_code;
    Response res = error(
        static_cast<unsigned>(b.error_status), code,
        "fake error " + std::to_string(b.error_status) + " for call " + std::to_string(n), v, ka);
    if (!b.retry_after.empty()) res.set(http::field::retry_after, b.retry_after);
    return res;
  }
  k -= std::max(0, b.error_times);
  if (k <= b.garbage_times) {
    Response res = reply(202, {}, v, ka);
    res.body() = "{\"task_id\": \"tru";  // cut short: not JSON
    res.prepare_payload();
    return res;
  }
  k -= b.garbage_times;
  if (k <= b.accepted_failed_times) {
    return reply(202,
                 json::object{{"server_id", server_id},
                              {"status", "FAILED"},
                              {"error_code", "KPS.0003"},
                              {"error_msg", "fake delivery failure"}},
                 v, ka);
  }
  return std::nullopt;
}

// A new task for an accepted call: its id, and the how-manieth of its server's it is.
std::pair<std::string, std::int64_t> FakeKps::Impl::create_task(const std::string& server_id,
                                                                const Behavior& b) {
  std::lock_guard lock(mutex);
  std::string task_id = "fake-task-" + std::to_string(++task_counter);
  std::int64_t nth_task = ++accepted[server_id];
  bool fails = b.task_failed_times < 0 || nth_task <= b.task_failed_times;
  tasks[task_id] = Task{server_id, std::chrono::steady_clock::now(), fails, unix_ms()};
  task_order.push_back(task_id);
  return {task_id, nth_task};
}

FakeKps::Impl::Response FakeKps::Impl::accept_answer(const Behavior& b,
                                                     const std::string& server_id,
                                                     const std::string& task_id,
                                                     std::int64_t nth_task, unsigned v, bool ka) {
  Response res = reply(
      b.accept_status ? static_cast<unsigned>(b.accept_status) : 202,
      json::object{{"server_id", server_id}, {"task_id", task_id}, {"status", "SUCCESS"}}, v, ka);
  if (nth_task <= b.gzip_times) {
    res.body() = gzip(res.body());
    res.set(http::field::content_encoding, "gzip");
    res.prepare_payload();
  }
  if (b.set_cookie_bytes > 0) add_cookie(res, static_cast<std::size_t>(b.set_cookie_bytes));
  return res;
}

// POST keypairs/disassociate, authenticated; nullopt: drop the connection.
net::awaitable<std::optional<FakeKps::Impl::Answer>> FakeKps::Impl::disassociate(
    const Request& req) {
  unsigned v = req.version();
  bool ka = req.keep_alive();
  if (!req[http::field::content_type].starts_with("application/json")) {
    violation("disassociate without Content-Type: application/json");
  }
  std::string why;
  std::string server_id = check_body(req.body(), why);
  if (server_id.empty()) {
    violation("bad disassociate body: " + why);
    co_return error(400, "KPS.0002", "parameter error: " + why, v, ka);
  }
  Behavior b;
  std::int64_t n = 0;
  {
    std::lock_guard lock(mutex);
    n = ++calls[server_id];
    ++disassociate_calls;
    if (auto it = behaviors.find(server_id); it != behaviors.end()) b = it->second;
  }
  auto delay = options.call_delay;
  if (b.delay.count() > 0 && (b.delay_times == 0 || n <= b.delay_times)) delay += b.delay;
  if (delay.count() > 0) {
    net::steady_timer t(io, delay);
    co_await t.async_wait(use_tuple);
  }
  if (n <= b.drop_times) co_return std::nullopt;
  // The call number within the fault phases after the drops.
  if (auto fault = fault_answer(b, n - b.drop_times, n, server_id, v, ka))
    co_return std::move(*fault);
  auto [task_id, nth_task] = create_task(server_id, b);
  if (b.answer_delay.count() > 0 && (b.answer_delay_times == 0 || n <= b.answer_delay_times)) {
    net::steady_timer t(io, b.answer_delay);
    co_await t.async_wait(use_tuple);
  }
  co_return Answer(accept_answer(b, server_id, task_id, nth_task, v, ka),
                   static_cast<unsigned>(b.interim_status));
}

void FakeKps::set_behavior(const std::string& server_id, Behavior behavior) {
  std::lock_guard lock(impl_->mutex);
  impl_->behaviors[server_id] = std::move(behavior);
}

std::map<std::string, Behavior> parse_behaviors(const std::string& text) {
  std::map<std::string, Behavior> out;
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) throw std::runtime_error("behaviors: not a JSON object");
  for (const auto& [id, spec] : v.as_object()) {
    std::string where = "behaviors: " + std::string(id) + ": ";
    if (!spec.is_object()) throw std::runtime_error(where + "must be an object");
    Behavior b;
    for (const auto& [key, value] : spec.as_object()) {
      if (key == "error_code" || key == "retry_after") {
        if (!value.is_string())
          throw std::runtime_error(where + std::string(key) + " must be a string");
        (key == "error_code" ? b.error_code : b.retry_after) = std::string(value.as_string());
        continue;
      }
      if (!value.is_int64())
        throw std::runtime_error(where + std::string(key) + " must be an integer");
      int n = static_cast<int>(value.as_int64());
      if (!set_behavior_field(b, std::string_view(key.data(), key.size()), n, where))
        throw std::runtime_error(where + "unknown key " + std::string(key));
    }
    out[std::string(id)] = b;
  }
  return out;
}

}  // namespace kpsd::fake
