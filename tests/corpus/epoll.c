// epoll: an interest list (eventfd with data, pipe edge-triggered) that
// must still deliver events with the same data.
#include "fdcorpus.h"
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

int main(void) {
  corpus_setup("epoll");
  int ep = epoll_create1(EPOLL_CLOEXEC), ev = eventfd(0, EFD_NONBLOCK), p[2];
  CHECK(ep >= 0 && ev >= 0 && pipe(p) == 0, "create");
  struct epoll_event e1 = {.events = EPOLLIN, .data.u64 = 0xdeadbeef};
  struct epoll_event e2 = {.events = EPOLLIN | EPOLLET, .data.u64 = 77};
  CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e1) == 0 && epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e2) == 0, "epoll_ctl");
  corpus_ready();
  struct epoll_event out[4];
  CHECK(epoll_wait(ep, out, 4, 0) == 0, "spurious event");
  uint64_t one = 1;
  CHECK(write(ev, &one, 8) == 8, "eventfd write");
  int n = epoll_wait(ep, out, 4, 2000);
  CHECK(n == 1 && out[0].data.u64 == 0xdeadbeef && (out[0].events & EPOLLIN), "eventfd event n=%d data=%llx", n, n > 0 ? (unsigned long long)out[0].data.u64 : 0ULL);
  CHECK(read(ev, &one, 8) == 8, "eventfd read");
  CHECK(write(p[1], "x", 1) == 1, "pipe write");
  n = epoll_wait(ep, out, 4, 2000);
  CHECK(n == 1 && out[0].data.u64 == 77, "pipe event n=%d", n);
  CHECK(epoll_wait(ep, out, 4, 0) == 0, "edge-triggered fired twice");
  corpus_pass();
}
