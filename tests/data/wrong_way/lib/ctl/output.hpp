#pragma once
// A test fixture: kpsctl must not see the store; and an include names its folder.
#include "store/job_store.hpp"
#include "clock.hpp"
