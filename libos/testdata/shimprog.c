// shimprog.c - small programs run under libftl.so by shim_test.go. Each
// mode moves a known number of socket bytes, prints "ready <pid>[ <pid>]"
// on stdout when the test may read the region, then waits for stdin to
// close (so its connections are still live while the test looks).
//
//   shimprog echo N       TCP over loopback: client sends N bytes with send(),
//                         server reads them with read() and echoes with
//                         writev(), client reads with recv(); then a unix
//                         socketpair moves N bytes with sendmsg()/recvmsg().
//                         Finally 1 byte is peeked (not counted) and read.
//                         Process bytes in = out = 2N+1 (socketpair bytes are
//                         counted per entry only).
//   shimprog fork N       TCP pair made in the parent; after fork the child
//                         writes N bytes on its copy, the parent reads them.
//   shimprog exec [V]     exec family member V (default execve) runs "hold"
//                         with an EMPTY environment; a listener and a
//                         connected socket stay open over it. V=posix_spawn(p)
//                         spawns "hold" as a child instead.
//   shimprog vforkexec    a TCP pair moves 2 bytes; vfork; the child dup2()s and
//                         close()s the client socket and execve()s "hold" with
//                         an empty environment; the parent waits for it.
//   shimprog threads T N  T threads, each writes N times 1 byte to its own
//                         loopback TCP connection and reads it back.
//   shimprog daemon N     fork; the parent exits at once, the child moves N
//                         bytes over loopback TCP and holds.
//   shimprog udp          UDP: sendto/recvfrom 1000 bytes, sendmmsg/recvmmsg
//                         100+200+300; TCP over ::1: 500 bytes. Prints
//                         "ready <pid> <1 if IPv6 worked>".
//   shimprog hold         prints ready and waits.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "shimprog: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void hold(void) {
  char c;
  while (read(0, &c, 1) > 0) {
  }
}

static void ready1(void) {
  printf("ready %d\n", getpid());
  fflush(stdout);
}

static void readn(int fd, char *buf, size_t n, int use_recv) {
  for (size_t got = 0; got < n;) {
    ssize_t r = use_recv ? recv(fd, buf + got, n - got, 0) : read(fd, buf + got, n - got);
    if (r <= 0) die("read");
    got += (size_t)r;
  }
}

/* A connected loopback TCP pair and its listener. */
static void tcp_pair(int *lfd, int *cfd, int *sfd) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  *lfd = socket(AF_INET, SOCK_STREAM, 0);
  if (*lfd < 0 || bind(*lfd, (struct sockaddr *)&a, sizeof a) || listen(*lfd, 8)) die("listen");
  if (getsockname(*lfd, (struct sockaddr *)&a, &l)) die("getsockname");
  *cfd = socket(AF_INET, SOCK_STREAM, 0);
  if (*cfd < 0 || connect(*cfd, (struct sockaddr *)&a, sizeof a)) die("connect");
  *sfd = accept4(*lfd, NULL, NULL, SOCK_CLOEXEC);
  if (*sfd < 0) die("accept");
}

static int echo(size_t n) {
  char *out = malloc(n), *in = malloc(n);
  for (size_t i = 0; i < n; i++) out[i] = (char)i;
  int lfd, cfd, sfd;
  tcp_pair(&lfd, &cfd, &sfd);
  for (size_t sent = 0; sent < n;) {
    ssize_t r = send(cfd, out + sent, n - sent, 0);
    if (r <= 0) die("send");
    sent += (size_t)r;
  }
  readn(sfd, in, n, 0);
  for (size_t done = 0; done < n;) {
    struct iovec v[2] = {{in + done, (n - done) / 2}, {in + done + (n - done) / 2, n - done - (n - done) / 2}};
    ssize_t r = writev(sfd, v, 2);
    if (r <= 0) die("writev");
    done += (size_t)r;
  }
  readn(cfd, in, n, 1);
  if (memcmp(in, out, n) != 0) die("echo mismatch");
  /* a unix socketpair: sendmsg / recvmsg */
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) die("socketpair");
  for (size_t done = 0; done < n;) {
    struct iovec v = {out + done, n - done};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    ssize_t r = sendmsg(sv[0], &m, 0);
    if (r <= 0) die("sendmsg");
    done += (size_t)r;
    struct iovec w = {in, (size_t)r};
    struct msghdr mr = {.msg_iov = &w, .msg_iovlen = 1};
    for (ssize_t got = 0; got < r;) {
      w.iov_base = in + got;
      w.iov_len = (size_t)(r - got);
      ssize_t k = recvmsg(sv[1], &mr, 0);
      if (k <= 0) die("recvmsg");
      got += k;
    }
  }
  /* a peek must not count */
  if (send(cfd, "x", 1, 0) != 1 || recv(sfd, in, 1, MSG_PEEK) != 1 || read(sfd, in, 1) != 1) die("peek");
  /* dup'ed fd shares the entry; closing one keeps it */
  int d = dup(cfd);
  if (d < 0 || close(d)) die("dup");
  ready1();
  hold();
  return 0;
}

