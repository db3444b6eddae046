// memory: heap (brk and mmap'd malloc), a 64 MiB anonymous area with a
// pattern, a guard page that still faults, a private file mapping with
// changed pages (the file itself unchanged), a read-only page, a mapping of
// a deleted file, a moved (mremap) area; the vDSO still works (clock_gettime)
// and the program break is where it was.
#include "fdcorpus.h"
#include <fcntl.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <time.h>

static sigjmp_buf jb;
static volatile int faults;
static void on_segv(int s) { (void)s; faults++; siglongjmp(jb, 1); }

int main(void) {
  corpus_setup("memory");
  char *dir = corpus_dir();
  char *small = malloc(1000);
  strcpy(small, "small-heap");
  char *big = malloc(8 << 20);
  for (int i = 0; i < (8 << 20); i += 4096) big[i] = (char)(i >> 12);
  void *brk0 = sbrk(0);
  size_t n = 64 << 20;
  unsigned *area = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(area != MAP_FAILED, "mmap 64M");
  for (size_t i = 0; i < n / 4; i += 256) area[i] = (unsigned)(i * 2654435761u);
  char *guarded = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  guarded[0] = 'a';
  guarded[2 * 4096] = 'c';
  CHECK(mprotect(guarded + 4096, 4096, PROT_NONE) == 0, "guard");
  char *ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  strcpy(ro, "read-only");
  mprotect(ro, 4096, PROT_READ);
  char fpath[128];
  snprintf(fpath, sizeof fpath, "%s/file", dir);
  int fd = open(fpath, O_RDWR | O_CREAT, 0600);
  char page[4096];
  for (int p = 0; p < 4; p++) {
    memset(page, 'A' + p, sizeof page);
    CHECK(write(fd, page, sizeof page) == sizeof page, "write file");
  }
  char *fmap = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  CHECK(fmap != MAP_FAILED, "mmap file");
  fmap[4096] = 'x'; // page 1 is now private
  close(fd);
  char dpath[128];
  snprintf(dpath, sizeof dpath, "%s/deleted", dir);
  int dfd = open(dpath, O_RDWR | O_CREAT, 0600);
  memset(page, 'D', sizeof page);
  CHECK(write(dfd, page, sizeof page) == sizeof page && write(dfd, page, sizeof page) == sizeof page, "write deleted");
  char *dmap = mmap(NULL, 2 * 4096, PROT_READ, MAP_PRIVATE, dfd, 0);
  char *dshared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, dfd, 4096);
  CHECK(dmap != MAP_FAILED && dshared != MAP_FAILED, "mmap deleted");
  dshared[10] = 'S';
  close(dfd);
  unlink(dpath);
  char *moved = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  strcpy(moved, "moved");
  char *moved2 = mremap(moved, 4096, 8192, MREMAP_MAYMOVE);
  CHECK(moved2 != MAP_FAILED, "mremap");
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  corpus_ready();
  CHECK(!strcmp(small, "small-heap"), "small heap");
  for (int i = 0; i < (8 << 20); i += 4096) CHECK(big[i] == (char)(i >> 12), "big heap at %d", i);
  CHECK(sbrk(0) == brk0, "program break moved %p -> %p", brk0, sbrk(0));
  char *more = malloc(100000); // the heap still grows
  CHECK(more != NULL, "malloc after restore");
  memset(more, 1, 100000);
  for (size_t i = 0; i < n / 4; i += 256) CHECK(area[i] == (unsigned)(i * 2654435761u), "area at %zu", i);
  CHECK(guarded[0] == 'a' && guarded[2 * 4096] == 'c', "guarded area");
  signal(SIGSEGV, on_segv);
  if (!sigsetjmp(jb, 1)) guarded[4096] = 1;
  CHECK(faults == 1, "guard page did not fault");
  if (!sigsetjmp(jb, 1)) ro[0] = 1;
  CHECK(faults == 2, "read-only page writable");
  CHECK(!strcmp(ro, "read-only"), "read-only page");
  CHECK(fmap[0] == 'A' && fmap[4096] == 'x' && fmap[4097] == 'B' && fmap[2 * 4096] == 'C', "private file mapping");
  fd = open(fpath, O_RDONLY);
  CHECK(pread(fd, page, 1, 4096) == 1 && page[0] == 'B', "file changed on disk");
  close(fd);
  CHECK(dmap[0] == 'D' && dmap[4096 + 10] == 'S' && dshared[10] == 'S' && dshared[11] == 'D', "deleted-file mapping");
  CHECK(!strcmp(moved2, "moved"), "moved area");
  struct timespec t1;
  CHECK(clock_gettime(CLOCK_MONOTONIC, &t1) == 0 && (t1.tv_sec > t0.tv_sec || (t1.tv_sec == t0.tv_sec && t1.tv_nsec >= t0.tv_nsec)),
        "clock_gettime");
  unlink(fpath);
  rmdir(dir);
  corpus_pass();
}
