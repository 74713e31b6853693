#pragma once
// kpsctl: the operator's client for kpsd's control socket. Its command line; the commands are
// in commands.hpp, one file per concern.
namespace kpsd {
int run_kpsctl(int argc, char** argv);
}
