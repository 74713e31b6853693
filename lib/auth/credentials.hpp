#pragma once
// How kpsd authenticates its calls ([auth] method): an IAM token from a file, an IAM token
// obtained with a user's password, or AK/SK request signing. Secrets stay in Secret values and
// never reach a message. Used from the network thread only.
#include "config/config.hpp"
#include "core/result.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kpsd {

struct HttpRequest;

class Credentials {
 public:
  virtual ~Credentials() = default;
  // Adds what authenticates `request` (a header, or a signature over it; may wait for a token
  // refresh). A failure says why not (never holding a secret). `generation` identifies the
  // credential used, for rejected().
  virtual boost::asio::awaitable<Result<void>> apply(HttpRequest& request,
                                                     std::uint64_t& generation) = 0;
  // A 401 came back for a request made with `generation`: refresh once for that generation.
  virtual void rejected(std::uint64_t generation) = 0;
  // SIGHUP: re-read the files; a failure says which and why.
  virtual Result<void> reload() = 0;
};

// `host_header` is what Host: says for the KPS endpoint (signed by AK/SK). Throws ConfigError
// for start-up failures (unreadable key files, a relative path without $CREDENTIALS_DIRECTORY).
std::unique_ptr<Credentials> make_credentials(boost::asio::any_io_executor executor,
                                              const Config& config, const std::string& host_header);

// A relative path names a systemd credential: $CREDENTIALS_DIRECTORY/<name>.
std::string resolve_credential_path(const std::string& configured, const std::string& key);

// The configured secret files (token, IAM password, AK/SK, security token, proxy credentials)
// that users other than kpsd's may read, one warning line each (loose_mode), for
// --check-config and the start (issue 31: a token readable by group kpsd gave every kpsctl user
// the cloud credential).
std::vector<std::string> loose_secret_files(const Config& config);

}  // namespace kpsd