static int do_fork(size_t n) {
  int lfd, cfd, sfd;
  tcp_pair(&lfd, &cfd, &sfd);
  char *buf = calloc(1, n);
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    for (size_t done = 0; done < n;) {
      ssize_t r = write(cfd, buf + done, n - done);
      if (r <= 0) die("child write");
      done += (size_t)r;
    }
    hold();
    _exit(0);
  }
  readn(sfd, buf, n, 0);
  printf("ready %d %d\n", getpid(), pid);
  fflush(stdout);
  hold();
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
  return 0;
}

static char *self_exe(void) {
  static char p[4096];
  ssize_t l = readlink("/proc/self/exe", p, sizeof p - 1);
  if (l <= 0) die("readlink");
  p[l] = 0;
  return p;
}

/* exec VARIANT: replace the image through one member of the exec family
 * (or posix_spawn a child) with an empty environment: envp = {NULL} for the
 * variants that take one, clearenv() first for those that use environ. */
static int do_exec(const char *variant) {
  char *exe = self_exe();
  char *argv[] = {"shimprog", "hold", NULL};
  char *envp[] = {NULL};
  int lfd, cfd, sfd; /* lfd and cfd survive the exec, sfd is close-on-exec */
  tcp_pair(&lfd, &cfd, &sfd);
  if (!strcmp(variant, "execve")) execve(exe, argv, envp);
  else if (!strcmp(variant, "execvpe")) execvpe(exe, argv, envp);
  else if (!strcmp(variant, "execle")) execle(exe, "shimprog", "hold", (char *)NULL, envp);
  else if (!strcmp(variant, "fexecve")) {
    int fd = open(exe, O_RDONLY | O_CLOEXEC);
    fexecve(fd, argv, envp);
  } else if (!strcmp(variant, "execveat")) execveat(AT_FDCWD, exe, argv, envp, 0);
  else if (!strcmp(variant, "posix_spawn") || !strcmp(variant, "posix_spawnp")) {
    pid_t pid;
    int (*spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,
                 char *const[], char *const[]) = variant[11] == 'p' ? posix_spawnp : posix_spawn;
    if (spawn(&pid, exe, NULL, NULL, argv, envp)) die("posix_spawn");
    int st;
    waitpid(pid, &st, 0); /* the child prints the ready line */
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
  } else {
    clearenv();
    if (!strcmp(variant, "execv")) execv(exe, argv);
    else if (!strcmp(variant, "execvp")) execvp(exe, argv);
    else if (!strcmp(variant, "execl")) execl(exe, "shimprog", "hold", (char *)NULL);
    else if (!strcmp(variant, "execlp")) execlp(exe, "shimprog", "hold", (char *)NULL);
    else {
      fprintf(stderr, "unknown exec variant %s\n", variant);
      return 2;
    }
  }
  die(variant);
  return 2;
}

