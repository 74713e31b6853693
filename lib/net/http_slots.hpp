#pragma once
// The metrics/status port's connection slots (max_metrics_clients, fd_limit.hpp): how long a
// connection may wait for a request, which one to close when a newcomer finds every slot taken,
// and when to say so. Plain code, no I/O; metrics_server.cpp keeps one SlotState a connection.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace kpsd {

// A connection may wait this long for the first byte of a request: after it was accepted, and
// between requests on a keep-alive connection (the status page asks every 3 s; Prometheus asks
// at most every few seconds and opens a new connection when its idle one was closed).
inline constexpr std::chrono::seconds http_idle_timeout{5};
// From its first byte, a request's header must have arrived whole within this (a real request
// arrives in one packet; a client that trickles it in is dropped).
inline constexpr std::chrono::seconds http_header_deadline{10};
// Writing an answer (a client that does not read it is dropped).
inline constexpr std::chrono::seconds http_write_deadline{10};

struct SlotState {
  enum class Phase { waiting, answering, closed };
  Phase phase = Phase::waiting;
  // waiting: since when it has waited for its current request (accepted, or the last answer
  // sent), idle or with part of a request in hand.
  std::chrono::steady_clock::time_point since{};
};

// The slot to close for a newcomer when every slot is taken: the one that has waited longest
// for a whole request (an idle keep-alive client or a slow one); never one being answered.
// nullopt: each one is being answered (the newcomer is closed instead).
std::optional<std::size_t> slot_to_evict(std::span<const SlotState> slots);

// A full house is said once per episode: it starts with the first newcomer that finds every
// slot taken and ends when the slots in use fall to half.
class FullHouse {
 public:
  explicit FullHouse(std::size_t slots) : low_water_(slots / 2) {}
  // A connection was closed for want of a slot; true when this starts an episode (say so).
  bool closed_one();
  // The slots in use now; when this ends an episode, how many connections it closed (say so).
  std::optional<std::uint64_t> in_use(std::size_t n);

 private:
  std::size_t low_water_;
  bool episode_ = false;
  std::uint64_t closed_ = 0;
};

}  // namespace kpsd
