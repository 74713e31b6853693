#include "config/proxy.hpp"

#include "core/text.hpp"
#include "core/url.hpp"

#include <boost/asio/ip/address.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <vector>

namespace kpsd {

namespace {

// Splits "host[:port]" or "[v6]:port"; false when the port is not 1..65535.
bool split_host_port(std::string_view hp, std::string& host, std::uint16_t& port) {
  std::string_view port_text;
  if (hp.starts_with('[')) {
    auto close = hp.find(']');
    if (close == std::string_view::npos) return false;
    host = std::string(hp.substr(1, close - 1));
    std::string_view rest = hp.substr(close + 1);
    if (!rest.empty() && !rest.starts_with(':')) return false;
    if (!rest.empty()) port_text = rest.substr(1);
  } else {
    auto colon = hp.rfind(':');
    host = std::string(hp.substr(0, colon));
    if (colon != std::string_view::npos) port_text = hp.substr(colon + 1);
  }
  if (port_text.empty()) return true;
  unsigned p = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), p);
  if (ec != std::errc{} || ptr != port_text.data() + port_text.size() || p == 0 || p > 65535)
    return false;
  port = static_cast<std::uint16_t>(p);
  return true;
}

bool valid_host(std::string_view host) {
  if (host.empty()) return false;
  boost::system::error_code ec;
  boost::asio::ip::make_address(std::string(host), ec);
  if (!ec) return true;
  return std::all_of(host.begin(), host.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '.' || c == '-' || c == '_';
  });
}

// The length of "scheme://" at the start of `url` (RFC 3986 scheme: a letter, then letters,
// digits, + - .), or 0 when there is none ("user:pa://ss@host" has none).
std::size_t scheme_length(std::string_view url) {
  auto end = url.find("://");
  if (end == std::string_view::npos || end == 0) return 0;
  if (!std::isalpha(static_cast<unsigned char>(url[0]))) return 0;
  for (char c : url.substr(0, end)) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') return 0;
  }
  return end + 3;
}

// An address/bits entry of no_proxy holds `address`.
bool in_cidr(std::string_view entry, const boost::asio::ip::address& address) {
  auto slash = entry.find('/');
  boost::system::error_code ec;
  auto net = boost::asio::ip::make_address(std::string(entry.substr(0, slash)), ec);
  if (ec || net.is_v4() != address.is_v4()) return false;
  unsigned bits = 0;
  std::string_view b = entry.substr(slash + 1);
  auto [ptr, bec] = std::from_chars(b.data(), b.data() + b.size(), bits);
  unsigned width = address.is_v4() ? 32 : 128;
  if (bec != std::errc{} || ptr != b.data() + b.size() || bits > width) return false;
  auto bytes_of = [](const boost::asio::ip::address& a) {
    std::vector<unsigned char> v;
    if (a.is_v4()) {
      auto x = a.to_v4().to_bytes();
      v.assign(x.begin(), x.end());
    } else {
      auto x = a.to_v6().to_bytes();
      v.assign(x.begin(), x.end());
    }
    return v;
  };
  auto n = bytes_of(net), h = bytes_of(address);
  for (unsigned i = 0; i < bits; ++i) {
    unsigned mask = 0x80u >> (i % 8);
    if ((n[i / 8] & mask) != (h[i / 8] & mask)) return false;
  }
  return true;
}

// The environment's proxy URL for a target scheme, with the variable it came from.
const char* proxy_variable(const EnvLookup& env, const std::string& scheme, std::string& name) {
  std::vector<const char*> names;
  if (scheme == "https") names = {"https_proxy", "HTTPS_PROXY"};
  if (scheme == "http") names = {"http_proxy"};
  names.insert(names.end(), {"all_proxy", "ALL_PROXY"});
  for (const char* n : names) {
    const char* v = env(n);
    if (v && *v) {
      name = n;
      return v;
    }
  }
  return nullptr;
}

}  // namespace

