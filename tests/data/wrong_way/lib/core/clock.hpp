#pragma once
// A test fixture (tests/CMakeLists.txt): core must not see the store.
#include "store/job_store.hpp"
