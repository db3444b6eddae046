/*
 * internal.h - what the shim's files share. Nothing here is exported from
 * libftl.so (the Makefile builds with -fvisibility=hidden); wrappers that
 * must be visible to the program are marked FTL_EXPORT.
 *
 * Invariants every wrapper keeps:
 *   - no malloc/free (jemalloc calls clock_gettime from inside malloc, and
 *     exec may run after vfork); memory is static, on the stack or mmap'ed;
 *   - no locks: counters are relaxed atomic adds into the shared region,
 *     table updates are CAS claims and try-once seqlocks (never spin);
 *   - errno as the real call left it;
 *   - the shim's own system calls go through syscall()/libc functions the
 *     shim does not interpose, never through its own wrappers;
 *   - when the region is absent or invalid (ftl_me == NULL) every wrapper
 *     is a plain pass-through.
 */
#ifndef FTL_INTERNAL_H
#define FTL_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "ftl_region.h"

#define FTL_EXPORT __attribute__((visibility("default")))
#define FTL_LIKELY(x) __builtin_expect(!!(x), 1)
#define FTL_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Per-process fd table (private memory, copied by fork): what the shim knows
 * about each fd number. Fds at or above FTL_MAX_FDS are never tracked. */
#define FTL_MAX_FDS (1 << 18)
#define FTL_FD_UNKNOWN 0      /* not classified yet */
#define FTL_FD_OTHER (-1)     /* not a socket */
#define FTL_FD_UNTRACKED (-2) /* a socket without an entry (table full) */
/* > 0: index of the conn entry + 1 */

extern int32_t ftl_fdtab[FTL_MAX_FDS];
extern int ftl_fdmax; /* highest fd ever recorded in ftl_fdtab */

/* The region; all NULL when inactive. */
extern struct ftl_header *ftl_hdr;
extern struct ftl_conn *ftl_conns;
extern struct ftl_proc *ftl_procs;
extern struct ftl_proc *ftl_me; /* this process's slot; NULL: count nothing */
extern uint32_t ftl_me_idx, ftl_me_gen;

/* Real libc functions, resolved with dlsym(RTLD_NEXT) by FTL_CALLS index. */
extern void *ftl_realtab[FTL_NCALLS];
void *ftl_resolve(enum ftl_call c);
static inline void *ftl_real(enum ftl_call c) {
  void *p = __atomic_load_n(&ftl_realtab[c], __ATOMIC_RELAXED);
  return FTL_LIKELY(p != NULL) ? p : ftl_resolve(c);
}
#define REAL(name, type) ((type)ftl_real(FTL_CALL_##name))

static inline void ftl_count(enum ftl_call c) {
  struct ftl_proc *p = ftl_me;
  if (FTL_LIKELY(p != NULL)) __atomic_fetch_add(&p->calls[c], 1, __ATOMIC_RELAXED);
}

/* Set in a vfork child (which runs on its parent's memory) until it execs
 * or exits: the fd table and slot are the parent's, hands off. */
extern __thread int ftl_vforked __attribute__((tls_model("initial-exec")));

/* region.c */
uint64_t ftl_now_ns(void);
long ftl_getpid(void);   /* raw getpid: correct in vfork children too */
void ftl_mark_exited(void);
void ftl_unmark_exited(void);

/* conn.c: the connection table */
int32_t ftl_fd_classify(int fd);             /* slow path for FTL_FD_UNKNOWN */
void ftl_fd_note(int fd, int32_t v);         /* set ftl_fdtab[fd], keep ftl_fdmax */
int32_t ftl_conn_new(int fd, int family, int type, int protocol, uint32_t state, uint32_t flags);
void ftl_conn_set_addr(int32_t slot, int local, const void *addr, socklen_t len);
void ftl_conn_fill_addrs(int32_t slot, int fd, int local, int peer);
void ftl_conn_set_state(int32_t slot, uint32_t state);
void ftl_fd_release(int fd);                 /* fd is being closed */
void ftl_fd_dup(int oldfd, int newfd);       /* newfd now refers to oldfd's file */
void ftl_conns_fork_child(void);             /* re-own inherited entries */
void ftl_conns_release_all(void);            /* process exit */
void ftl_adopt_inherited(void);              /* constructor: sockets inherited over exec */

/* The fd's table value, classifying it on first sight. */
static inline int32_t ftl_fd_get(int fd) {
  if (FTL_UNLIKELY((unsigned)fd >= FTL_MAX_FDS)) return FTL_FD_OTHER;
  int32_t v = __atomic_load_n(&ftl_fdtab[fd], __ATOMIC_RELAXED);
  return FTL_LIKELY(v != FTL_FD_UNKNOWN) ? v : ftl_fd_classify(fd);
}

/* Account r payload bytes moved on fd (in: read by the program). req is the
 * byte count the program asked for (a 0 result means EOF only if req > 0). */
void ftl_conn_eof(int32_t slot);
static inline void ftl_bytes(int fd, ssize_t r, int in, size_t req) {
  struct ftl_proc *p = ftl_me;
  if (FTL_UNLIKELY(p == NULL) || r < 0) return;
  int32_t v = ftl_fd_get(fd);
  if (v == FTL_FD_OTHER) return;
  if (r == 0) {
    if (in && req > 0 && v > 0) ftl_conn_eof(v - 1);
    return;
  }
  if (v > 0) {
    struct ftl_conn *c = &ftl_conns[v - 1];
    if (FTL_LIKELY(!(c->flags & FTL_CONNF_PAIR)))
      __atomic_fetch_add(in ? &p->bytes_in : &p->bytes_out, (uint64_t)r, __ATOMIC_RELAXED);
    __atomic_fetch_add(in ? &c->bytes_in : &c->bytes_out, (uint64_t)r, __ATOMIC_RELAXED);
    if (FTL_UNLIKELY(__atomic_load_n(&c->state, __ATOMIC_RELAXED) == FTL_CONN_CONNECTING))
      ftl_conn_set_state(v - 1, FTL_CONN_ESTABLISHED);
  } else {
    __atomic_fetch_add(in ? &p->bytes_in : &p->bytes_out, (uint64_t)r, __ATOMIC_RELAXED);
  }
}

/* Run a wrapper's bookkeeping without disturbing errno. */
#define FTL_KEEP_ERRNO(stmt) \
  do {                       \
    int ftl_saved_errno_ = errno; \
    stmt;                    \
    errno = ftl_saved_errno_; \
  } while (0)

#endif
