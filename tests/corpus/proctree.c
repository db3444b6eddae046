// proctree: a tree of processes with their own process groups and a new
// session: pids, parents, pgids and sids are the same after the restore,
// and the parent still reaps its children's exit statuses.
#include "fdcorpus.h"
#include <sys/mman.h>
#include <sys/wait.h>

struct ids { pid_t pid, ppid, pgid, sid; };
struct table { volatile int phase; struct ids before[4], after[4]; volatile int answered[4]; };
static struct table *T;

static void report(int k, struct ids *where) {
  where[k].pid = getpid();
  where[k].ppid = getppid();
  where[k].pgid = getpgid(0);
  where[k].sid = getsid(0);
}

// member k waits for phase 2, reports again and exits with 10+k.
static void member(int k) {
  report(k, T->before);
  T->answered[k] = 1;
  for (int i = 0; T->phase != 2; i++) { if (i > 24000) _exit(98); usleep(5000); }
  report(k, T->after);
  T->answered[k] = 2;
  _exit(10 + k);
}

int main(void) {
  corpus_setup("proctree");
  T = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  report(0, T->before);
  pid_t a = fork(); // a: own process group, forks b into it
  if (a == 0) {
    setpgid(0, 0);
    pid_t b = fork();
    if (b == 0) member(2);
    report(1, T->before);
    T->answered[1] = 1;
    for (int i = 0; T->phase != 2; i++) { if (i > 24000) _exit(98); usleep(5000); }
    report(1, T->after);
    int st;
    int ok = waitpid(b, &st, 0) == b && WIFEXITED(st) && WEXITSTATUS(st) == 12;
    T->answered[1] = 2;
    _exit(ok ? 11 : 99);
  }
  pid_t c = fork(); // c: a new session
  if (c == 0) {
    setsid();
    member(3);
  }
  for (int i = 0; i < 500; i++) {
    if (T->answered[1] && T->answered[2] && T->answered[3]) break;
    usleep(10000);
  }
  CHECK(T->answered[1] && T->answered[2] && T->answered[3], "tree did not start");
  corpus_ready();
  report(0, T->after);
  T->phase = 2;
  int st;
  CHECK(waitpid(a, &st, 0) == a && WIFEXITED(st) && WEXITSTATUS(st) == 11, "a status %#x (b not reaped by a?)", st);
  CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 13, "c status %#x", st);
  for (int k = 0; k < 4; k++) {
    struct ids *x = &T->before[k], *y = &T->after[k];
    CHECK(x->pid == y->pid && x->ppid == y->ppid && x->pgid == y->pgid && x->sid == y->sid,
          "process %d: before pid %d ppid %d pgid %d sid %d, after %d %d %d %d", k, x->pid, x->ppid, x->pgid, x->sid, y->pid, y->ppid,
          y->pgid, y->sid);
  }
  CHECK(T->before[1].pgid == T->before[1].pid && T->before[2].pgid == T->before[1].pid, "groups");
  CHECK(T->before[3].sid == T->before[3].pid, "session");
  corpus_pass();
}
