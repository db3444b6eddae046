/*
 * net.c - wrappers for sockets and fds: creation, addresses, state, close,
 * dup, and the read/write family (payload bytes per socket and process).
 * Each wrapper calls the real function first, then does its bookkeeping
 * with errno preserved. Policies and reasons: FTL_CALLS in ftl_region.h.
 */
#include "internal.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- lifecycle ---- */

FTL_EXPORT int socket(int family, int type, int protocol) {
  int r = REAL(socket, int (*)(int, int, int))(family, type, protocol);
  if (ftl_me != NULL) {
    ftl_count(FTL_CALL_socket);
    if (r >= 0) FTL_KEEP_ERRNO(ftl_conn_new(r, family, type, protocol, FTL_CONN_OPEN, 0));
  }
  return r;
}

FTL_EXPORT int socketpair(int family, int type, int protocol, int sv[2]) {
  int r = REAL(socketpair, int (*)(int, int, int, int *))(family, type, protocol, sv);
  if (ftl_me != NULL) {
    ftl_count(FTL_CALL_socketpair);
    if (r == 0) FTL_KEEP_ERRNO({
        ftl_conn_new(sv[0], family, type, protocol, FTL_CONN_ESTABLISHED, FTL_CONNF_PAIR);
        ftl_conn_new(sv[1], family, type, protocol, FTL_CONN_ESTABLISHED, FTL_CONNF_PAIR);
      });
  }
  return r;
}

FTL_EXPORT int bind(int fd, const struct sockaddr *a, socklen_t l) {
  int r = REAL(bind, int (*)(int, const struct sockaddr *, socklen_t))(fd, a, l);
  if (ftl_me != NULL) {
    ftl_count(FTL_CALL_bind);
    if (r == 0) FTL_KEEP_ERRNO({
        int32_t v = ftl_fd_get(fd);
        if (v > 0) ftl_conn_fill_addrs(v - 1, fd, 1, 0);
      });
  }
  return r;
}

FTL_EXPORT int listen(int fd, int backlog) {
  int r = REAL(listen, int (*)(int, int))(fd, backlog);
  if (ftl_me != NULL) {
    ftl_count(FTL_CALL_listen);
    if (r == 0) FTL_KEEP_ERRNO({
        int32_t v = ftl_fd_get(fd);
        if (v > 0) {
          ftl_conn_set_state(v - 1, FTL_CONN_LISTEN);
          ftl_conn_fill_addrs(v - 1, fd, 1, 0);
        }
      });
  }
  return r;
}

static void accepted(int lfd, int fd, const struct sockaddr *a, socklen_t have, socklen_t got) {
  int32_t lv = ftl_fd_get(lfd);
  int family = AF_UNSPEC, type = SOCK_STREAM, protocol = 0;
  if (lv > 0) {
    struct ftl_conn *l = &ftl_conns[lv - 1];
    family = l->family;
    type = l->type;
    protocol = l->protocol;
  } else {
    socklen_t sl = sizeof family;
    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &sl);
  }
  int32_t v = ftl_conn_new(fd, family, type, protocol, FTL_CONN_ESTABLISHED, 0);
  if (v <= 0) return;
  ftl_conn_fill_addrs(v - 1, fd, 1, a == NULL || got > have);
  if (a != NULL && got <= have) ftl_conn_set_addr(v - 1, 0, a, got);
}

FTL_EXPORT int accept(int fd, struct sockaddr *a, socklen_t *l) {
  socklen_t have = (a != NULL && l != NULL) ? *l : 0;
  int r = REAL(accept, int (*)(int, struct sockaddr *, socklen_t *))(fd, a, l);
  if (ftl_me != NULL) {
    ftl_count(FTL_CALL_accept);
    if (r >= 0) FTL_KEEP_ERRNO(accepted(fd, r, l ? a : NULL, have, l ? *l : 0));
  }
  return r;
}

FTL_EXPORT int accept4(int fd, struct sockaddr *a, socklen_t *l, int flags) {
  socklen_t have = (a != NULL && l != NULL) ? *l : 0;
  int r = REAL(accept4, int (*)(int, struct sockaddr *, socklen_t *, int))(fd, a, l, flags);
  if (ftl_me != NULL) {
    ftl_count(FTL_CALL_accept4);
    if (r >= 0) FTL_KEEP_ERRNO(accepted(fd, r, l ? a : NULL, have, l ? *l : 0));
  }
  return r;
}

