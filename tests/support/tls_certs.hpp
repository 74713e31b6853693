#pragma once
// Certificates made at test time with the openssl command: a CA and a leaf it signs.
#include "process.hpp"
#include "temp_dir.hpp"

#include <string>

namespace kpsd::test {

struct CertFiles {
  std::string ca, leaf, leaf_key;
};

// A CA named `ca_name` and a server certificate for `san` (e.g. "DNS:localhost,IP:127.0.0.1"),
// in `dir` with file names starting with `prefix`.
inline CertFiles make_certs(const TempDir& dir, const std::string& prefix, const std::string& san,
                            const std::string& ca_name = "kpsd test CA") {
  CertFiles f{dir.file(prefix + "ca.pem"), dir.file(prefix + "leaf.pem"),
              dir.file(prefix + "leaf.key")};
  std::string ca_key = dir.file(prefix + "ca.key"), csr = dir.file(prefix + "leaf.csr");
  std::string ext =
      dir.write(prefix + "leaf.ext", "subjectAltName=" + san +
                                         "\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                                         "extendedKeyUsage=serverAuth\n");
  const std::string openssl = "/usr/bin/openssl";
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), openssl);
    auto r = run_command(args, dir.path().string(), std::chrono::seconds(60));
    if (r.exit_code != 0) throw std::runtime_error("openssl failed: " + r.err);
  };
  run({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
       "-keyout", ca_key, "-out", f.ca, "-days", "2", "-subj", "/CN=" + ca_name, "-addext",
       "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
  run({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
       f.leaf_key, "-out", csr, "-subj", "/CN=kpsd test server"});
  run({"x509", "-req", "-in", csr, "-CA", f.ca, "-CAkey", ca_key, "-CAcreateserial", "-out", f.leaf,
       "-days", "2", "-extfile", ext});
  return f;
}

}  // namespace kpsd::test
