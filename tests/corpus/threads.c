// threads: worker threads with their own tids, names, thread-local data
// and signal masks keep running across checkpoint/restore and can be joined.
#include "fdcorpus.h"
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#define N 4
static __thread long tls_value;
static volatile long count[N];
static volatile int stop;
static pid_t tids[N];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long woken;

static void *worker(void *arg) {
  long i = (long)arg;
  tls_value = 1000 + i;
  tids[i] = syscall(SYS_gettid);
  char name[16];
  snprintf(name, sizeof name, "worker-%ld", i);
  prctl(PR_SET_NAME, name);
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGRTMIN + (int)i);
  pthread_sigmask(SIG_BLOCK, &s, NULL);
  while (!stop) {
    count[i]++;
    if (tls_value != 1000 + i) return (void *)1;
    if (i == 0) { // one thread waits on a condition variable (futex) now and then
      pthread_mutex_lock(&mu);
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 2000000;
      if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
      pthread_cond_timedwait(&cv, &mu, &ts);
      pthread_mutex_unlock(&mu);
    } else {
      usleep(1000);
    }
  }
  // thread-local state, name and mask must have survived
  char name2[16] = {0};
  prctl(PR_GET_NAME, name2);
  if (strcmp(name, name2)) return (void *)2;
  sigset_t cur;
  pthread_sigmask(SIG_BLOCK, NULL, &cur);
  if (!sigismember(&cur, SIGRTMIN + (int)i)) return (void *)3;
  if (syscall(SYS_gettid) != tids[i]) return (void *)4;
  return (void *)(long)(tls_value == 1000 + i ? 0 : 5);
}

int main(void) {
  corpus_setup("threads");
  pthread_t th[N];
  for (long i = 0; i < N; i++) CHECK(pthread_create(&th[i], NULL, worker, (void *)i) == 0, "pthread_create");
  for (int i = 0; i < N; i++)
    while (!tids[i]) usleep(1000);
  tls_value = 42;
  corpus_ready();
  long before[N];
  for (int i = 0; i < N; i++) before[i] = count[i];
  usleep(100000);
  for (int i = 0; i < N; i++) CHECK(count[i] > before[i], "thread %d stopped counting", i);
  for (int i = 0; i < N; i++) {
    char p[64];
    snprintf(p, sizeof p, "/proc/self/task/%d", tids[i]);
    CHECK(access(p, F_OK) == 0, "tid %d is gone", tids[i]);
  }
  pthread_mutex_lock(&mu);
  woken++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  stop = 1;
  for (int i = 0; i < N; i++) {
    void *r;
    CHECK(pthread_join(th[i], &r) == 0, "join %d", i);
    CHECK(r == NULL, "thread %d check %ld failed", i, (long)r);
  }
  CHECK(tls_value == 42, "main tls %ld", tls_value);
  corpus_pass();
}
