// fdkinds: creates one fd of every kind snapshot/files handles, with known
// state, prints "NAME FD" lines and "READY", then stops itself (SIGSTOP).
// argv[1] = a scratch directory. Exits after 60 s if nobody kills it.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

static char dir[512];
static void die(const char *what) { perror(what); exit(1); }
static void out(const char *name, int fd) { printf("%s %d\n", name, fd); }
static char *path(const char *n) {
  static char b[8][600];
  static int i;
  i = (i + 1) % 8;
  snprintf(b[i], sizeof b[i], "%s/%s", dir, n);
  return b[i];
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  snprintf(dir, sizeof dir, "%s", argv[1]);
  setvbuf(stdout, NULL, _IONBF, 0);
  alarm(60);
  close_range(3, ~0U, 0);  // fds inherited from go test are not ours

  int f = open(path("f.txt"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (f < 0 || write(f, "hello world", 11) != 11) die("file");
  lseek(f, 5, SEEK_SET);
  out("file", f);
  int ap = open(path("f.txt"), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (ap < 0) die("append");
  out("append", ap);
  int del = open(path("del.txt"), O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (del < 0 || write(del, "secret-content", 14) != 14) die("deleted");
  unlink(path("del.txt"));
  lseek(del, 3, SEEK_SET);
  out("deleted", del);
  int null = open("/dev/null", O_WRONLY);
  out("devnull", null);

  int p[2];
  if (pipe(p) < 0 || write(p[1], "pipedata", 8) != 8) die("pipe");
  out("pipe_r", p[0]);
  out("pipe_w", p[1]);
  out("pipe_r_dup", dup(p[0]));

  if (mkfifo(path("fifo"), 0600) < 0) die("mkfifo");
  int fr = open(path("fifo"), O_RDONLY | O_NONBLOCK);
  int fw = open(path("fifo"), O_WRONLY);
  if (fr < 0 || fw < 0 || write(fw, "fifodata", 8) != 8) die("fifo");
  out("fifo_r", fr);
  out("fifo_w", fw);

  int sp[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) < 0) die("socketpair");
  if (write(sp[0], "to-b", 4) != 4 || write(sp[1], "to-a", 4) != 4) die("sp write");
  int pk = 1;
  if (setsockopt(sp[1], SOL_SOCKET, SO_PEEK_OFF, &pk, sizeof pk) < 0) die("SO_PEEK_OFF");
  out("stream_a", sp[0]);
  out("stream_b", sp[1]);
  int dg[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) < 0) die("dgram pair");
  send(dg[0], "d1", 2, 0);
  send(dg[0], "dg2", 3, 0);
  out("dgram_a", dg[0]);
  out("dgram_b", dg[1]);
  int sq[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sq) < 0) die("seqpacket pair");
  send(sq[0], "s1", 2, 0);
  out("seq_a", sq[0]);
  out("seq_b", sq[1]);
  int wd[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, wd) < 0 || write(wd[1], "last", 4) != 4) die("widowed pair");
  close(wd[1]);
  out("widowed", wd[0]);
  int ul = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path("sock"));
  if (bind(ul, (void *)&sun, sizeof sun) < 0 || listen(ul, 7) < 0) die("unix listen");
  out("unix_listen", ul);

  int ev = eventfd(7, EFD_NONBLOCK);
  out("eventfd", ev);
  int tf = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct itimerspec its = {.it_value = {100, 0}, .it_interval = {10, 0}};
  timerfd_settime(tf, 0, &its, NULL);
  out("timerfd", tf);
  sigset_t ss;
  sigemptyset(&ss);
  sigaddset(&ss, SIGUSR1);
  sigaddset(&ss, SIGWINCH);
  out("signalfd", signalfd(-1, &ss, SFD_CLOEXEC));
  int ep = epoll_create1(0);
  struct epoll_event e1 = {.events = EPOLLIN, .data.u64 = 0x1234};
  struct epoll_event e2 = {.events = EPOLLIN | EPOLLET, .data.u64 = 42};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e1) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e2) < 0) die("epoll");
  out("epoll", ep);
  int in = inotify_init1(IN_NONBLOCK);
  int w1 = inotify_add_watch(in, dir, IN_CREATE);
  int w2 = inotify_add_watch(in, path("f.txt"), IN_MODIFY | IN_CLOSE_WRITE);
  inotify_rm_watch(in, w1);
  char ib[4096];
  while (read(in, ib, sizeof ib) > 0) {}
  printf("inotify_wd %d\n", w2);
  out("inotify", in);

  int mfd = memfd_create("mymem", MFD_ALLOW_SEALING);
  if (mfd < 0 || write(mfd, "memfd-content", 13) != 13 || fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK) < 0) die("memfd");
  lseek(mfd, 2, SEEK_SET);
  out("memfd", mfd);
  int tx = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct itimerspec ix = {.it_value = {0, 1000000}};
  timerfd_settime(tx, 0, &ix, NULL);
  int tp = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct itimerspec ip = {.it_value = {0, 1000000}, .it_interval = {1, 0}};
  timerfd_settime(tp, 0, &ip, NULL);
  usleep(20000);
  out("timerfd_expired", tx);
  out("timerfd_periodic_expired", tp);
  // A datagram socket connected to a named socket of the test (outside
  // the tree, like /dev/log).
  int lg = socket(AF_UNIX, SOCK_DGRAM, 0);
  struct sockaddr_un la = {.sun_family = AF_UNIX};
  snprintf(la.sun_path, sizeof la.sun_path, "%s", path("log.sock"));
  if (connect(lg, (void *)&la, sizeof la) < 0) die("connect log.sock");
  out("log", lg);
  // A bound datagram socket with a queued datagram, then connected.
  int ds = socket(AF_UNIX, SOCK_DGRAM, 0), dc = socket(AF_UNIX, SOCK_DGRAM, 0);
  struct sockaddr_un da = {.sun_family = AF_UNIX};
  snprintf(da.sun_path, sizeof da.sun_path, "%s", path("dsrv.sock"));
  if (bind(ds, (void *)&da, sizeof da) < 0 || sendto(dc, "q1", 2, 0, (void *)&da, sizeof da) != 2) die("dgram bound");
  close(dc);
  if (connect(ds, (void *)&la, sizeof la) < 0) die("dgram bound connect");
  out("dgram_bound_conn", ds);

  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  int one = 1;
  int tl = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(tl, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(tl, (void *)&sa, sizeof sa) < 0 || listen(tl, 9) < 0) die("tcp listen");
  getsockname(tl, (void *)&sa, &sl);
  out("tcp_listen", tl);
  printf("tcp_listen_port %d\n", ntohs(sa.sin_port));
  int t6 = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  if (t6 >= 0 && setsockopt(t6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0 && bind(t6, (void *)&s6, sizeof s6) == 0 &&
      listen(t6, 3) == 0)
    out("tcp6_listen", t6);
  int u = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in ua = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct sockaddr_in up = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(9)};
  if (bind(u, (void *)&ua, sizeof ua) < 0 || connect(u, (void *)&up, sizeof up) < 0) die("udp");
  out("udp", u);

  // An established connection: the test connects to tcp_listen and sends
  // "hello-from-client"; we accept, wait for those bytes (unread: they
  // stay queued), send "hi-from-server" and set TCP_NODELAY.
  printf("ACCEPT\n");
  int c = accept(tl, NULL, NULL);
  if (c < 0) die("accept");
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  for (int i = 0; i < 500; i++) {
    int n = 0;
    ioctl(c, FIONREAD, &n);
    if (n >= 17) break;
    usleep(10000);
  }
  if (write(c, "hi-from-server", 14) != 14) die("tcp write");
  out("tcp_conn", c);
  // A second connection whose client sends "bye" and closes: CLOSE_WAIT.
  printf("ACCEPT2\n");
  int c2 = accept(tl, NULL, NULL);
  if (c2 < 0) die("accept2");
  for (int i = 0; i < 500; i++) {
    struct pollfd pf = {c2, POLLRDHUP, 0};
    int n = 0;
    ioctl(c2, FIONREAD, &n);
    if (poll(&pf, 1, 0) == 1 && n >= 3) break;
    usleep(10000);
  }
  out("tcp_closewait", c2);
  printf("READY\n");
  raise(SIGSTOP);
  pause();
  return 0;
}
