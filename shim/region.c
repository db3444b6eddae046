/*
 * region.c - mapping the shared region, this process's proc slot, the
 * constructor/destructor and the fork child hand-over.
 *
 * The constructor is the only place that reads the environment (nginx
 * workers run with an emptied one): FTL_REGION names the region file,
 * which is opened, mmap'ed MAP_SHARED and closed again (the snapshot engine
 * must not find an extra fd). Any problem leaves the shim inactive: every
 * wrapper then only calls through.
 */
#include "internal.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct ftl_header *ftl_hdr;
struct ftl_conn *ftl_conns;
struct ftl_proc *ftl_procs;
struct ftl_proc *ftl_me;
uint32_t ftl_me_idx, ftl_me_gen;
void *ftl_realtab[FTL_NCALLS];

static const char *const call_names[FTL_NCALLS] = {
#define FTL_CALL_NAME(name, policy, why) #name,
    FTL_CALLS(FTL_CALL_NAME)
#undef FTL_CALL_NAME
};

/* Stands in for a function the next library does not define (the x86-64
 * calling convention lets it be called with any arguments). */
static long enosys(void) {
  errno = ENOSYS;
  return -1;
}

/* dlsym may be called before the constructor (a malloc inside libc's own
 * start-up can call clock_gettime): resolve lazily, store atomically. */
void *ftl_resolve(enum ftl_call c) {
  void *p = dlsym(RTLD_NEXT, call_names[c]);
  if (p == NULL) p = (void *)enosys; /* this libc lacks it: fail the call, don't crash */
  __atomic_store_n(&ftl_realtab[c], p, __ATOMIC_RELAXED);
  return p;
}

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

uint64_t ftl_now_ns(void) {
  struct timespec ts;
  clock_gettime_fn f = REAL(clock_gettime, clock_gettime_fn);
  if (f == NULL || f(CLOCK_REALTIME, &ts) != 0) {
    if (syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts) != 0) return 0;
  }
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

long ftl_getpid(void) { return syscall(SYS_getpid); }

/* start time in clock ticks since boot (field 22 of /proc/self/stat): with
 * the pid it names a process in any pid namespace. Raw syscalls only: this
 * also runs in fork children. */
