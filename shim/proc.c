/*
 * proc.c - process lifecycle wrappers: fork, vfork, the exec family,
 * posix_spawn and _exit.
 *
 * The exec family keeps LD_PRELOAD and the FTL_* settings in the new image
 * even when the program passes an environment without them: the
 * constructor saves them into static buffers (the only time the shim reads
 * the environment) and each exec builds its envp on the stack (mmap for a
 * huge one). execve is async-signal-safe and may run in a vfork child, so
 * nothing here allocates or locks.
 *
 * vfork is interposed in assembly: a C wrapper cannot return twice on a
 * shared stack. The child runs on the parent's memory until it execs or
 * _exits, so a thread-local flag keeps it from touching the parent's fd
 * table (dup2/close between vfork and exec are common).
 */
#include "internal.h"

#include <dlfcn.h>
#include <limits.h>
#include <spawn.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

__thread int ftl_vforked __attribute__((tls_model("initial-exec")));

#define ENV_BUF 16384
#define ENV_MAX 64
static char env_buf[ENV_BUF];
static char *env_saved[ENV_MAX];
static int env_n;
static int env_preload = -1; /* index of LD_PRELOAD=... in env_saved */
static char self_path[PATH_MAX];

static int prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* Same variable name (the part before '=')? */
static int same_name(const char *a, const char *b) {
  for (; *a && *a == *b; a++, b++)
    if (*a == '=') return 1;
  return (*a == '=' || *a == 0) && (*b == '=' || *b == 0);
}

void ftl_exec_save_env(void) {
  size_t used = 0;
  for (char **e = environ; e != NULL && *e != NULL; e++) {
    if (!prefix(*e, "LD_PRELOAD=") && !prefix(*e, "FTL_")) continue;
    size_t l = strlen(*e) + 1;
    if (used + l > ENV_BUF || env_n == ENV_MAX) continue;
    memcpy(env_buf + used, *e, l);
    if (prefix(*e, "LD_PRELOAD=")) env_preload = env_n;
    env_saved[env_n++] = env_buf + used;
    used += l;
  }
  Dl_info info;
  if (dladdr((void *)ftl_exec_save_env, &info) != 0 && info.dli_fname != NULL &&
      strlen(info.dli_fname) < sizeof self_path)
    strcpy(self_path, info.dli_fname);
}

/* An envp with the saved settings put back, built without malloc. */
struct envfix {
  char **env;
  void *mapped;
  size_t maplen;
  char pbuf[4096];
  char *stackv[256];
};

