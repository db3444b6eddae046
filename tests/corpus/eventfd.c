// eventfd: a counter and a semaphore eventfd.
#include "fdcorpus.h"
#include <stdint.h>
#include <sys/eventfd.h>

int main(void) {
  corpus_setup("eventfd");
  int e = eventfd(42, EFD_NONBLOCK), s = eventfd(3, EFD_SEMAPHORE);
  CHECK(e >= 0 && s >= 0, "eventfd");
  uint64_t v = 8;
  CHECK(write(e, &v, 8) == 8, "add");
  corpus_ready();
  CHECK(read(e, &v, 8) == 8 && v == 50, "counter %llu, want 50", (unsigned long long)v);
  CHECK(read(e, &v, 8) < 0 && errno == EAGAIN, "non-blocking empty read");
  for (int i = 0; i < 3; i++) CHECK(read(s, &v, 8) == 8 && v == 1, "semaphore read %d = %llu", i, (unsigned long long)v);
  corpus_pass();
}
