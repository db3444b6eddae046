// inotify: watches (with a gap in the watch numbers) still report events
// with the same watch descriptors.
#include "fdcorpus.h"
#include <fcntl.h>
#include <sys/inotify.h>

int main(void) {
  corpus_setup("inotify");
  char *dir = corpus_dir(), path[600];
  int in = inotify_init1(IN_NONBLOCK);
  CHECK(in >= 0, "inotify_init1");
  int w1 = inotify_add_watch(in, "/tmp", IN_ATTRIB);
  int w2 = inotify_add_watch(in, dir, IN_CREATE | IN_DELETE);
  CHECK(w1 > 0 && w2 > 0 && inotify_rm_watch(in, w1) == 0, "watches");
  char buf[4096];
  while (read(in, buf, sizeof buf) > 0) {}
  corpus_ready();
  CHECK(read(in, buf, sizeof buf) < 0 && errno == EAGAIN, "spurious event");
  snprintf(path, sizeof path, "%s/new", dir);
  int f = open(path, O_CREAT | O_WRONLY, 0600);
  CHECK(f >= 0, "create");
  close(f);
  ssize_t n = 0;
  for (int i = 0; i < 200 && n <= 0; i++, usleep(10000)) n = read(in, buf, sizeof buf);
  struct inotify_event *e = (void *)buf;
  CHECK(n > 0 && e->wd == w2 && (e->mask & IN_CREATE) && !strcmp(e->name, "new"), "event wd %d (want %d) mask %x", n > 0 ? e->wd : -1, w2, n > 0 ? e->mask : 0);
  unlink(path);
  rmdir(dir);
  corpus_pass();
}
