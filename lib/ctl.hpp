#pragma once
// kpsctl: the operator's client for the control socket.
namespace kpsd {
int run_kpsctl(int argc, char** argv);
}
