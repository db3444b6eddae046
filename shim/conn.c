/*
 * conn.c - the connection table: which fd is which socket, its addresses,
 * state and byte counts.
 *
 * ftl_fdtab (private to the process, copied by fork) maps an fd number to
 * a conn entry in the shared region; dup'ed fds share one entry, counted in
 * refs. An entry belongs to one proc slot (owner, owner_gen); a fork child
 * copies every entry its fds refer to into entries of its own with zero
 * bytes. Entries of owners that are no longer LIVE are stale: readers skip
 * them and ftl_conn_new reclaims them when the table is full.
 */
#include "internal.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int32_t ftl_fdtab[FTL_MAX_FDS];
int ftl_fdmax = -1;
static uint32_t alloc_hint;

static void drop_ref(int32_t v);

/* Record what fd is now. The kernel only hands out free fd numbers, so an
 * entry the table still holds for fd is stale (closed behind the shim's
 * back, e.g. inside libc) and loses its reference. */
void ftl_fd_note(int fd, int32_t v) {
  if ((unsigned)fd >= FTL_MAX_FDS) return;
  int32_t old = __atomic_exchange_n(&ftl_fdtab[fd], v, __ATOMIC_RELAXED);
  if (old > 0) drop_ref(old);
  int cur = __atomic_load_n(&ftl_fdmax, __ATOMIC_RELAXED);
  while (fd > cur &&
         !__atomic_compare_exchange_n(&ftl_fdmax, &cur, fd, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
}

/* try-once seqlock: a writer that finds a write in progress gives up. */
static int seq_begin(struct ftl_conn *c) {
  uint32_t s = __atomic_load_n(&c->seq, __ATOMIC_RELAXED);
  if (s & 1) return 0;
  return __atomic_compare_exchange_n(&c->seq, &s, s + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}
static void seq_end(struct ftl_conn *c) { __atomic_fetch_add(&c->seq, 1, __ATOMIC_RELEASE); }

static int owner_stale(const struct ftl_conn *c) {
  uint32_t o = __atomic_load_n(&c->owner, __ATOMIC_RELAXED);
  if (o >= FTL_MAX_PROCS) return 1;
  const struct ftl_proc *p = &ftl_procs[o];
  return __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) != __atomic_load_n(&c->owner_gen, __ATOMIC_RELAXED) ||
         __atomic_load_n(&p->state, __ATOMIC_ACQUIRE) != FTL_PROC_LIVE;
}

static int mine(const struct ftl_conn *c) {
  return c->owner == ftl_me_idx && c->owner_gen == ftl_me_gen;
}

/* Claim a free (or stale) entry. Returns its index or -1. The entry is
 * CLAIMING and its seq odd: the caller fills it and calls publish(). */
static int32_t claim_conn(void) {
  uint32_t start = __atomic_load_n(&alloc_hint, __ATOMIC_RELAXED);
  for (int pass = 0; pass < 2; pass++) {
    for (uint32_t k = 0; k < FTL_MAX_CONNS; k++) {
      uint32_t i = (start + k) % FTL_MAX_CONNS;
      struct ftl_conn *c = &ftl_conns[i];
      uint32_t st = __atomic_load_n(&c->slot_state, __ATOMIC_ACQUIRE);
      if (st == FTL_SLOT_FREE || (pass == 1 && st == FTL_SLOT_USED && owner_stale(c))) {
        if (!__atomic_compare_exchange_n(&c->slot_state, &st, FTL_SLOT_CLAIMING, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_RELAXED))
          continue;
        __atomic_store_n(&alloc_hint, i + 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&c->seq, (__atomic_load_n(&c->seq, __ATOMIC_RELAXED) & 1) ? 2 : 1,
                           __ATOMIC_ACQ_REL);
        return (int32_t)i;
      }
    }
  }
  __atomic_fetch_add(&ftl_hdr->conns_dropped, 1, __ATOMIC_RELAXED);
  return -1;
}

static void init_conn(struct ftl_conn *c, int fd, int family, int type, int protocol, uint32_t state,
                      uint32_t flags) {
  c->owner = ftl_me_idx;
  c->owner_gen = ftl_me_gen;
  c->pid = ftl_procs[ftl_me_idx].pid;
  c->fd = fd;
  __atomic_store_n(&c->refs, 1, __ATOMIC_RELAXED);
  __atomic_store_n(&c->state, state, __ATOMIC_RELAXED);
  c->family = (uint16_t)family;
  c->type = (uint16_t)(type & 0xf); /* SOCK_NONBLOCK/SOCK_CLOEXEC masked */
  c->protocol = protocol;
  c->flags = flags;
  c->reserved = 0;
  c->local_len = 0;
  c->peer_len = 0;
  c->opened_ns = ftl_now_ns();
  __atomic_store_n(&c->bytes_in, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&c->bytes_out, 0, __ATOMIC_RELAXED);
}

static void publish(struct ftl_conn *c) {
  seq_end(c);
  __atomic_store_n(&c->slot_state, FTL_SLOT_USED, __ATOMIC_RELEASE);
}

int32_t ftl_conn_new(int fd, int family, int type, int protocol, uint32_t state, uint32_t flags) {
  if ((unsigned)fd >= FTL_MAX_FDS) return FTL_FD_OTHER;
  if (ftl_vforked) return FTL_FD_UNKNOWN;
  int32_t i = claim_conn();
  if (i < 0) {
    ftl_fd_note(fd, FTL_FD_UNTRACKED);
    return FTL_FD_UNTRACKED;
  }
  init_conn(&ftl_conns[i], fd, family, type, protocol, state, flags);
  publish(&ftl_conns[i]);
  ftl_fd_note(fd, i + 1);
  return i + 1;
}

void ftl_conn_set_addr(int32_t slot, int local, const void *addr, socklen_t len) {
  struct ftl_conn *c = &ftl_conns[slot];
  if (addr == NULL || (int)len < 0) len = 0;
  if (len > FTL_ADDR_MAX) len = FTL_ADDR_MAX;
  if (!seq_begin(c)) return;
  if (local) {
    memcpy(c->local, addr, len);
    c->local_len = len;
  } else {
    memcpy(c->peer, addr, len);
    c->peer_len = len;
  }
  seq_end(c);
}

void ftl_conn_fill_addrs(int32_t slot, int fd, int local, int peer) {
  struct sockaddr_storage ss;
  socklen_t l;
  if (local) {
    l = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &l) == 0) ftl_conn_set_addr(slot, 1, &ss, l);
  }
  if (peer) {
    l = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &l) == 0) ftl_conn_set_addr(slot, 0, &ss, l);
  }
}

