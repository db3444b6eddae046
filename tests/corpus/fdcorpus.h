// fdcorpus.h: the corpus protocol for the fd-kind programs (pipe.c,
// socketpair.c, ...): set up state, print READY, wait for SIGUSR2 (60 s
// bound), check, print "PASS name" or "FAIL name: why".
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t corpus_go;
static const char *corpus_name;

// corpus_now is CLOCK_MONOTONIC in seconds.
static inline double corpus_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void corpus_on_usr2(int s) { (void)s; corpus_go = 1; }

static void corpus_setup(const char *name) {
  corpus_name = name;
  setvbuf(stdout, NULL, _IONBF, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = corpus_on_usr2;
  sigaction(SIGUSR2, &sa, NULL);
}

#define CHECK(cond, ...)                                  \
  do {                                                    \
    if (!(cond)) {                                        \
      printf("FAIL %s: ", corpus_name);                   \
      printf(__VA_ARGS__);                                \
      printf(" (errno %d %s)\n", errno, strerror(errno)); \
      exit(1);                                            \
    }                                                     \
  } while (0)

static void corpus_ready(void) {
  printf("READY\n");
  for (int i = 0; !corpus_go; i++) {
    if (i > 6000) {
      printf("FAIL %s: no SIGUSR2 within 60 s\n", corpus_name);
      exit(1);
    }
    usleep(10000);
  }
}

static void corpus_pass(void) {
  printf("PASS %s\n", corpus_name);
  exit(0);
}

// corpus_dir makes a private scratch directory under $TMPDIR (or /tmp).
__attribute__((unused)) static char *corpus_dir(void) {
  static char d[512];
  const char *t = getenv("TMPDIR");
  snprintf(d, sizeof d, "%s/ftl-corpus-XXXXXX", t && *t ? t : "/tmp");
  CHECK(mkdtemp(d) != NULL, "mkdtemp %s", d);
  return d;
}

// readn reads exactly n bytes (fd may be non-blocking: retries for 5 s).
__attribute__((unused)) static int readn(int fd, char *buf, int n) {
  int got = 0;
  for (int i = 0; got < n && i < 500; i++) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r > 0) got += r;
    else if (r == 0) break;
    else if (errno == EAGAIN || errno == EINTR) usleep(10000);
    else break;
  }
  return got;
}
