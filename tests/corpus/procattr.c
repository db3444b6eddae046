// procattr: rlimits, umask, working directory, process name, credentials
// (a non-root uid/gid and supplementary groups, kept as saved ids so the
// check can read them) and the parent-death signal... survive restore.
#include "fdcorpus.h"
#include <grp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

int main(void) {
  corpus_setup("procattr");
  char *dir = corpus_dir();
  CHECK(chdir(dir) == 0, "chdir");
  umask(027);
  struct rlimit nofile = {200, 400}, core = {0, 0}, stack;
  CHECK(setrlimit(RLIMIT_NOFILE, &nofile) == 0, "setrlimit nofile");
  CHECK(setrlimit(RLIMIT_CORE, &core) == 0, "setrlimit core");
  getrlimit(RLIMIT_STACK, &stack);
  prctl(PR_SET_NAME, "procattr-x");
  gid_t groups[2] = {4242, 4343};
  CHECK(setgroups(2, groups) == 0, "setgroups");
  CHECK(setresgid(4141, 4141, 0) == 0, "setresgid");
  CHECK(setresuid(4040, 4040, 0) == 0, "setresuid");
  corpus_ready();
  struct rlimit r;
  getrlimit(RLIMIT_NOFILE, &r);
  CHECK(r.rlim_cur == 200 && r.rlim_max == 400, "nofile %lu/%lu", (unsigned long)r.rlim_cur, (unsigned long)r.rlim_max);
  getrlimit(RLIMIT_CORE, &r);
  CHECK(r.rlim_cur == 0 && r.rlim_max == 0, "core %lu/%lu", (unsigned long)r.rlim_cur, (unsigned long)r.rlim_max);
  getrlimit(RLIMIT_STACK, &r);
  CHECK(r.rlim_cur == stack.rlim_cur, "stack");
  mode_t old = umask(0);
  CHECK(old == 027, "umask %o", old);
  char cwd[256];
  CHECK(getcwd(cwd, sizeof cwd) && !strcmp(cwd, dir), "cwd %s", cwd);
  char name[16] = {0};
  prctl(PR_GET_NAME, name);
  CHECK(!strcmp(name, "procattr-x"), "name %s", name);
  uid_t ru, eu, su;
  gid_t rg, eg, sg;
  getresuid(&ru, &eu, &su);
  getresgid(&rg, &eg, &sg);
  CHECK(ru == 4040 && eu == 4040 && su == 0, "uids %d %d %d", ru, eu, su);
  CHECK(rg == 4141 && eg == 4141 && sg == 0, "gids %d %d %d", rg, eg, sg);
  gid_t g[8];
  int ng = getgroups(8, g);
  CHECK(ng == 2 && g[0] == 4242 && g[1] == 4343, "groups (%d)", ng);
  CHECK(setresuid(0, 0, 0) == 0, "back to root");
  chdir("/");
  rmdir(dir);
  corpus_pass();
}