FTL_EXPORT int connect(int fd, const struct sockaddr *a, socklen_t l) {
  int r = REAL(connect, int (*)(int, const struct sockaddr *, socklen_t))(fd, a, l);
  if (ftl_me != NULL) {
    ftl_count(FTL_CALL_connect);
    int e = errno;
    if (r == 0 || e == EINPROGRESS) {
      int32_t v = ftl_fd_get(fd);
      if (v > 0) {
        if (a != NULL && a->sa_family == AF_UNSPEC) {
          ftl_conn_set_addr(v - 1, 0, NULL, 0); /* datagram disconnect */
          ftl_conn_set_state(v - 1, FTL_CONN_OPEN);
        } else {
          ftl_conn_set_addr(v - 1, 0, a, l);
          ftl_conn_fill_addrs(v - 1, fd, 1, 0);
          ftl_conn_set_state(v - 1, r == 0 ? FTL_CONN_ESTABLISHED : FTL_CONN_CONNECTING);
        }
      }
    }
    errno = e;
  }
  return r;
}

FTL_EXPORT int shutdown(int fd, int how) {
  int r = REAL(shutdown, int (*)(int, int))(fd, how);
  if (ftl_me != NULL) {
    ftl_count(FTL_CALL_shutdown);
    if (r == 0 && how == SHUT_RDWR) FTL_KEEP_ERRNO({
        int32_t v = ftl_fd_get(fd);
        if (v > 0) ftl_conn_set_state(v - 1, FTL_CONN_CLOSED);
      });
  }
  return r;
}

/* The entry is released before the real close: once the fd number is free
 * another thread may get it from accept and record it. */
FTL_EXPORT int close(int fd) {
  if (ftl_me != NULL) {
    ftl_count(FTL_CALL_close);
    FTL_KEEP_ERRNO(ftl_fd_release(fd));
  }
  return REAL(close, int (*)(int))(fd);
}

FTL_EXPORT int fclose(FILE *f) {
  if (ftl_me != NULL && f != NULL) {
    ftl_count(FTL_CALL_fclose);
    FTL_KEEP_ERRNO({
        int fd = fileno(f);
        if (fd >= 0) ftl_fd_release(fd);
      });
  }
  return REAL(fclose, int (*)(FILE *))(f);
}

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
FTL_EXPORT int close_range(unsigned int first, unsigned int last, int flags) {
  if (ftl_me != NULL) {
    ftl_count(FTL_CALL_close_range);
    if (!(flags & CLOSE_RANGE_CLOEXEC)) FTL_KEEP_ERRNO({
        /* ftl_fdmax is -1 until a socket is tracked: compare as int, and stop at
         * the smaller bound so `last` = ~0U cannot wrap the counter. */
        int max = __atomic_load_n(&ftl_fdmax, __ATOMIC_RELAXED);
        long hi = last < (unsigned int)INT32_MAX ? (long)last : (long)INT32_MAX;
        if (hi > max) hi = max;
        for (long fd = first; fd <= hi; fd++) ftl_fd_release((int)fd);
      });
  }
  return REAL(close_range, int (*)(unsigned int, unsigned int, int))(first, last, flags);
}

FTL_EXPORT void closefrom(int lowfd) {
  if (ftl_me != NULL && lowfd >= 0) {
    ftl_count(FTL_CALL_closefrom);
    FTL_KEEP_ERRNO({
        int max = __atomic_load_n(&ftl_fdmax, __ATOMIC_RELAXED);
        for (int fd = lowfd; fd <= max; fd++) ftl_fd_release(fd);
      });
  }
  REAL(closefrom, void (*)(int))(lowfd);
}

FTL_EXPORT int dup(int fd) {
  int r = REAL(dup, int (*)(int))(fd);
  if (ftl_me != NULL) {
    ftl_count(FTL_CALL_dup);
    if (r >= 0) FTL_KEEP_ERRNO(ftl_fd_dup(fd, r));
  }
  return r;
}

FTL_EXPORT int dup2(int fd, int fd2) {
  int r = REAL(dup2, int (*)(int, int))(fd, fd2);
  if (ftl_me != NULL) {
    ftl_count(FTL_CALL_dup2);
    if (r >= 0 && fd != fd2) FTL_KEEP_ERRNO({
        ftl_fd_release(fd2);
        ftl_fd_dup(fd, fd2);
      });
  }
  return r;
}