static int do_vforkexec(void) {
  char *exe = self_exe();
  char *argv[] = {"shimprog", "hold", NULL};
  char *envp[] = {NULL};
  int lfd, cfd, sfd;
  tcp_pair(&lfd, &cfd, &sfd);
  char two[2];
  if (send(cfd, "ab", 2, 0) != 2 || read(sfd, two, 2) != 2) die("before vfork");
  pid_t pid = vfork();
  if (pid < 0) die("vfork");
  if (pid == 0) {
    /* The child has its own fd table but runs on the parent's memory: the
     * shim must not let these touch the parent's connection table. */
    dup2(cfd, 1000);
    close(cfd);
    close(1000);
    execve(exe, argv, envp);
    _exit(127);
  }
  /* the child prints its own ready line; the parent waits for it */
  int st;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

/* udp: two UDP sockets on 127.0.0.1 (sendto/recvfrom, then sendmmsg/recvmmsg
 * of 3 datagrams) and a TCP pair over ::1 when IPv6 loopback exists. */
static int do_udp(void) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct sockaddr_in b = a;
  socklen_t l = sizeof a;
  int u1 = socket(AF_INET, SOCK_DGRAM, 0), u2 = socket(AF_INET, SOCK_DGRAM, 0);
  if (u1 < 0 || u2 < 0 || bind(u1, (struct sockaddr *)&a, sizeof a) || bind(u2, (struct sockaddr *)&b, sizeof b))
    die("udp bind");
  if (getsockname(u2, (struct sockaddr *)&b, &l)) die("getsockname");
  char buf[2000];
  memset(buf, 'u', sizeof buf);
  if (sendto(u1, buf, 1000, 0, (struct sockaddr *)&b, sizeof b) != 1000) die("sendto");
  if (recvfrom(u2, buf, sizeof buf, 0, NULL, NULL) != 1000) die("recvfrom");
  if (connect(u1, (struct sockaddr *)&b, sizeof b)) die("udp connect");
  struct iovec v[3] = {{buf, 100}, {buf, 200}, {buf, 300}};
  struct mmsghdr m[3];
  memset(m, 0, sizeof m);
  for (int i = 0; i < 3; i++) m[i].msg_hdr.msg_iov = &v[i], m[i].msg_hdr.msg_iovlen = 1;
  if (sendmmsg(u1, m, 3, 0) != 3) die("sendmmsg");
  struct iovec w[3] = {{buf, 2000}, {buf, 2000}, {buf, 2000}};
  for (int i = 0; i < 3; i++) m[i].msg_hdr.msg_iov = &w[i], m[i].msg_len = 0;
  for (int got = 0; got < 3;) {
    int r = recvmmsg(u2, m + got, 3 - got, 0, NULL);
    if (r <= 0) die("recvmmsg");
    got += r;
  }
  /* IPv6 loopback TCP, if there is one */
  struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  socklen_t l6 = sizeof s6;
  int l6fd = socket(AF_INET6, SOCK_STREAM, 0);
  int have6 = l6fd >= 0 && bind(l6fd, (struct sockaddr *)&s6, sizeof s6) == 0 && listen(l6fd, 1) == 0 &&
              getsockname(l6fd, (struct sockaddr *)&s6, &l6) == 0;
  if (have6) {
    int c = socket(AF_INET6, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&s6, sizeof s6)) die("connect6");
    int sfd = accept(l6fd, NULL, NULL);
    if (sfd < 0 || write(c, buf, 500) != 500) die("write6");
    readn(sfd, buf, 500, 0);
  }
  printf("ready %d %d\n", getpid(), have6);
  fflush(stdout);
  hold();
  return 0;
}

struct targ {
  long n;
};

static void *thread(void *p) {
  struct targ *a = p;
  int lfd, cfd, sfd;
  tcp_pair(&lfd, &cfd, &sfd);
  char c = 'x';
  for (long i = 0; i < a->n; i++) {
    if (write(cfd, &c, 1) != 1) die("thread write");
    if (read(sfd, &c, 1) != 1) die("thread read");
  }
  close(lfd);
  close(cfd);
  close(sfd);
  return NULL;
}

static int do_threads(int t, long n) {
  pthread_t th[64];
  struct targ a = {n};
  if (t > 64) t = 64;
  for (int i = 0; i < t; i++)
    if (pthread_create(&th[i], NULL, thread, &a)) die("pthread_create");
  for (int i = 0; i < t; i++) pthread_join(th[i], NULL);
  ready1();
  hold();
  return 0;
}

static int do_daemon(size_t n) {
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid > 0) exit(0);
  setsid();
  int lfd, cfd, sfd;
  tcp_pair(&lfd, &cfd, &sfd);
  char *buf = calloc(1, n);
  for (size_t done = 0; done < n;) {
    ssize_t r = write(cfd, buf + done, n - done);
    if (r <= 0) die("write");
    readn(sfd, buf, (size_t)r, 0);
    done += (size_t)r;
  }
  ready1();
  hold();
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *m = argv[1];
  long a = argc > 2 ? atol(argv[2]) : 0, b = argc > 3 ? atol(argv[3]) : 0;
  if (!strcmp(m, "echo")) return echo((size_t)a);
  if (!strcmp(m, "fork")) return do_fork((size_t)a);
  if (!strcmp(m, "exec")) return do_exec(argc > 2 ? argv[2] : "execve");
  if (!strcmp(m, "vforkexec")) return do_vforkexec();
  if (!strcmp(m, "threads")) return do_threads((int)a, b);
  if (!strcmp(m, "daemon")) return do_daemon((size_t)a);
  if (!strcmp(m, "udp")) return do_udp();
  if (!strcmp(m, "hold")) {
    ready1();
    hold();
    return 0;
  }
  return 2;
}