static char **envfix_build(struct envfix *f, char *const envp[]) {
  f->mapped = NULL;
  f->env = (char **)envp;
  if (env_n == 0) return f->env;
  size_t n = 0;
  while (envp != NULL && envp[n] != NULL) n++;
  size_t need = n + (size_t)env_n + 1;
  char **out = f->stackv;
  if (need > sizeof f->stackv / sizeof f->stackv[0]) {
    f->maplen = need * sizeof(char *);
    void *m = mmap(NULL, f->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return f->env;
    f->mapped = m;
    out = m;
  }
  size_t k = 0;
  int preload_done = env_preload < 0;
  for (size_t i = 0; i < n; i++) {
    char *e = envp[i];
    if (prefix(e, "LD_PRELOAD=") && env_preload >= 0) {
      const char *theirs = e + 11, *ours = env_saved[env_preload] + 11;
      if (preload_done || strcmp(theirs, ours) == 0 || (self_path[0] && strstr(theirs, self_path))) {
        out[k++] = e;
      } else if (strlen(ours) + strlen(theirs) + 13 <= sizeof f->pbuf) {
        /* the program set its own preload list: ours goes first */
        char *p = f->pbuf;
        memcpy(p, "LD_PRELOAD=", 11);
        p += 11;
        size_t lo = strlen(ours), lt = strlen(theirs);
        memcpy(p, ours, lo);
        p += lo;
        if (lt > 0) *p++ = ':';
        memcpy(p, theirs, lt + 1);
        out[k++] = f->pbuf;
      } else {
        out[k++] = env_saved[env_preload];
      }
      preload_done = 1;
      continue;
    }
    if (prefix(e, "FTL_")) {
      int saved = 0;
      for (int j = 0; j < env_n && !saved; j++) saved = same_name(e, env_saved[j]);
      if (saved) continue; /* ours is appended below */
    }
    out[k++] = e;
  }
  for (int j = 0; j < env_n; j++) {
    if (j == env_preload) {
      if (!preload_done) out[k++] = env_saved[j];
    } else {
      out[k++] = env_saved[j];
    }
  }
  out[k] = NULL;
  f->env = out;
  return out;
}

static void envfix_free(struct envfix *f) {
  if (f->mapped != NULL) FTL_KEEP_ERRNO(munmap(f->mapped, f->maplen));
}

/* Before an exec that replaces this image: count it and mark the slot
 * exited (the new image takes a slot of its own). Nothing in a vfork
 * child: the slot and counters belong to the parent. */
static int exec_begin(enum ftl_call c) {
  if (ftl_me == NULL || ftl_vforked || ftl_getpid() != ftl_me->pid) return 0;
  ftl_count(c);
  ftl_mark_exited();
  return 1;
}

static void exec_failed(int owned) {
  if (owned) FTL_KEEP_ERRNO(ftl_unmark_exited());
}

typedef int (*execve_fn)(const char *, char *const[], char *const[]);

static int do_execve(enum ftl_call c, const char *path, char *const argv[], char *const envp[]) {
  struct envfix f;
  char **env = envfix_build(&f, envp);
  int owned = exec_begin(c);
  int r = REAL(execve, execve_fn)(path, argv, env);
  exec_failed(owned);
  envfix_free(&f);
  return r;
}

static int do_execvpe(enum ftl_call c, const char *file, char *const argv[], char *const envp[]) {
  struct envfix f;
  char **env = envfix_build(&f, envp);
  int owned = exec_begin(c);
  int r = REAL(execvpe, execve_fn)(file, argv, env);
  exec_failed(owned);
  envfix_free(&f);
  return r;
}

FTL_EXPORT int execve(const char *path, char *const argv[], char *const envp[]) {
  return do_execve(FTL_CALL_execve, path, argv, envp);
}

FTL_EXPORT int execv(const char *path, char *const argv[]) {
  return do_execve(FTL_CALL_execv, path, argv, environ);
}

FTL_EXPORT int execvp(const char *file, char *const argv[]) {
  return do_execvpe(FTL_CALL_execvp, file, argv, environ);
}

FTL_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[]) {
  return do_execvpe(FTL_CALL_execvpe, file, argv, envp);
}

/* execl*: collect the variadic arguments into a stack argv. */
#define COLLECT_ARGS(arg0, argv, ap_last, after)          \
  size_t argc_ = 1;                                       \
  va_list ap_;                                            \
  va_start(ap_, arg0);                                    \
  while (va_arg(ap_, char *) != NULL) argc_++;            \
  va_end(ap_);                                            \
  char *argv[argc_ + 1];                                  \
  argv[0] = (char *)arg0;                                 \
  va_start(ap_, arg0);                                    \
  for (size_t i_ = 1; i_ <= argc_; i_++) argv[i_] = va_arg(ap_, char *); \
  after;                                                  \
  va_end(ap_)

FTL_EXPORT int execl(const char *path, const char *arg, ...) {
  COLLECT_ARGS(arg, argv, ap_, (void)0);
  return do_execve(FTL_CALL_execl, path, argv, environ);
}

FTL_EXPORT int execlp(const char *file, const char *arg, ...) {
  COLLECT_ARGS(arg, argv, ap_, (void)0);
  return do_execvpe(FTL_CALL_execlp, file, argv, environ);
}

FTL_EXPORT int execle(const char *path, const char *arg, ...) {
  char *const *envp;
  COLLECT_ARGS(arg, argv, ap_, envp = va_arg(ap_, char *const *));
  return do_execve(FTL_CALL_execle, path, argv, envp);
}

