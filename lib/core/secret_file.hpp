#pragma once
// Secret files (a token, a private key, a proxy's credentials): read whole, never echoed, and
// checked for who else may read them. Used by kpsd and by kpsctl (--key-file).
#include "core/result.hpp"
#include "core/secret.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace kpsd {

// Reads the secret file at `path`: one line (a trailing newline is not part of the secret), or
// with `one_line` false the content as it is (a private key). A failure names `what` and the
// path ("cannot read key file /x: Permission denied", "... is empty", "... it is a directory"),
// never the content.
Result<Secret> read_secret_file(const std::string& path, std::string_view what,
                                bool one_line = true);

// "" when only its owner may read the file at `path` (or it cannot be looked at: that is said
// where it is read); else one line naming it, its mode and who may read it, as OpenSSH says it
// of a private key.
std::string loose_mode(const std::string& path);

}  // namespace kpsd