FTL_EXPORT int dup3(int fd, int fd2, int flags) {
  int r = REAL(dup3, int (*)(int, int, int))(fd, fd2, flags);
  if (ftl_me != NULL) {
    ftl_count(FTL_CALL_dup3);
    if (r >= 0) FTL_KEEP_ERRNO({
        ftl_fd_release(fd2);
        ftl_fd_dup(fd, fd2);
      });
  }
  return r;
}

/* fcntl's third argument is an int or a pointer: pass it on as a pointer-
 * sized value, as glibc does. */
static int do_fcntl(enum ftl_call c, int fd, int cmd, void *arg) {
  int r = ((int (*)(int, int, void *))ftl_real(c))(fd, cmd, arg);
  if (ftl_me != NULL) {
    ftl_count(c);
    if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) FTL_KEEP_ERRNO(ftl_fd_dup(fd, r));
  }
  return r;
}

FTL_EXPORT int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  return do_fcntl(FTL_CALL_fcntl, fd, cmd, arg);
}

FTL_EXPORT int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  return do_fcntl(FTL_CALL_fcntl64, fd, cmd, arg);
}

/* ---- bytes in ---- */

#define IN(call, fd, r, req)               \
  do {                                     \
    if (ftl_me != NULL) {                  \
      ftl_count(FTL_CALL_##call);          \
      ftl_bytes(fd, r, 1, req);            \
    }                                      \
  } while (0)
#define OUT(call, fd, r)                   \
  do {                                     \
    if (ftl_me != NULL) {                  \
      ftl_count(FTL_CALL_##call);          \
      ftl_bytes(fd, r, 0, 1);              \
    }                                      \
  } while (0)

static size_t iov_len(const struct iovec *v, int n) {
  size_t s = 0;
  for (int i = 0; v != NULL && i < n; i++) s += v[i].iov_len;
  return s;
}

FTL_EXPORT ssize_t read(int fd, void *b, size_t n) {
  ssize_t r = REAL(read, ssize_t (*)(int, void *, size_t))(fd, b, n);
  IN(read, fd, r, n);
  return r;
}

FTL_EXPORT ssize_t __read_chk(int fd, void *b, size_t n, size_t blen) {
  ssize_t r = REAL(__read_chk, ssize_t (*)(int, void *, size_t, size_t))(fd, b, n, blen);
  IN(__read_chk, fd, r, n);
  return r;
}

FTL_EXPORT ssize_t readv(int fd, const struct iovec *v, int n) {
  ssize_t r = REAL(readv, ssize_t (*)(int, const struct iovec *, int))(fd, v, n);
  IN(readv, fd, r, r == 0 ? iov_len(v, n) : 1);
  return r;
}

FTL_EXPORT ssize_t recv(int fd, void *b, size_t n, int f) {
  ssize_t r = REAL(recv, ssize_t (*)(int, void *, size_t, int))(fd, b, n, f);
  if (!(f & MSG_PEEK)) IN(recv, fd, r, n);
  else ftl_count(FTL_CALL_recv);
  return r;
}

FTL_EXPORT ssize_t __recv_chk(int fd, void *b, size_t n, size_t blen, int f) {
  ssize_t r = REAL(__recv_chk, ssize_t (*)(int, void *, size_t, size_t, int))(fd, b, n, blen, f);
  if (!(f & MSG_PEEK)) IN(__recv_chk, fd, r, n);
  else ftl_count(FTL_CALL___recv_chk);
  return r;
}

FTL_EXPORT ssize_t recvfrom(int fd, void *b, size_t n, int f, struct sockaddr *a, socklen_t *l) {
  ssize_t r = REAL(recvfrom, ssize_t (*)(int, void *, size_t, int, struct sockaddr *, socklen_t *))(
      fd, b, n, f, a, l);
  if (!(f & MSG_PEEK)) IN(recvfrom, fd, r, n);
  else ftl_count(FTL_CALL_recvfrom);
  return r;
}

FTL_EXPORT ssize_t __recvfrom_chk(int fd, void *b, size_t n, size_t blen, int f, struct sockaddr *a,
                                  socklen_t *l) {
  ssize_t r = REAL(__recvfrom_chk,
                   ssize_t (*)(int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *))(
      fd, b, n, blen, f, a, l);
  if (!(f & MSG_PEEK)) IN(__recvfrom_chk, fd, r, n);
  else ftl_count(FTL_CALL___recvfrom_chk);
  return r;
}

FTL_EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int f) {
  ssize_t r = REAL(recvmsg, ssize_t (*)(int, struct msghdr *, int))(fd, m, f);
  if (!(f & MSG_PEEK)) IN(recvmsg, fd, r, (r == 0 && m != NULL) ? iov_len(m->msg_iov, (int)m->msg_iovlen) : 1);
  else ftl_count(FTL_CALL_recvmsg);
  return r;
}

FTL_EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int f, struct timespec *t) {
  int r = REAL(recvmmsg, int (*)(int, struct mmsghdr *, unsigned int, int, struct timespec *))(fd, v, n, f,
                                                                                               t);
  if (ftl_me != NULL) {
    ftl_count(FTL_CALL_recvmmsg);
    if (r > 0 && !(f & MSG_PEEK)) {
      ssize_t sum = 0;
      for (int i = 0; i < r; i++) sum += v[i].msg_len;
      FTL_KEEP_ERRNO(ftl_bytes(fd, sum, 1, 0));
    }
  }
  return r;
}

