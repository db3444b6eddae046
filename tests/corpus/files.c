// files: regular file offsets, O_APPEND, FD_CLOEXEC, /dev/null, /dev/zero,
// /dev/urandom and a directory fd.
#include "fdcorpus.h"
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

int main(void) {
  corpus_setup("files");
  char *dir = corpus_dir(), path[600];
  snprintf(path, sizeof path, "%s/data", dir);
  int rw = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
  CHECK(rw >= 0 && write(rw, "0123456789", 10) == 10, "create");
  CHECK(lseek(rw, 4, SEEK_SET) == 4, "lseek");
  int ap = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
  int ro = open(path, O_RDONLY);
  CHECK(ap >= 0 && ro >= 0 && lseek(ro, 7, SEEK_SET) == 7, "open");
  int dn = open("/dev/null", O_RDWR), dz = open("/dev/zero", O_RDONLY), du = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  int dd = open(dir, O_RDONLY | O_DIRECTORY);
  CHECK(dn >= 0 && dz >= 0 && du >= 0 && dd >= 0, "open devices");
  corpus_ready();
  CHECK(lseek(rw, 0, SEEK_CUR) == 4, "rw offset %ld", (long)lseek(rw, 0, SEEK_CUR));
  CHECK(lseek(ro, 0, SEEK_CUR) == 7, "ro offset");
  CHECK((fcntl(ap, F_GETFL) & O_APPEND) && (fcntl(ap, F_GETFD) & FD_CLOEXEC), "append/cloexec flags");
  CHECK(!(fcntl(rw, F_GETFD) & FD_CLOEXEC) && (fcntl(du, F_GETFD) & FD_CLOEXEC), "cloexec bits");
  CHECK((fcntl(ro, F_GETFL) & O_ACCMODE) == O_RDONLY, "ro access mode");
  CHECK(write(ap, "AB", 2) == 2, "append write");
  char b[16] = {0};
  CHECK(pread(rw, b, 16, 0) == 12 && !memcmp(b, "0123456789AB", 12), "content %s", b);
  CHECK(write(rw, "x", 1) == 1 && pread(ro, b, 1, 4) == 1 && b[0] == 'x', "write at offset");
  CHECK(write(dn, "gone", 4) == 4 && read(dn, b, 1) == 0, "/dev/null");
  CHECK(read(dz, b, 4) == 4 && !b[0] && !b[3], "/dev/zero");
  CHECK(read(du, b, 4) == 4, "/dev/urandom");
  struct stat st;
  CHECK(fstat(dd, &st) == 0 && S_ISDIR(st.st_mode), "dir fd");
  unlink(path);
  rmdir(dir);
  corpus_pass();
}
