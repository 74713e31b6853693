// The metrics/status port's slots: which connection makes room for a newcomer, and a full house
// said once per episode.
#include "net/http_slots.hpp"

#include <doctest/doctest.h>

#include <vector>

using namespace kpsd;
using namespace std::chrono_literals;

namespace {

const auto t0 = std::chrono::steady_clock::time_point{} + 1h;

SlotState waiting(std::chrono::seconds since) {
  return SlotState{SlotState::Phase::waiting, t0 + since};
}

SlotState answering(std::chrono::seconds since) {
  return SlotState{SlotState::Phase::answering, t0 + since};
}

}  // namespace

TEST_CASE("http slots: the connection waiting longest for a request makes room") {
  // An idle keep-alive client (waiting since its last answer) and slow ones (waiting since they
  // connected, part of a request in hand) alike: the one waiting longest goes.
  std::vector<SlotState> slots{waiting(3s), waiting(1s), answering(0s), waiting(2s)};
  CHECK(slot_to_evict(slots) == 1);
  // One being answered is never closed, however old; one already closed is not counted.
  slots = {answering(0s), SlotState{SlotState::Phase::closed, t0}, waiting(5s)};
  CHECK(slot_to_evict(slots) == 2);
  slots = {answering(0s), answering(1s)};
  CHECK_FALSE(slot_to_evict(slots));
  CHECK_FALSE(slot_to_evict({}));
}

TEST_CASE("http slots: a full house is said once - until half the slots are free") {
  FullHouse house(16);
  CHECK_FALSE(house.in_use(16));  // no episode yet: nothing to end
  CHECK(house.closed_one());      // the first closed connection starts an episode
  for (int i = 0; i < 200; ++i) CHECK_FALSE(house.closed_one());
  CHECK_FALSE(house.in_use(15));  // one slot free is not the end of it
  CHECK_FALSE(house.in_use(9));
  CHECK(house.in_use(8) == 201);  // ended, with the count of connections it closed
  CHECK_FALSE(house.in_use(0));
  CHECK(house.closed_one());  // a new episode, said again
  CHECK(house.in_use(3) == 1);
}
