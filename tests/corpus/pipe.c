// pipe: a pipe with buffered data and a non-default size, shared with a
// child that blocks reading a control pipe until the check phase.
#include "fdcorpus.h"
#include <fcntl.h>
#include <sys/wait.h>

int main(void) {
  corpus_setup("pipe");
  int p[2], ctl[2];
  CHECK(pipe(p) == 0 && pipe(ctl) == 0, "pipe");
  CHECK(fcntl(p[1], F_SETPIPE_SZ, 1 << 20) >= (1 << 20), "F_SETPIPE_SZ");
  CHECK(write(p[1], "buffered", 8) == 8, "write");
  CHECK(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
  pid_t c = fork();
  CHECK(c >= 0, "fork");
  if (c == 0) {
    char b;
    if (read(ctl[0], &b, 1) != 1) _exit(3);
    _exit(write(p[1], "+child", 6) == 6 ? 0 : 4);
  }
  corpus_ready();
  CHECK(fcntl(p[1], F_GETPIPE_SZ) >= (1 << 20), "pipe size %d", fcntl(p[1], F_GETPIPE_SZ));
  CHECK(fcntl(p[0], F_GETFL) & O_NONBLOCK, "O_NONBLOCK lost");
  char buf[64] = {0};
  CHECK(readn(p[0], buf, 8) == 8 && !memcmp(buf, "buffered", 8), "buffered data %.8s", buf);
  CHECK(write(ctl[1], "g", 1) == 1, "control write");
  memset(buf, 0, sizeof buf);
  CHECK(readn(p[0], buf, 6) == 6 && !memcmp(buf, "+child", 6), "data from child %.6s", buf);
  int st;
  CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
  corpus_pass();
}
