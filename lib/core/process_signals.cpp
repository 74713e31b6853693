#include "core/process_signals.hpp"

#include <csignal>
#include <pthread.h>

namespace kpsd {

namespace {

sigset_t held_set() noexcept {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

}  // namespace

void hold_signals_until_handled() noexcept {
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  sigaction(SIGPIPE, &ignore, nullptr);
  sigset_t set = held_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int take_stop_signal(std::chrono::milliseconds wait) noexcept {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  timespec timeout{};
  timeout.tv_sec = static_cast<time_t>(wait.count() / 1000);
  timeout.tv_nsec = static_cast<long>(wait.count() % 1000) * 1000000L;
  int signo = sigtimedwait(&stop, nullptr, &timeout);
  return signo > 0 ? signo : 0;  // -1: EAGAIN (none in time) or EINTR
}

void release_held_signals() noexcept {
  sigset_t set = held_set();
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

}  // namespace kpsd