FTL_EXPORT int fexecve(int fd, char *const argv[], char *const envp[]) {
  struct envfix f;
  char **env = envfix_build(&f, envp);
  int owned = exec_begin(FTL_CALL_fexecve);
  int r = REAL(fexecve, int (*)(int, char *const[], char *const[]))(fd, argv, env);
  exec_failed(owned);
  envfix_free(&f);
  return r;
}

FTL_EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags) {
  struct envfix f;
  char **env = envfix_build(&f, envp);
  int owned = exec_begin(FTL_CALL_execveat);
  int r = REAL(execveat, int (*)(int, const char *, char *const[], char *const[], int))(dirfd, path, argv,
                                                                                        env, flags);
  exec_failed(owned);
  envfix_free(&f);
  return r;
}

typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,
                        char *const[], char *const[]);

static int do_spawn(enum ftl_call c, pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                    const posix_spawnattr_t *attr, char *const argv[], char *const envp[]) {
  struct envfix f;
  char **env = envfix_build(&f, envp);
  if (!ftl_vforked) ftl_count(c);
  int r = ((spawn_fn)ftl_real(c))(pid, path, fa, attr, argv, env);
  envfix_free(&f);
  return r;
}

FTL_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                           const posix_spawnattr_t *attr, char *const argv[], char *const envp[]) {
  return do_spawn(FTL_CALL_posix_spawn, pid, path, fa, attr, argv, envp);
}

FTL_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                            const posix_spawnattr_t *attr, char *const argv[], char *const envp[]) {
  return do_spawn(FTL_CALL_posix_spawnp, pid, file, fa, attr, argv, envp);
}

/* fork: the child's hand-over runs in the pthread_atfork child handler
 * (region.c), which also covers fork() calls made inside libc. */
FTL_EXPORT pid_t fork(void) {
  if (!ftl_vforked) ftl_count(FTL_CALL_fork);
  return REAL(fork, pid_t (*)(void))();
}

FTL_EXPORT void _exit(int status) {
  if (ftl_me != NULL && !ftl_vforked && ftl_getpid() == ftl_me->pid) {
    ftl_count(FTL_CALL__exit);
    ftl_conns_release_all();
    ftl_mark_exited();
  }
  REAL(_exit, void (*)(int))(status);
  for (;;) syscall(SYS_exit_group, status);
}

/* vfork helpers called from the assembly below. */
void ftl_vfork_before(void) {
  if (!ftl_vforked) ftl_count(FTL_CALL_vfork);
}
void ftl_vfork_child(void) { ftl_vforked = 1; }
void ftl_vfork_parent(void) { ftl_vforked = 0; }
long ftl_vfork_error(long neg) {
  ftl_vforked = 0;
  errno = (int)-neg;
  return -1;
}

/* pid_t vfork(void): the return address is kept in %rdi (not on the
 * stack, which the child may overwrite), as glibc does. */
__asm__(".text\n"
        ".globl vfork\n"
        ".type vfork,@function\n"
        "vfork:\n"
        "  endbr64\n"
        "  sub $8, %rsp\n"
        "  call ftl_vfork_before\n"
        "  add $8, %rsp\n"
        "  pop %rdi\n"
        "  mov $" "58" ", %eax\n" /* SYS_vfork */
        "  syscall\n"
        "  push %rdi\n"
        "  cmp $-4095, %rax\n"
        "  jae 3f\n"
        "  test %rax, %rax\n"
        "  jnz 2f\n"
        "  sub $8, %rsp\n" /* child */
        "  call ftl_vfork_child\n"
        "  add $8, %rsp\n"
        "  xor %eax, %eax\n"
        "  ret\n"
        "2:\n" /* parent: resumes after the child exec'ed or exited */
        "  push %rax\n"
        "  call ftl_vfork_parent\n"
        "  pop %rax\n"
        "  ret\n"
        "3:\n"
        "  sub $8, %rsp\n"
        "  mov %rax, %rdi\n"
        "  call ftl_vfork_error\n"
        "  add $8, %rsp\n"
        "  ret\n"
        ".size vfork, .-vfork\n");
