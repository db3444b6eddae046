// tcp: a listener and a client/server pair mid-conversation, both in this
// process, with unread data queued in both directions.
#include "fdcorpus.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

int main(void) {
  corpus_setup("tcp");
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  CHECK(bind(l, (void *)&sa, sizeof sa) == 0 && listen(l, 16) == 0, "listen");
  CHECK(getsockname(l, (void *)&sa, &sl) == 0, "getsockname");
  int c = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  CHECK(connect(c, (void *)&sa, sizeof sa) == 0, "connect");
  int s = accept(l, NULL, NULL);
  CHECK(s >= 0, "accept");
  char b[256] = {0};
  CHECK(write(c, "hello", 5) == 5 && readn(s, b, 5) == 5, "exchange");
  CHECK(write(s, "world", 5) == 5 && readn(c, b, 5) == 5, "exchange 2");
  CHECK(write(c, "queued-request", 14) == 14 && write(s, "queued-reply", 12) == 12, "queue");
  usleep(20000);
  corpus_ready();
  memset(b, 0, sizeof b);
  CHECK(readn(s, b, 14) == 14 && !memcmp(b, "queued-request", 14), "server queue %s", b);
  memset(b, 0, sizeof b);
  CHECK(readn(c, b, 12) == 12 && !memcmp(b, "queued-reply", 12), "client queue %s", b);
  for (int i = 0; i < 100; i++) {
    char m[32];
    int n = snprintf(m, sizeof m, "msg-%d", i);
    CHECK(write(c, m, n) == n && readn(s, b, n) == n && !memcmp(b, m, n), "round %d", i);
    CHECK(write(s, m, n) == n && readn(c, b, n) == n && !memcmp(b, m, n), "round back %d", i);
  }
  int nd = 0;
  socklen_t ndl = sizeof nd;
  CHECK(getsockopt(c, IPPROTO_TCP, TCP_NODELAY, &nd, &ndl) == 0 && nd, "TCP_NODELAY lost");
  int c2 = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(connect(c2, (void *)&sa, sizeof sa) == 0, "new connection to listener");
  int s2 = accept(l, NULL, NULL);
  CHECK(s2 >= 0 && write(c2, "x", 1) == 1 && readn(s2, b, 1) == 1, "new connection data");
  corpus_pass();
}
