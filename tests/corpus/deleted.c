// deleted: a deleted-but-open file keeps its content, offset and link
// count 0; a second fd on the same inode sees the same file.
#include "fdcorpus.h"
#include <fcntl.h>
#include <sys/stat.h>

int main(void) {
  corpus_setup("deleted");
  char *dir = corpus_dir(), path[600];
  snprintf(path, sizeof path, "%s/gone", dir);
  int f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  int g = open(path, O_RDONLY);
  CHECK(f >= 0 && g >= 0, "open");
  char big[70000];
  for (int i = 0; i < (int)sizeof big; i++) big[i] = 'a' + i % 26;
  CHECK(write(f, big, sizeof big) == sizeof big, "write");
  CHECK(unlink(path) == 0 && lseek(f, 100, SEEK_SET) == 100, "unlink");
  corpus_ready();
  struct stat st;
  CHECK(fstat(f, &st) == 0 && st.st_nlink == 0 && st.st_size == sizeof big, "nlink %ld size %ld", (long)st.st_nlink, (long)st.st_size);
  CHECK(access(path, F_OK) != 0, "path reappeared");
  char b[16];
  CHECK(read(f, b, 4) == 4 && !memcmp(b, big + 100, 4), "read at offset");
  CHECK(pwrite(f, "ZZ", 2, 0) == 2 && pread(g, b, 2, 0) == 2 && !memcmp(b, "ZZ", 2), "shared inode");
  rmdir(dir);
  corpus_pass();
}