void ftl_conn_set_state(int32_t slot, uint32_t state) {
  struct ftl_conn *c = &ftl_conns[slot];
  if (!seq_begin(c)) return;
  __atomic_store_n(&c->state, state, __ATOMIC_RELAXED);
  seq_end(c);
}

void ftl_conn_eof(int32_t slot) {
  struct ftl_conn *c = &ftl_conns[slot];
  if (c->type == SOCK_STREAM && __atomic_load_n(&c->state, __ATOMIC_RELAXED) != FTL_CONN_CLOSED)
    ftl_conn_set_state(slot, FTL_CONN_CLOSED);
}

/* Describe a socket the shim did not see being made (inherited over exec,
 * or made by libc internally / a raw syscall). */
static int32_t adopt_socket(int fd) {
  int family = 0, type = 0, protocol = 0, acc = 0;
  socklen_t l = sizeof(int);
  getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &l);
  l = sizeof(int);
  getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l);
  l = sizeof(int);
  getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &l);
  l = sizeof(int);
  getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l);
  struct sockaddr_storage ss;
  socklen_t pl = sizeof ss;
  int connected = getpeername(fd, (struct sockaddr *)&ss, &pl) == 0;
  uint32_t state = acc ? FTL_CONN_LISTEN : connected ? FTL_CONN_ESTABLISHED : FTL_CONN_OPEN;
  int32_t v = ftl_conn_new(fd, family, type, protocol, state, 0);
  if (v > 0) {
    ftl_conn_fill_addrs(v - 1, fd, 1, 0);
    if (connected) ftl_conn_set_addr(v - 1, 0, &ss, pl);
  }
  return v;
}

int32_t ftl_fd_classify(int fd) {
  if (ftl_me == NULL || ftl_vforked) return FTL_FD_OTHER;
  int saved = errno;
  struct stat st;
  int32_t v;
  if (syscall(SYS_fstat, fd, &st) != 0)
    v = FTL_FD_UNKNOWN; /* not open: nothing to remember */
  else if (!S_ISSOCK(st.st_mode)) {
    v = FTL_FD_OTHER;
    ftl_fd_note(fd, v);
  } else
    v = adopt_socket(fd);
  errno = saved;
  return v == FTL_FD_UNKNOWN ? FTL_FD_OTHER : v;
}