static uint64_t read_start_ticks(void) {
  char buf[1024];
  int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  long n = syscall(SYS_read, fd, buf, sizeof buf - 1);
  syscall(SYS_close, fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (p == NULL) return 0;
  /* after ")": field 3 (state) is the first; field 22 is 19 fields later */
  int field = 2;
  for (p++; *p && field < 22; p++)
    if (*p == ' ') field++;
  uint64_t v = 0;
  while (*p >= '0' && *p <= '9') v = v * 10 + (uint64_t)(*p++ - '0');
  return v;
}

static uint64_t read_pidns(void) {
  char buf[64];
  long n = syscall(SYS_readlinkat, AT_FDCWD, "/proc/self/ns/pid", buf, sizeof buf - 1);
  if (n <= 0) return 0;
  buf[n] = 0; /* "pid:[4026531836]" */
  char *p = strchr(buf, '[');
  if (p == NULL) return 0;
  uint64_t v = 0;
  for (p++; *p >= '0' && *p <= '9'; p++) v = v * 10 + (uint64_t)(*p - '0');
  return v;
}

static int try_claim(uint32_t i, uint32_t from) {
  return __atomic_compare_exchange_n(&ftl_procs[i].state, &from, FTL_PROC_CLAIMING, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

/* A LIVE slot of a process that died without running its destructor
 * (SIGKILL): reclaimable when it is in our pid namespace and gone. */
static int slot_dead(uint32_t i, uint64_t pidns) {
  struct ftl_proc *p = &ftl_procs[i];
  if (pidns == 0 || p->pidns != pidns) return 0;
  return syscall(SYS_kill, p->pid, 0) != 0 && errno == ESRCH;
}

/* Claim a proc slot and publish it. Returns 0 on success. */
static int claim_proc(int32_t ppid) {
  uint64_t pidns = read_pidns();
  int saved = errno;
  int64_t got = -1;
  for (int pass = 0; pass < 3 && got < 0; pass++) {
    for (uint32_t i = 0; i < FTL_MAX_PROCS; i++) {
      uint32_t st = __atomic_load_n(&ftl_procs[i].state, __ATOMIC_ACQUIRE);
      if ((pass == 0 && st == FTL_PROC_FREE) || (pass == 1 && st == FTL_PROC_EXITED) ||
          (pass == 2 && st == FTL_PROC_LIVE && slot_dead(i, pidns))) {
        if (try_claim(i, st)) {
          got = i;
          break;
        }
      }
    }
  }
  errno = saved;
  if (got < 0) {
    __atomic_fetch_add(&ftl_hdr->procs_dropped, 1, __ATOMIC_RELAXED);
    return -1;
  }
  struct ftl_proc *p = &ftl_procs[got];
  /* a reused slot hands its byte totals to the header first */
  uint64_t in = __atomic_exchange_n(&p->bytes_in, 0, __ATOMIC_RELAXED);
  uint64_t out = __atomic_exchange_n(&p->bytes_out, 0, __ATOMIC_RELAXED);
  if (in) __atomic_fetch_add(&ftl_hdr->reused_bytes_in, in, __ATOMIC_RELAXED);
  if (out) __atomic_fetch_add(&ftl_hdr->reused_bytes_out, out, __ATOMIC_RELAXED);
  uint32_t gen = __atomic_add_fetch(&p->gen, 1, __ATOMIC_ACQ_REL);
  p->pid = (int32_t)ftl_getpid();
  p->ppid = ppid;
  p->start_ticks = read_start_ticks();
  p->start_ns = ftl_now_ns();
  p->exit_ns = 0;
  p->pidns = pidns;
  memset(p->comm, 0, sizeof p->comm);
  prctl(PR_GET_NAME, p->comm, 0, 0, 0);
  p->comm[FTL_COMM_LEN - 1] = 0;
  for (uint32_t c = 0; c < FTL_MAX_CALLS; c++) __atomic_store_n(&p->calls[c], 0, __ATOMIC_RELAXED);
  ftl_me_idx = (uint32_t)got;
  ftl_me_gen = gen;
  __atomic_store_n(&p->state, FTL_PROC_LIVE, __ATOMIC_RELEASE);
  errno = saved;
  return 0;
}

/* Only the process that owns the slot may mark it (not a vfork child). */
static int own_slot(void) { return ftl_me != NULL && ftl_getpid() == ftl_me->pid; }

void ftl_mark_exited(void) {
  if (!own_slot()) return;
  ftl_me->exit_ns = ftl_now_ns();
  __atomic_store_n(&ftl_me->state, FTL_PROC_EXITED, __ATOMIC_RELEASE);
}

void ftl_unmark_exited(void) {
  if (!own_slot()) return;
  ftl_me->exit_ns = 0;
  __atomic_store_n(&ftl_me->state, FTL_PROC_LIVE, __ATOMIC_RELEASE);
}

/* pthread_atfork child handler (glibc fork() runs it in the child before
 * fork returns). Only async-signal-safe work: raw syscalls and atomics. */
static void atfork_child(void) {
  if (ftl_me == NULL) return;
  int32_t parent = ftl_me->pid; /* getppid() may already say 1 (daemons) */
  ftl_me = NULL;                /* count nothing until the child has its own slot */
  if (claim_proc(parent) != 0) return;
  ftl_conns_fork_child();
  ftl_me = &ftl_procs[ftl_me_idx];
}

static int map_region(const char *path) {
  int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat st;
  void *m = MAP_FAILED;
  if (fstat(fd, &st) == 0 && (uint64_t)st.st_size >= FTL_REGION_SIZE)
    m = mmap(NULL, FTL_REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  syscall(SYS_close, fd);
  if (m == MAP_FAILED) return -1;
  struct ftl_header *h = m;
  if (h->magic != FTL_REGION_MAGIC || h->version != FTL_REGION_VERSION ||
      h->header_size != FTL_HEADER_SIZE || h->region_size != FTL_REGION_SIZE ||
      (uint64_t)st.st_size < h->region_size || h->max_procs != FTL_MAX_PROCS ||
      h->proc_size != sizeof(struct ftl_proc) || h->max_conns != FTL_MAX_CONNS ||
      h->conn_size != sizeof(struct ftl_conn) || h->max_calls != FTL_MAX_CALLS ||
      h->procs_off != FTL_PROCS_OFF || h->conns_off != FTL_CONNS_OFF) {
    munmap(m, FTL_REGION_SIZE);
    return -1;
  }
  ftl_hdr = h;
  ftl_procs = (struct ftl_proc *)((char *)m + FTL_PROCS_OFF);
  ftl_conns = (struct ftl_conn *)((char *)m + FTL_CONNS_OFF);
  return 0;
}

void ftl_exec_save_env(void); /* exec.c */

__attribute__((constructor)) static void ftl_init(void) {
  int saved = errno;
  for (int c = 0; c < FTL_NCALLS; c++)
    if (ftl_realtab[c] == NULL) ftl_resolve((enum ftl_call)c);
  ftl_exec_save_env();
  const char *path = getenv("FTL_REGION");
  if (path != NULL && *path != 0 && map_region(path) == 0 &&
      claim_proc((int32_t)syscall(SYS_getppid)) == 0) {
    pthread_atfork(NULL, NULL, atfork_child);
    ftl_adopt_inherited();
    ftl_me = &ftl_procs[ftl_me_idx];
  }
  errno = saved;
}

__attribute__((destructor)) static void ftl_fini(void) {
  if (!own_slot()) return;
  int saved = errno;
  ftl_conns_release_all();
  ftl_mark_exited();
  errno = saved;
}
