// posixtimer: POSIX timers (timer_create) survive with their ids, clocks,
// signals and values: a periodic CLOCK_MONOTONIC SIGEV_SIGNAL timer keeps
// firing with its sigev_value, a CLOCK_REALTIME one-shot armed an hour
// ahead still has about an hour left and still notifies the second thread
// (SIGEV_THREAD_ID), a SIGEV_NONE timer on the process CPU clock keeps its
// remaining CPU time, and a SIGEV_THREAD timer (glibc's helper thread) keeps
// calling back. A deleted timer leaves a gap in the ids that must stay. The
// second thread's own CPU-time profiling timer (CLOCK_THREAD_CPUTIME_ID,
// SIGEV_THREAD_ID to itself, as Go's profiler makes them) still counts that
// thread's CPU time. A one-shot that fired on a blocked signal before the
// checkpoint still has its SI_TIMER signal pending, with its value.
#include "fdcorpus.h"
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define PERIODIC_SIG (SIGRTMIN + 2)
#define THREAD_SIG (SIGRTMIN + 3)
#define PERIODIC_VAL 0x5eed
#define THREAD_VAL 0x7a11
#define PROF_SIG (SIGRTMIN + 5)
#define PROF_VAL 0x9f0f
#define PEND_SIG (SIGRTMIN + 6)
#define PEND_VAL 0x0dd

static atomic_int periodic_ok, periodic_bad, thread_hits, thread_bad, callbacks;
static atomic_int thread_hit_tid, t2_tid;
static atomic_int prof_ok, prof_bad, spin, pend_ok, pend_bad;

static void on_periodic(int s, siginfo_t *si, void *u) {
  (void)s, (void)u;
  if (si->si_code == SI_TIMER && si->si_value.sival_int == PERIODIC_VAL) periodic_ok++;
  else periodic_bad++;
}

static void on_thread(int s, siginfo_t *si, void *u) {
  (void)s, (void)u;
  if (si->si_code == SI_TIMER && si->si_value.sival_int == THREAD_VAL) {
    thread_hit_tid = gettid();
    thread_hits++;
  } else {
    thread_bad++;
  }
}

static void on_prof(int s, siginfo_t *si, void *u) {
  (void)s, (void)u;
  if (si->si_code == SI_TIMER && si->si_value.sival_int == PROF_VAL && gettid() == t2_tid) prof_ok++;
  else prof_bad++;
}

static void on_pend(int s, siginfo_t *si, void *u) {
  (void)s, (void)u;
  if (si->si_code == SI_TIMER && si->si_value.sival_int == PEND_VAL) pend_ok++;
  else pend_bad++;
}

static void on_callback(union sigval v) {
  if (v.sival_int == 42) callbacks++;
}

static void *second(void *a) {
  (void)a;
  pthread_setname_np(pthread_self(), "ptimer-t2");
  struct sigevent ev;
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_THREAD_ID;
  ev.sigev_signo = PROF_SIG;
  ev.sigev_value.sival_int = PROF_VAL;
  ev._sigev_un._tid = gettid();
  timer_t prof;
  struct itimerspec every5ms = {.it_value = {0, 5000000}, .it_interval = {0, 5000000}};
  if (timer_create(CLOCK_THREAD_CPUTIME_ID, &ev, &prof) || timer_settime(prof, 0, &every5ms, NULL)) return NULL;
  t2_tid = gettid();
  for (int i = 0; i < 100000; i++) {
    while (spin) {
    }
    usleep(10000);
  }
  return NULL;
}

// ticked waits (at most 3 s, so that a loaded machine cannot fail it) until
// both periodic timers have fired 3 times more than p0 and c0.
static int ticked(int p0, int c0) {
  for (double t0 = corpus_now(); corpus_now() - t0 < 3;) {
    if (periodic_ok - p0 >= 3 && callbacks - c0 >= 3) return 1;
    usleep(5000);
  }
  return 0;
}

// One /proc/self/timers entry; the pid or tid after "notify: mode/" is left
// out (it is the pid namespace of /proc's mount, not necessarily ours).
struct ptimer {
  int id, clock;
  char signal[64], mode[32];
  int who;
};

static int read_timers(struct ptimer *t, int max) {
  FILE *f = fopen("/proc/self/timers", "r");
  CHECK(f != NULL, "open /proc/self/timers");
  char line[256];
  int n = -1, id;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "ID: %d", &id) == 1) {
      n++;
      CHECK(n < max, "more than %d timers", max);
      memset(&t[n], 0, sizeof t[n]);
      t[n].id = id;
    } else if (n >= 0) {
      sscanf(line, "signal: %63s", t[n].signal);
      sscanf(line, "notify: %31[a-z/].%d", t[n].mode, &t[n].who);
      sscanf(line, "ClockID: %d", &t[n].clock);
    }
  }
  fclose(f);
  return n + 1;
}