/* Drop one fd's reference to entry v (> 0); free the entry at the last. */
static void drop_ref(int32_t v) {
  struct ftl_conn *c = &ftl_conns[v - 1];
  if (!mine(c)) return;
  if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  /* last fd: free the entry. Readers see FREE and skip it. */
  __atomic_store_n(&c->slot_state, FTL_SLOT_FREE, __ATOMIC_RELEASE);
}

void ftl_fd_release(int fd) {
  if (ftl_me == NULL || ftl_vforked || (unsigned)fd >= FTL_MAX_FDS) return;
  int32_t v = __atomic_exchange_n(&ftl_fdtab[fd], FTL_FD_UNKNOWN, __ATOMIC_RELAXED);
  if (v > 0) drop_ref(v);
}

void ftl_fd_dup(int oldfd, int newfd) {
  if (ftl_me == NULL || ftl_vforked || (unsigned)newfd >= FTL_MAX_FDS) return;
  int32_t v = ftl_fd_get(oldfd);
  if (v > 0) {
    struct ftl_conn *c = &ftl_conns[v - 1];
    if (mine(c)) __atomic_fetch_add(&c->refs, 1, __ATOMIC_RELAXED);
    else v = FTL_FD_UNKNOWN;
  }
  ftl_fd_note(newfd, v == FTL_FD_OTHER ? FTL_FD_OTHER : v);
}

/* Fork child: every entry the fds refer to belongs to the parent. Make a
 * copy owned by the child (same description, zero bytes) and point the fds
 * at it. Runs before ftl_me is set; raw work only (async-signal-safe). */
void ftl_conns_fork_child(void) {
  /* static, not on the stack (fork may run on a small thread stack): the
   * child has only this thread and its own copy-on-write memory. */
  static int32_t remap[FTL_MAX_CONNS];
  memset(remap, 0, sizeof remap);
  int max = __atomic_load_n(&ftl_fdmax, __ATOMIC_RELAXED);
  for (int fd = 0; fd <= max; fd++) {
    int32_t v = ftl_fdtab[fd];
    if (v <= 0) continue;
    int32_t old = v - 1;
    if (remap[old] == 0) {
      struct ftl_conn *src = &ftl_conns[old];
      int32_t i = claim_conn();
      if (i < 0) {
        remap[old] = FTL_FD_UNTRACKED;
      } else {
        struct ftl_conn *c = &ftl_conns[i];
        init_conn(c, fd, src->family, src->type, src->protocol,
                  __atomic_load_n(&src->state, __ATOMIC_RELAXED), src->flags);
        __atomic_store_n(&c->refs, 0, __ATOMIC_RELAXED);
        uint32_t ll = src->local_len, pl = src->peer_len;
        if (ll > FTL_ADDR_MAX) ll = FTL_ADDR_MAX;
        if (pl > FTL_ADDR_MAX) pl = FTL_ADDR_MAX;
        memcpy(c->local, src->local, ll);
        memcpy(c->peer, src->peer, pl);
        c->local_len = ll;
        c->peer_len = pl;
        c->opened_ns = src->opened_ns;
        publish(c);
        remap[old] = i + 1;
      }
    }
    ftl_fdtab[fd] = remap[old];
    if (remap[old] > 0) __atomic_fetch_add(&ftl_conns[remap[old] - 1].refs, 1, __ATOMIC_RELAXED);
  }
}

void ftl_conns_release_all(void) {
  int max = __atomic_load_n(&ftl_fdmax, __ATOMIC_RELAXED);
  for (int fd = 0; fd <= max; fd++)
    if (ftl_fdtab[fd] > 0) ftl_fd_release(fd);
}

/* Constructor: describe the sockets this image inherited (over exec) now,
 * so a reader sees them before their first use. */
void ftl_adopt_inherited(void) {
  char buf[4096];
  int dfd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return;
  for (;;) {
    long n = syscall(SYS_getdents64, dfd, buf, sizeof buf);
    if (n <= 0) break;
    for (long off = 0; off < n;) {
      struct {
        uint64_t ino;
        int64_t off;
        unsigned short reclen;
        unsigned char type;
        char name[];
      } *d = (void *)(buf + off);
      off += d->reclen;
      if (d->name[0] < '0' || d->name[0] > '9') continue;
      int fd = 0;
      for (const char *p = d->name; *p >= '0' && *p <= '9'; p++) fd = fd * 10 + (*p - '0');
      if (fd == dfd || fd >= FTL_MAX_FDS) continue;
      struct stat st;
      if (syscall(SYS_fstat, fd, &st) == 0 && S_ISSOCK(st.st_mode)) adopt_socket(fd);
    }
  }
  syscall(SYS_close, dfd);
}
