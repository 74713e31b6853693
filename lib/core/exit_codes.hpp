#pragma once
// Exit codes of kpsd and kpsctl (sysexits.h), shared so both say the same thing.
namespace kpsd {

inline constexpr int exit_ok = 0;
inline constexpr int exit_usage = 64;
inline constexpr int exit_data_err = 65;  // the database is malformed

inline constexpr int exit_unavailable = 69;
inline constexpr int exit_software = 70;
inline constexpr int exit_cant_create = 73;
inline constexpr int exit_temp_fail = 75;  // another kpsd holds the database's lock
inline constexpr int exit_no_perm = 77;    // not allowed: the control socket, credentials refused
inline constexpr int exit_config = 78;

}  // namespace kpsd
