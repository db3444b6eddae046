// itimerpending: a periodic ITIMER_REAL whose SIGALRM is pending (blocked)
// at the checkpoint. The kernel re-arms such a timer only when the signal
// is taken, so getitimer reads its value as 0 while the interval stays:
// after the restore, unblocking delivers the pending SIGALRM and the timer
// keeps firing with its interval.
#include "fdcorpus.h"
#include <sys/time.h>
#include <time.h>

static volatile sig_atomic_t alarms;
static void on_alrm(int s) { (void)s; alarms++; }

int main(void) {
  corpus_setup("itimerpending");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alrm;
  sa.sa_flags = SA_RESTART;
  CHECK(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction");
  sigset_t alrm;
  sigemptyset(&alrm);
  sigaddset(&alrm, SIGALRM);
  CHECK(sigprocmask(SIG_BLOCK, &alrm, NULL) == 0, "block SIGALRM");
  struct itimerval real = {{0, 20000}, {0, 20000}};
  CHECK(setitimer(ITIMER_REAL, &real, NULL) == 0, "setitimer real");
  for (double t0 = corpus_now(); corpus_now() - t0 < 0.1;) usleep(10000);
  struct itimerval got;
  CHECK(getitimer(ITIMER_REAL, &got) == 0, "getitimer before");
  CHECK(got.it_value.tv_sec == 0 && got.it_value.tv_usec == 0, "value %ld.%06ld while SIGALRM is pending, want 0",
        (long)got.it_value.tv_sec, (long)got.it_value.tv_usec);
  corpus_ready();
  CHECK(sigprocmask(SIG_UNBLOCK, &alrm, NULL) == 0, "unblock SIGALRM");
  CHECK(alarms == 1, "%d SIGALRM on unblocking, want the pending one", (int)alarms);
  for (double t0 = corpus_now(); corpus_now() - t0 < 0.3;) usleep(10000);
  CHECK(alarms >= 4, "only %d SIGALRM in 300 ms after unblocking", (int)alarms);
  CHECK(getitimer(ITIMER_REAL, &got) == 0, "getitimer after");
  CHECK(got.it_interval.tv_sec == 0 && got.it_interval.tv_usec == 20000, "interval %ld.%06ld", (long)got.it_interval.tv_sec, (long)got.it_interval.tv_usec);
  corpus_pass();
}
