// fifo: a named pipe with both ends open and data buffered.
#include "fdcorpus.h"
#include <fcntl.h>
#include <sys/stat.h>

int main(void) {
  corpus_setup("fifo");
  char *dir = corpus_dir(), path[600];
  snprintf(path, sizeof path, "%s/fifo", dir);
  CHECK(mkfifo(path, 0600) == 0, "mkfifo");
  int r = open(path, O_RDONLY | O_NONBLOCK), w = open(path, O_WRONLY);
  CHECK(r >= 0 && w >= 0 && write(w, "fifo-data", 9) == 9, "open/write");
  corpus_ready();
  char b[32] = {0};
  CHECK(readn(r, b, 9) == 9 && !memcmp(b, "fifo-data", 9), "buffered %s", b);
  CHECK(write(w, "more", 4) == 4 && readn(r, b, 4) == 4 && !memcmp(b, "more", 4), "after");
  unlink(path);
  rmdir(dir);
  corpus_pass();
}
