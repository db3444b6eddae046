// sigpending: handlers with SA_SIGINFO, an ignored signal, a blocked
// process-wide signal and queued realtime signals with values, a thread-
// directed pending signal, and the alternate signal mask survive; after the
// restore unblocking delivers each exactly once with its value.
#include "fdcorpus.h"
#include <pthread.h>
#include <sys/syscall.h>

static volatile int got_usr1, got_rt, rt_values[4], got_thread;
static volatile pid_t thread_tid;

static void on_usr1(int s, siginfo_t *si, void *u) { (void)s; (void)u; got_usr1 += si->si_code == SI_QUEUE && si->si_value.sival_int == 7 ? 1 : 100; }
static void on_rt(int s, siginfo_t *si, void *u) { (void)s; (void)u; if (got_rt < 4) rt_values[got_rt] = si->si_value.sival_int; got_rt++; }
static void on_hup(int s) { (void)s; got_thread += syscall(SYS_gettid) == thread_tid ? 1 : 100; }

static volatile int thread_go;
static void *waiter(void *a) {
  (void)a;
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &s, NULL);
  thread_tid = syscall(SYS_gettid);
  while (!thread_go) usleep(1000);
  pthread_sigmask(SIG_UNBLOCK, &s, NULL);
  return NULL;
}

int main(void) {
  corpus_setup("sigpending");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_usr1;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigaddset(&sa.sa_mask, SIGALRM);
  CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
  sa.sa_sigaction = on_rt;
  sa.sa_flags = SA_SIGINFO;
  CHECK(sigaction(SIGRTMIN + 1, &sa, NULL) == 0, "sigaction rt");
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, on_hup);
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  sigaddset(&block, SIGRTMIN + 1);
  sigaddset(&block, SIGHUP);
  CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0, "block");
  pthread_t th;
  CHECK(pthread_create(&th, NULL, waiter, NULL) == 0, "thread");
  while (!thread_tid) usleep(1000);
  union sigval v = {.sival_int = 7};
  CHECK(sigqueue(getpid(), SIGUSR1, v) == 0, "sigqueue usr1");
  for (int i = 0; i < 3; i++) {
    v.sival_int = 100 + i;
    CHECK(sigqueue(getpid(), SIGRTMIN + 1, v) == 0, "sigqueue rt");
  }
  CHECK(syscall(SYS_tgkill, getpid(), thread_tid, SIGHUP) == 0, "tgkill");
  corpus_ready();
  sigset_t pend;
  sigpending(&pend);
  CHECK(sigismember(&pend, SIGUSR1) && sigismember(&pend, SIGRTMIN + 1), "pending set lost");
  struct sigaction cur;
  sigaction(SIGTERM, NULL, &cur);
  CHECK(cur.sa_handler == SIG_IGN, "SIGTERM no longer ignored");
  sigaction(SIGUSR1, NULL, &cur);
  CHECK(cur.sa_sigaction == on_usr1 && (cur.sa_flags & SA_SIGINFO) && (cur.sa_flags & SA_RESTART) && sigismember(&cur.sa_mask, SIGALRM),
        "SIGUSR1 disposition changed");
  sigset_t now;
  sigprocmask(SIG_BLOCK, NULL, &now);
  CHECK(sigismember(&now, SIGUSR1) && !sigismember(&now, SIGUSR2), "mask changed");
  CHECK(got_usr1 == 0 && got_rt == 0 && got_thread == 0, "delivered while blocked");
  CHECK(sigprocmask(SIG_UNBLOCK, &block, NULL) == 0, "unblock");
  CHECK(got_usr1 == 1, "SIGUSR1 delivered %d (want once, with its value)", got_usr1);
  CHECK(got_rt == 3 && rt_values[0] == 100 && rt_values[1] == 101 && rt_values[2] == 102, "rt delivered %d: %d %d %d", got_rt,
        rt_values[0], rt_values[1], rt_values[2]);
  thread_go = 1;
  pthread_join(th, NULL);
  CHECK(got_thread == 1, "thread-directed SIGHUP %d", got_thread);
  corpus_pass();
}
