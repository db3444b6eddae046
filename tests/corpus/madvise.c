// madvise: per-mapping flags of madvise(2), mlock(2) (and mseal(2) where
// the kernel has it) on separate mappings with known contents. After the
// restore: (a) the contents, (b) the flags in /proc/self/smaps VmFlags,
// (c) behaviour: a fork child has no DONTFORK mapping (mincore: ENOMEM)
// and reads the WIPEONFORK mapping as zeros while the parent keeps its
// data.
#include "fdcorpus.h"
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define LEN (4 * 4096)

struct area {
  const char *name;
  const char *code; // smaps VmFlags code
  int advice;       // -1: mlock, -2: mseal
  char *p;
};

static struct area areas[] = {
    {"dontfork", "dc", MADV_DONTFORK, 0},   {"wipeonfork", "wf", MADV_WIPEONFORK, 0},
    {"hugepage", "hg", MADV_HUGEPAGE, 0},   {"nohugepage", "nh", MADV_NOHUGEPAGE, 0},
    {"dontdump", "dd", MADV_DONTDUMP, 0},   {"sequential", "sr", MADV_SEQUENTIAL, 0},
    {"random", "rr", MADV_RANDOM, 0},       {"locked", "lo", -1, 0},
    {"sealed", "sl", -2, 0},
};
#define NAREAS (int)(sizeof areas / sizeof areas[0])

static char pattern(int a, int i) { return (char)('A' + a + i * 7); }

// vmflags returns the VmFlags line of the VMA holding p ("" if none).
static void vmflags(void *p, char *out, size_t n) {
  FILE *f = fopen("/proc/self/smaps", "r");
  CHECK(f != NULL, "open smaps");
  char line[512];
  int in = 0;
  out[0] = 0;
  unsigned long a = (unsigned long)p;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = lo <= a && a < hi;
    } else if (in && !strncmp(line, "VmFlags:", 8)) {
      snprintf(out, n, "%s", line + 8);
      break;
    }
  }
  fclose(f);
}

static int has_code(const char *flags, const char *code) {
  char want[8];
  snprintf(want, sizeof want, " %s", code);
  for (const char *s = flags; (s = strstr(s, want)) != NULL; s++)
    if (s[3] == ' ' || s[3] == '\n' || s[3] == 0) return 1;
  return 0;
}

int main(void) {
  corpus_setup("madvise");
  int sealed = 0;
  for (int a = 0; a < NAREAS; a++) {
    // A hole page between areas keeps each one its own VMA.
    char *p = mmap(NULL, LEN + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "mmap %s", areas[a].name);
    CHECK(munmap(p + LEN, 4096) == 0, "munmap hole");
    for (int i = 0; i < LEN; i++) p[i] = pattern(a, i);
    areas[a].p = p;
    if (areas[a].advice == -1) {
      CHECK(mlock(p, LEN) == 0, "mlock");
    } else if (areas[a].advice == -2) {
      sealed = syscall(462, p, LEN, 0) == 0; // mseal, Linux 6.10
    } else {
      CHECK(madvise(p, LEN, areas[a].advice) == 0, "madvise %s", areas[a].name);
    }
  }
  corpus_ready();
  char flags[512];
  for (int a = 0; a < NAREAS; a++) {
    for (int i = 0; i < LEN; i++) CHECK(areas[a].p[i] == pattern(a, i), "%s contents at %d", areas[a].name, i);
    if (areas[a].advice == -2 && !sealed) continue;
    vmflags(areas[a].p, flags, sizeof flags);
    CHECK(has_code(flags, areas[a].code), "%s: no %s in VmFlags:%s", areas[a].name, areas[a].code, flags);
  }
  // Behaviour across fork.
  char *df = areas[0].p, *wf = areas[1].p;
  pid_t c = fork();
  CHECK(c >= 0, "fork");
  if (c == 0) {
    unsigned char vec[LEN / 4096];
    if (mincore(df, LEN, vec) == 0 || errno != ENOMEM) _exit(10); // DONTFORK area present in the child
    for (int i = 0; i < LEN; i++)
      if (wf[i] != 0) _exit(11); // WIPEONFORK area not wiped
    if (areas[2].p[5] != pattern(2, 5)) _exit(12);
    _exit(0);
  }
  int st;
  CHECK(waitpid(c, &st, 0) == c, "waitpid");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 10, "DONTFORK mapping inherited by a fork child");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 11, "WIPEONFORK mapping not zero in a fork child");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "fork child status %#x", st);
  for (int i = 0; i < LEN; i++) CHECK(wf[i] == pattern(1, i), "wipeonfork parent contents at %d after fork", i);
  corpus_pass();
}