static struct ptimer *find(struct ptimer *t, int n, int id) {
  for (int i = 0; i < n; i++)
    if (t[i].id == id) return &t[i];
  return NULL;
}

static int kid(timer_t t) { return (int)(intptr_t)t; } // SIGEV_SIGNAL/NONE/THREAD_ID: the kernel id

int main(void) {
  corpus_setup("posixtimer");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sa.sa_sigaction = on_periodic;
  CHECK(sigaction(PERIODIC_SIG, &sa, NULL) == 0, "sigaction periodic");
  sa.sa_sigaction = on_thread;
  CHECK(sigaction(THREAD_SIG, &sa, NULL) == 0, "sigaction thread");
  sa.sa_sigaction = on_prof;
  CHECK(sigaction(PROF_SIG, &sa, NULL) == 0, "sigaction prof");
  sa.sa_sigaction = on_pend;
  CHECK(sigaction(PEND_SIG, &sa, NULL) == 0, "sigaction pend");
  pthread_t th;
  CHECK(pthread_create(&th, NULL, second, NULL) == 0, "pthread_create");
  for (int i = 0; t2_tid == 0 && i < 500; i++) usleep(10000);
  CHECK(t2_tid != 0, "second thread did not start");

  struct sigevent ev;
  timer_t periodic, gap, oneshot, cpu, cb, pend;
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_SIGNAL;
  ev.sigev_signo = PERIODIC_SIG;
  ev.sigev_value.sival_int = PERIODIC_VAL;
  CHECK(timer_create(CLOCK_MONOTONIC, &ev, &periodic) == 0, "timer_create periodic");
  CHECK(timer_create(CLOCK_MONOTONIC, &ev, &gap) == 0, "timer_create gap");
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_THREAD_ID;
  ev.sigev_signo = THREAD_SIG;
  ev.sigev_value.sival_int = THREAD_VAL;
  ev._sigev_un._tid = t2_tid;
  CHECK(timer_create(CLOCK_REALTIME, &ev, &oneshot) == 0, "timer_create one-shot");
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_NONE;
  CHECK(timer_create(CLOCK_PROCESS_CPUTIME_ID, &ev, &cpu) == 0, "timer_create cpu");
  CHECK(timer_delete(gap) == 0, "timer_delete");
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_THREAD;
  ev.sigev_notify_function = on_callback;
  ev.sigev_value.sival_int = 42;
  CHECK(timer_create(CLOCK_MONOTONIC, &ev, &cb) == 0, "timer_create SIGEV_THREAD");

  // Blocked in this thread only, aimed at this thread: stays pending here.
  sigset_t pendset;
  sigemptyset(&pendset);
  sigaddset(&pendset, PEND_SIG);
  CHECK(pthread_sigmask(SIG_BLOCK, &pendset, NULL) == 0, "block pend");
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_THREAD_ID;
  ev.sigev_signo = PEND_SIG;
  ev.sigev_value.sival_int = PEND_VAL;
  ev._sigev_un._tid = gettid();
  CHECK(timer_create(CLOCK_MONOTONIC, &ev, &pend) == 0, "timer_create pend");
  struct itimerspec at1ms = {.it_value = {0, 1000000}};
  CHECK(timer_settime(pend, 0, &at1ms, NULL) == 0, "settime pend");

  struct itimerspec p = {.it_value = {0, 20000000}, .it_interval = {0, 20000000}};
  struct itimerspec o = {.it_value = {3600, 0}};
  struct itimerspec c = {.it_value = {1000, 0}};
  CHECK(timer_settime(periodic, 0, &p, NULL) == 0, "settime periodic");
  CHECK(timer_settime(oneshot, 0, &o, NULL) == 0, "settime one-shot");
  CHECK(timer_settime(cpu, 0, &c, NULL) == 0, "settime cpu");
  CHECK(timer_settime(cb, 0, &p, NULL) == 0, "settime SIGEV_THREAD");

  struct ptimer before[16], after[16];
  int nb = read_timers(before, 16);
  CHECK(nb == 6, "%d timers in /proc/self/timers, want 6", nb);
  CHECK(find(before, nb, kid(gap)) == NULL, "deleted timer %d still listed", kid(gap));
  ticked(0, 0);
  sigset_t pending;
  CHECK(sigpending(&pending) == 0 && sigismember(&pending, PEND_SIG), "the blocked one-shot's signal is not pending before the checkpoint");
  CHECK(periodic_ok >= 3 && callbacks >= 3, "before the checkpoint: %d periodic signals, %d callbacks", (int)periodic_ok, (int)callbacks);
  corpus_ready();

  // Same ids (the gap too), clocks, signals and notify modes.
  int na = read_timers(after, 16);
  CHECK(na == nb, "%d timers after, %d before", na, nb);
  for (int i = 0; i < nb; i++) {
    struct ptimer *a = find(after, na, before[i].id);
    CHECK(a != NULL, "timer id %d is gone", before[i].id);
    CHECK(a->clock == before[i].clock, "timer %d: clock %d, was %d", a->id, a->clock, before[i].clock);
    CHECK(strcmp(a->signal, before[i].signal) == 0, "timer %d: signal %s, was %s", a->id, a->signal, before[i].signal);
    CHECK(strcmp(a->mode, before[i].mode) == 0, "timer %d: notify %s, was %s", a->id, a->mode, before[i].mode);
  }
  CHECK(find(after, na, kid(gap)) == NULL, "deleted timer id %d came back", kid(gap));
  struct ptimer *ot = find(after, na, kid(oneshot));
  CHECK(ot && strcmp(ot->mode, "signal/tid") == 0, "one-shot notify %s, want signal/tid", ot ? ot->mode : "?");
  char path[64], comm[32] = "";
  snprintf(path, sizeof path, "/proc/self/task/%d/comm", ot->who);
  FILE *f = fopen(path, "r");
  CHECK(f && fgets(comm, sizeof comm, f), "one-shot notifies task %d, not a thread of ours", ot->who);
  fclose(f);
  CHECK(strcmp(comm, "ptimer-t2\n") == 0, "one-shot notifies thread %d named %s, want ptimer-t2", ot->who, comm);

  // Remaining times and intervals.
  struct itimerspec g;
  CHECK(timer_gettime(periodic, &g) == 0, "gettime periodic");
  CHECK(g.it_interval.tv_sec == 0 && g.it_interval.tv_nsec == 20000000, "periodic interval %ld.%09ld", (long)g.it_interval.tv_sec, g.it_interval.tv_nsec);
  CHECK(g.it_value.tv_sec == 0 && g.it_value.tv_nsec > 0 && g.it_value.tv_nsec <= 20000000, "periodic value %ld.%09ld", (long)g.it_value.tv_sec, g.it_value.tv_nsec);
  CHECK(timer_gettime(oneshot, &g) == 0, "gettime one-shot");
  CHECK(g.it_value.tv_sec > 3400 && g.it_value.tv_sec < 3600 && g.it_interval.tv_sec == 0 && g.it_interval.tv_nsec == 0,
        "one-shot value %ld s interval %ld s, want about 3600 and 0", (long)g.it_value.tv_sec, (long)g.it_interval.tv_sec);
  CHECK(timer_gettime(cpu, &g) == 0, "gettime cpu");
  CHECK(g.it_value.tv_sec > 900 && g.it_value.tv_sec < 1000, "CPU-clock timer value %ld s, want about 1000", (long)g.it_value.tv_sec);

  // The periodic timers keep firing with their values.
  int p0 = periodic_ok, c0 = callbacks;
  ticked(p0, c0);
  CHECK(periodic_ok - p0 >= 3, "only %d periodic signals in 3 s after the restore", periodic_ok - p0);
  CHECK(periodic_bad == 0, "%d timer signals with a wrong value or code", (int)periodic_bad);
  CHECK(callbacks - c0 >= 3, "only %d SIGEV_THREAD callbacks in 3 s after the restore", callbacks - c0);

  // The blocked one-shot fired once and is disarmed; its signal waits.
  CHECK(timer_gettime(pend, &g) == 0, "gettime pend");
  CHECK(g.it_value.tv_sec == 0 && g.it_value.tv_nsec == 0, "fired one-shot re-armed: %ld.%09ld left", (long)g.it_value.tv_sec, g.it_value.tv_nsec);
  CHECK(sigpending(&pending) == 0 && sigismember(&pending, PEND_SIG), "the blocked one-shot's signal is no longer pending");
  CHECK(pthread_sigmask(SIG_UNBLOCK, &pendset, NULL) == 0, "unblock pend");
  CHECK(pend_ok == 1 && pend_bad == 0, "pending timer signal: %d delivered with SI_TIMER and its value, %d wrong", (int)pend_ok, (int)pend_bad);

  // The profiling timer counts the second thread's CPU time.
  spin = 1;
  for (double t0 = corpus_now(); prof_ok < 3 && corpus_now() - t0 < 3;) usleep(5000);
  spin = 0;
  CHECK(prof_ok >= 3 && prof_bad == 0, "thread CPU-clock timer: %d signals to the second thread while it spun, %d wrong", (int)prof_ok, (int)prof_bad);

  // The one-shot still goes to the second thread with its value.
  CHECK(thread_hits == 0, "the one-shot fired early");
  struct itimerspec soon = {.it_value = {0, 10000000}};
  CHECK(timer_settime(oneshot, 0, &soon, NULL) == 0, "settime one-shot soon");
  for (int i = 0; thread_hits == 0 && i < 200; i++) usleep(5000);
  CHECK(thread_hits == 1 && thread_bad == 0, "one-shot: %d hits, %d bad signals", (int)thread_hits, (int)thread_bad);
  CHECK(thread_hit_tid == t2_tid, "one-shot delivered to thread %d, want %d", (int)thread_hit_tid, (int)t2_tid);
  corpus_pass();
}
