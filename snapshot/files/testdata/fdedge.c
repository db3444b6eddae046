// fdedge MODE: helper for the edge cases of snapshot/files' tests.
//   refuse : holds a netlink socket, a pidfd and /dev/kmsg (refused kinds); fd 3 is
//            a pipe from the test (its other end is outside the "tree").
//   share  : a pipe and a TCP listener, then fork: parent and child share them.
//            Prints "child PID".
//   rights : a socketpair whose queue holds a message carrying an fd.
//   plain  : nothing but stdio (the test makes it a terminal).
//   echo   : TCP echo server on 127.0.0.1 (prints "port N"), one connection.
// Each prints "READY" and stops itself (echo: after accepting); 60 s alarm.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int listener(void) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(l, (void *)&sa, sizeof sa) < 0 || listen(l, 4) < 0) return -1;
  getsockname(l, (void *)&sa, &sl);
  printf("port %d\n", ntohs(sa.sin_port));
  return l;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  setvbuf(stdout, NULL, _IONBF, 0);
  alarm(60);
  if (!strcmp(argv[1], "refuse")) {
    close_range(4, ~0U, 0);
    printf("netlink %d\n", socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE));
    printf("pidfd %d\n", (int)syscall(SYS_pidfd_open, getpid(), 0));
    int km = open("/dev/kmsg", O_RDONLY);
    if (km >= 0) printf("device %d\n", km);
  } else if (!strcmp(argv[1], "share")) {
    close_range(3, ~0U, 0);
    int p[2];
    if (pipe(p) < 0 || listener() < 0) return 1;
    pid_t c = fork();
    if (c == 0) {
      raise(SIGSTOP);
      pause();
      return 0;
    }
    printf("child %d\n", c);
  } else if (!strcmp(argv[1], "rights")) {
    close_range(3, ~0U, 0);
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) < 0) return 1;
    char data = 'x', cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&data, 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    int one = 1;
    memcpy(CMSG_DATA(cm), &one, sizeof one);
    if (sendmsg(sp[0], &mh, 0) != 1) return 1;
    printf("receiver %d\n", sp[1]);
  } else if (!strcmp(argv[1], "plain")) {
    close_range(3, ~0U, 0);
  } else if (!strcmp(argv[1], "echo")) {
    close_range(3, ~0U, 0);
    int l = listener();
    if (l < 0) return 1;
    printf("READY\n");
    int c = accept(l, NULL, NULL);
    char buf[4096];
    for (;;) {
      ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0) return 0;
      if (write(c, buf, n) != n) return 1;
    }
  }
  printf("READY\n");
  raise(SIGSTOP);
  pause();
  return 0;
}
