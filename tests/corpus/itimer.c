// itimer: interval timers (setitimer) survive: a periodic ITIMER_REAL keeps
// delivering SIGALRM after the restore with its interval, and a far-away
// one-shot ITIMER_VIRTUAL is still armed.
#include "fdcorpus.h"
#include <sys/time.h>
#include <time.h>

static volatile sig_atomic_t alarms;
static void on_alrm(int s) { (void)s; alarms++; }

int main(void) {
  corpus_setup("itimer");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alrm;
  sa.sa_flags = SA_RESTART;
  CHECK(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction");
  struct itimerval real = {{0, 20000}, {0, 20000}}, virt = {{0, 0}, {1000, 0}};
  CHECK(setitimer(ITIMER_REAL, &real, NULL) == 0, "setitimer real");
  CHECK(setitimer(ITIMER_VIRTUAL, &virt, NULL) == 0, "setitimer virtual");
  corpus_ready();
  sig_atomic_t before = alarms;
  for (double t0 = corpus_now(); corpus_now() - t0 < 0.3;) usleep(10000);
  CHECK(alarms - before >= 3, "only %d SIGALRM in 300 ms after the restore", (int)(alarms - before));
  struct itimerval got;
  CHECK(getitimer(ITIMER_REAL, &got) == 0, "getitimer real");
  CHECK(got.it_interval.tv_sec == 0 && got.it_interval.tv_usec == 20000, "ITIMER_REAL interval %ld.%06ld", (long)got.it_interval.tv_sec, (long)got.it_interval.tv_usec);
  CHECK(getitimer(ITIMER_VIRTUAL, &got) == 0, "getitimer virtual");
  CHECK(got.it_value.tv_sec > 900, "ITIMER_VIRTUAL value %ld s, want about 1000", (long)got.it_value.tv_sec);
  corpus_pass();
}
