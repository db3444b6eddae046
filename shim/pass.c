/*
 * pass.c - wrappers that only count: event waiting, pipes, time,
 * randomness, threads and signals. They are the hooks later issues use
 * (predictor, event log); today they call straight through.
 */
#include "internal.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/select.h>
#include <sys/time.h>
#include <time.h>

#define PASS(call, type, ...)                  \
  do {                                         \
    ftl_count(FTL_CALL_##call);                \
    return REAL(call, type)(__VA_ARGS__);      \
  } while (0)

FTL_EXPORT int epoll_create(int size) { PASS(epoll_create, int (*)(int), size); }
FTL_EXPORT int epoll_create1(int flags) { PASS(epoll_create1, int (*)(int), flags); }
FTL_EXPORT int epoll_ctl(int e, int op, int fd, struct epoll_event *ev) {
  PASS(epoll_ctl, int (*)(int, int, int, struct epoll_event *), e, op, fd, ev);
}
FTL_EXPORT int epoll_wait(int e, struct epoll_event *ev, int n, int t) {
  PASS(epoll_wait, int (*)(int, struct epoll_event *, int, int), e, ev, n, t);
}
FTL_EXPORT int epoll_pwait(int e, struct epoll_event *ev, int n, int t, const sigset_t *s) {
  PASS(epoll_pwait, int (*)(int, struct epoll_event *, int, int, const sigset_t *), e, ev, n, t, s);
}
FTL_EXPORT int epoll_pwait2(int e, struct epoll_event *ev, int n, const struct timespec *t, const sigset_t *s) {
  PASS(epoll_pwait2, int (*)(int, struct epoll_event *, int, const struct timespec *, const sigset_t *), e, ev,
       n, t, s);
}
FTL_EXPORT int poll(struct pollfd *p, nfds_t n, int t) { PASS(poll, int (*)(struct pollfd *, nfds_t, int), p, n, t); }
FTL_EXPORT int __poll_chk(struct pollfd *p, nfds_t n, int t, size_t plen) {
  PASS(__poll_chk, int (*)(struct pollfd *, nfds_t, int, size_t), p, n, t, plen);
}
FTL_EXPORT int ppoll(struct pollfd *p, nfds_t n, const struct timespec *t, const sigset_t *s) {
  PASS(ppoll, int (*)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *), p, n, t, s);
}
FTL_EXPORT int select(int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *t) {
  PASS(select, int (*)(int, fd_set *, fd_set *, fd_set *, struct timeval *), n, r, w, e, t);
}
FTL_EXPORT int pselect(int n, fd_set *r, fd_set *w, fd_set *e, const struct timespec *t, const sigset_t *s) {
  PASS(pselect, int (*)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *), n, r, w,
       e, t, s);
}
FTL_EXPORT int pipe(int fds[2]) { PASS(pipe, int (*)(int *), fds); }
FTL_EXPORT int pipe2(int fds[2], int flags) { PASS(pipe2, int (*)(int *, int), fds, flags); }
FTL_EXPORT int eventfd(unsigned int v, int flags) { PASS(eventfd, int (*)(unsigned int, int), v, flags); }
FTL_EXPORT int clock_gettime(clockid_t c, struct timespec *ts) {
  PASS(clock_gettime, int (*)(clockid_t, struct timespec *), c, ts);
}
FTL_EXPORT int gettimeofday(struct timeval *tv, void *tz) {
  PASS(gettimeofday, int (*)(struct timeval *, void *), tv, tz);
}
FTL_EXPORT time_t time(time_t *t) { PASS(time, time_t (*)(time_t *), t); }
FTL_EXPORT ssize_t getrandom(void *b, size_t n, unsigned int f) {
  PASS(getrandom, ssize_t (*)(void *, size_t, unsigned int), b, n, f);
}
FTL_EXPORT int pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg) {
  PASS(pthread_create, int (*)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *), t, a, fn, arg);
}
FTL_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  PASS(sigaction, int (*)(int, const struct sigaction *, struct sigaction *), sig, act, old);
}
FTL_EXPORT sighandler_t signal(int sig, sighandler_t h) { PASS(signal, sighandler_t (*)(int, sighandler_t), sig, h); }
