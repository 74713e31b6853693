#pragma once
// kpsctl's side of the control socket: one blocking connection, one request line and one reply
// line at a time (the protocol itself is lib/control_protocol).
#include <boost/json/object.hpp>

#include <stdexcept>
#include <string>

namespace kpsd::ctl {

// kpsd is not there (no socket, nobody listening, connection lost): exit 69.
struct Unreachable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The socket is there but this user may not use it: a different fix from "start kpsd" (exit 77).
struct NotPermitted : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class ControlClient {
 public:
  explicit ControlClient(const std::string& path);  // throws Unreachable, NotPermitted
  ~ControlClient();
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Sends one request and reads its reply (throws Unreachable). The sent line may carry a
  // job's key, so it is wiped once sent.
  boost::json::object request(const boost::json::object& req);

 private:
  std::string path_;
  int fd_ = -1;
  std::string pending_;
};

}  // namespace kpsd::ctl