/* ---- bytes out ---- */

FTL_EXPORT ssize_t write(int fd, const void *b, size_t n) {
  ssize_t r = REAL(write, ssize_t (*)(int, const void *, size_t))(fd, b, n);
  OUT(write, fd, r);
  return r;
}

FTL_EXPORT ssize_t writev(int fd, const struct iovec *v, int n) {
  ssize_t r = REAL(writev, ssize_t (*)(int, const struct iovec *, int))(fd, v, n);
  OUT(writev, fd, r);
  return r;
}

FTL_EXPORT ssize_t send(int fd, const void *b, size_t n, int f) {
  ssize_t r = REAL(send, ssize_t (*)(int, const void *, size_t, int))(fd, b, n, f);
  OUT(send, fd, r);
  return r;
}

FTL_EXPORT ssize_t sendto(int fd, const void *b, size_t n, int f, const struct sockaddr *a, socklen_t l) {
  ssize_t r = REAL(sendto, ssize_t (*)(int, const void *, size_t, int, const struct sockaddr *, socklen_t))(
      fd, b, n, f, a, l);
  OUT(sendto, fd, r);
  return r;
}

FTL_EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int f) {
  ssize_t r = REAL(sendmsg, ssize_t (*)(int, const struct msghdr *, int))(fd, m, f);
  OUT(sendmsg, fd, r);
  return r;
}

FTL_EXPORT int sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int f) {
  int r = REAL(sendmmsg, int (*)(int, struct mmsghdr *, unsigned int, int))(fd, v, n, f);
  if (ftl_me != NULL) {
    ftl_count(FTL_CALL_sendmmsg);
    if (r > 0) {
      ssize_t sum = 0;
      for (int i = 0; i < r; i++) sum += v[i].msg_len;
      FTL_KEEP_ERRNO(ftl_bytes(fd, sum, 0, 1));
    }
  }
  return r;
}

FTL_EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t n) {
  ssize_t r = REAL(sendfile, ssize_t (*)(int, int, off_t *, size_t))(out, in, off, n);
  OUT(sendfile, out, r);
  return r;
}

FTL_EXPORT ssize_t sendfile64(int out, int in, off_t *off, size_t n) {
  ssize_t r = REAL(sendfile64, ssize_t (*)(int, int, off_t *, size_t))(out, in, off, n);
  OUT(sendfile64, out, r);
  return r;
}

FTL_EXPORT ssize_t splice(int in, loff_t *ioff, int out, loff_t *ooff, size_t n, unsigned int f) {
  ssize_t r = REAL(splice, ssize_t (*)(int, loff_t *, int, loff_t *, size_t, unsigned int))(in, ioff, out,
                                                                                            ooff, n, f);
  if (ftl_me != NULL) {
    ftl_count(FTL_CALL_splice);
    if (r > 0) FTL_KEEP_ERRNO({
        ftl_bytes(in, r, 1, n);
        ftl_bytes(out, r, 0, 1);
      });
  }
  return r;
}
