#pragma once
// A test fixture: the store may include core.
#include "core/clock.hpp"
