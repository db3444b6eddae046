// unixsock: a named listening unix socket, an accepted connection whose
// client is in the same process (data queued both ways), and a bound
// datagram socket with a client connected to it and a queued datagram.
#include "fdcorpus.h"
#include <sys/socket.h>
#include <sys/un.h>

static struct sockaddr_un addr(const char *dir, const char *n) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s/%s", dir, n);
  return a;
}

int main(void) {
  corpus_setup("unixsock");
  char *dir = corpus_dir();
  struct sockaddr_un la = addr(dir, "listen.sock"), da = addr(dir, "dgram.sock");
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  CHECK(bind(l, (void *)&la, sizeof la) == 0 && listen(l, 5) == 0, "bind/listen");
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  CHECK(connect(c, (void *)&la, sizeof la) == 0, "connect");
  int a = accept(l, NULL, NULL);
  CHECK(a >= 0, "accept");
  CHECK(write(c, "request", 7) == 7 && write(a, "reply", 5) == 5, "write");
  int ds = socket(AF_UNIX, SOCK_DGRAM, 0);
  CHECK(bind(ds, (void *)&da, sizeof da) == 0, "dgram bind");
  int dc = socket(AF_UNIX, SOCK_DGRAM, 0);
  CHECK(connect(dc, (void *)&da, sizeof da) == 0, "dgram connect");
  CHECK(send(dc, "dgram1", 6, 0) == 6, "dgram send");
  corpus_ready();
  char b[64] = {0};
  CHECK(read(a, b, sizeof b) == 7 && !memcmp(b, "request", 7), "server got %s", b);
  memset(b, 0, sizeof b);
  CHECK(read(c, b, sizeof b) == 5 && !memcmp(b, "reply", 5), "client got %s", b);
  memset(b, 0, sizeof b);
  CHECK(recv(ds, b, sizeof b, 0) == 6 && !memcmp(b, "dgram1", 6), "queued datagram %s", b);
  CHECK(send(dc, "dgram2", 6, 0) == 6, "dgram send after");
  memset(b, 0, sizeof b);
  CHECK(recv(ds, b, sizeof b, 0) == 6 && !memcmp(b, "dgram2", 6), "datagram after %s", b);
  int c2 = socket(AF_UNIX, SOCK_STREAM, 0);
  CHECK(connect(c2, (void *)&la, sizeof la) == 0, "new connect to listener");
  int a2 = accept(l, NULL, NULL);
  CHECK(a2 >= 0 && write(c2, "hi", 2) == 2 && read(a2, b, 2) == 2, "new connection");
  unlink(la.sun_path);
  unlink(da.sun_path);
  rmdir(dir);
  corpus_pass();
}
