#include "ctl/kpsctl.hpp"

int main(int argc, char** argv) { return kpsd::run_kpsctl(argc, argv); }
