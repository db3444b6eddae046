// timerfd: an armed periodic timer, a long one-shot timer, and an expired
// timer with unread expirations.
#include "fdcorpus.h"
#include <stdint.h>
#include <sys/timerfd.h>

int main(void) {
  corpus_setup("timerfd");
  int per = timerfd_create(CLOCK_MONOTONIC, 0), lng = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
  int exp = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  CHECK(per >= 0 && lng >= 0 && exp >= 0, "timerfd_create");
  struct itimerspec p = {.it_value = {0, 50000000}, .it_interval = {0, 50000000}};
  struct itimerspec l = {.it_value = {3600, 0}};
  struct itimerspec e = {.it_value = {0, 1000000}};
  CHECK(timerfd_settime(per, 0, &p, NULL) == 0 && timerfd_settime(lng, 0, &l, NULL) == 0 && timerfd_settime(exp, 0, &e, NULL) == 0, "settime");
  usleep(20000);
  corpus_ready();
  uint64_t t;
  CHECK(read(exp, &t, 8) == 8 && t == 1, "expired timer ticks");
  struct itimerspec g;
  CHECK(timerfd_gettime(lng, &g) == 0 && g.it_value.tv_sec > 3000 && g.it_value.tv_sec <= 3600, "long timer remaining %ld s", (long)g.it_value.tv_sec);
  CHECK(timerfd_gettime(per, &g) == 0 && g.it_interval.tv_nsec == 50000000, "periodic interval %ld", g.it_interval.tv_nsec);
  CHECK(read(per, &t, 8) == 8 && t >= 1, "periodic read");
  CHECK(read(per, &t, 8) == 8 && t >= 1, "periodic read 2");
  corpus_pass();
}