std::string ProxyRoute::text() const {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<ProxyRoute> parse_proxy_url(std::string_view text, bool allow_userinfo) {
  std::string_view rest = trim(text);
  std::size_t after_scheme = scheme_length(rest);
  std::string shown(rest);
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    // Whatever comes between the scheme and the '@' may be a password, "://" in it included.
    shown = std::string(rest.substr(0, after_scheme)) + "***@" + std::string(rest.substr(at + 1));
  }
  auto bad = [&](std::string_view what) { return fail("`" + shown + "` " + std::string(what)); };
  if (after_scheme > 0) {
    std::string scheme = ascii_lower(rest.substr(0, after_scheme - 3));
    if (scheme != "http")
      return bad(
          "is not an http:// proxy (kpsd speaks to proxies in plain HTTP; HTTPS to the "
          "API still goes through CONNECT, verified end to end)");
    rest.remove_prefix(after_scheme);
  }
  while (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) return bad("must not have a path");
  ProxyRoute r;
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    if (!allow_userinfo)
      return bad("holds credentials: put user:password in kps.proxy_credentials_file instead");
    std::string_view userinfo = rest.substr(0, at);
    auto colon = userinfo.find(':');
    std::string user = percent_decode(userinfo.substr(0, colon));
    std::string password =
        colon == std::string_view::npos ? "" : percent_decode(userinfo.substr(colon + 1));
    r.credentials = Secret(user + ":" + password);
    OPENSSL_cleanse(password.data(), password.size());
    rest.remove_prefix(at + 1);
  }
  r.port = 1080;
  if (!split_host_port(rest, r.host, r.port)) return bad("has an invalid port");
  if (!valid_host(r.host)) return bad("has no valid host");
  return r;
}

bool no_proxy_matches(std::string_view no_proxy, std::string_view host_in) {
  if (trim(no_proxy) == "*") return true;  // only the whole value, as curl
  std::string host = ascii_lower(host_in);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  while (host.ends_with('.')) host.pop_back();  // "kms.example." is "kms.example"
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(host, ec);
  bool is_address = !ec;
  while (!no_proxy.empty()) {
    auto comma = no_proxy.find(',');
    std::string_view entry = trim(no_proxy.substr(0, comma));
    no_proxy = comma == std::string_view::npos ? std::string_view{} : no_proxy.substr(comma + 1);
    if (entry.empty()) continue;
    if (is_address) {
      if (entry.find('/') != std::string_view::npos) {
        if (in_cidr(entry, address)) return true;
        continue;
      }
      // "::1" is an address, not host ":" and port 1: try the entry whole first.
      boost::system::error_code eec;
      auto e = boost::asio::ip::make_address(std::string(entry), eec);
      if (eec) {
        std::string name;
        std::uint16_t ignored_port = 0;
        if (split_host_port(entry, name, ignored_port))
          e = boost::asio::ip::make_address(name, eec);
      }
      if (!eec && e == address) return true;
      continue;
    }
    std::string name;
    std::uint16_t ignored_port = 0;
    if (!split_host_port(entry, name, ignored_port)) name = std::string(entry);
    name = ascii_lower(name);
    while (name.starts_with('.')) name.erase(0, 1);
    while (name.ends_with('.')) name.pop_back();
    if (name.empty()) continue;
    if (host == name) return true;
    if (host.size() > name.size() && host.ends_with(name) &&
        host[host.size() - name.size() - 1] == '.')
      return true;
  }
  return false;
}

Result<ProxyChoice> choose_proxy(std::string_view configured, const Endpoint& target,
                                 const EnvLookup& env) {
  if (ascii_lower(configured) == "none")
    return ProxyChoice{std::nullopt, "direct (kps.proxy = none; the environment is not read)"};
  if (!configured.empty()) {
    auto r = parse_proxy_url(configured, false);
    if (!r) return r.error();
    r->source = "kps.proxy";
    std::string why = "through proxy " + r->text() + " (kps.proxy)";
    return ProxyChoice{std::move(*r), std::move(why)};
  }
  std::string name;
  const char* url = proxy_variable(env, target.scheme, name);
  if (!url) return ProxyChoice{std::nullopt, "direct (no kps.proxy, no proxy in the environment)"};
  for (const char* n : {"no_proxy", "NO_PROXY"}) {
    const char* v = env(n);
    if (!v) continue;
    if (no_proxy_matches(v, target.host))
      return ProxyChoice{std::nullopt,
                         "direct (" + std::string(n) + " matches " + target.host + ")"};
    break;  // the lower-case form, once set (even empty), wins, as curl
  }
  auto r = parse_proxy_url(url, true);
  if (!r) return fail("$" + name + ": " + r.error().message);
  r->source = name;
  std::string why = "through proxy " + r->text() + " ($" + name + ")";
  return ProxyChoice{std::move(*r), std::move(why)};
}

Secret proxy_authorization(const ProxyRoute& route) {
  if (route.credentials.empty()) return {};
  std::string_view plain = route.credentials.reveal();
  std::string encoded(4 * ((plain.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded.data()),
                          reinterpret_cast<const unsigned char*>(plain.data()),
                          static_cast<int>(plain.size()));
  encoded.resize(static_cast<std::size_t>(n));
  Secret value("Basic " + encoded);
  OPENSSL_cleanse(encoded.data(), encoded.size());
  return value;
}

}  // namespace kpsd
