// shm: a parent and its child share anonymous shared memory, a memfd
// mapping and a POSIX shared memory file; both see each other's writes
// after the restore. The child also keeps a private copy-on-write page.
#include "fdcorpus.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>

struct box { volatile long ping, pong, child_ok; volatile char text[64]; };

int main(void) {
  corpus_setup("shm");
  struct box *anon = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(anon != MAP_FAILED, "mmap anon");
  int mfd = memfd_create("corpus-shm", 0);
  CHECK(mfd >= 0 && ftruncate(mfd, 1 << 20) == 0, "memfd");
  char *mem = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  CHECK(mem != MAP_FAILED, "mmap memfd");
  close(mfd);
  char path[64];
  snprintf(path, sizeof path, "/dev/shm/ftl-corpus-%d", getpid());
  int sfd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  CHECK(sfd >= 0 && ftruncate(sfd, 8192) == 0, "shm file");
  char *posix = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
  CHECK(posix != MAP_FAILED, "mmap shm");
  close(sfd);
  char *priv = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  strcpy(priv, "before-fork");
  strcpy((char *)anon->text, "hello");
  memset(mem + 12345, 'm', 1000);
  strcpy(posix + 100, "posix");
  pid_t c = fork();
  CHECK(c >= 0, "fork");
  if (c == 0) {
    strcpy(priv, "child-private");
    for (int i = 0; i < 6000 && anon->ping != 2; i++) usleep(10000);
    // after the restore: check what the parent wrote, answer through all three
    int ok = anon->ping == 2 && mem[500000] == 'p' && posix[4000] == 'q' && !strcmp(priv, "child-private");
    mem[600000] = 'c';
    posix[5000] = 'd';
    anon->child_ok = ok ? 1 : -1;
    anon->pong = 2;
    _exit(0);
  }
  for (int i = 0; i < 100 && anon->pong != 0; i++) usleep(1000);
  anon->ping = 1;
  corpus_ready();
  CHECK(!strcmp((char *)anon->text, "hello") && mem[12345] == 'm' && mem[13344] == 'm' && !strcmp(posix + 100, "posix"), "contents");
  CHECK(!strcmp(priv, "before-fork"), "parent private page %s", priv);
  mem[500000] = 'p';
  posix[4000] = 'q';
  anon->ping = 2;
  for (int i = 0; i < 500 && anon->pong != 2; i++) usleep(10000);
  CHECK(anon->pong == 2, "child did not answer through shared memory");
  CHECK(anon->child_ok == 1, "child saw wrong contents");
  CHECK(mem[600000] == 'c' && posix[5000] == 'd', "child's writes not visible");
  int st;
  CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st), "child status");
  unlink(path);
  corpus_pass();
}
