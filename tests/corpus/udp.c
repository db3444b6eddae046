// udp: two bound UDP sockets, one connected to the other; addresses must
// survive (queued datagrams may be dropped by a restore, so none are).
#include "fdcorpus.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

int main(void) {
  corpus_setup("udp");
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)}, b = a, x;
  socklen_t l = sizeof a;
  int sa = socket(AF_INET, SOCK_DGRAM, 0), sb = socket(AF_INET, SOCK_DGRAM, 0);
  CHECK(bind(sa, (void *)&a, sizeof a) == 0 && bind(sb, (void *)&b, sizeof b) == 0, "bind");
  getsockname(sa, (void *)&a, &l);
  l = sizeof b;
  getsockname(sb, (void *)&b, &l);
  CHECK(connect(sb, (void *)&a, sizeof a) == 0, "connect");
  corpus_ready();
  l = sizeof x;
  CHECK(getsockname(sa, (void *)&x, &l) == 0 && x.sin_port == a.sin_port, "port of a changed");
  l = sizeof x;
  CHECK(getpeername(sb, (void *)&x, &l) == 0 && x.sin_port == a.sin_port, "peer of b lost");
  char m[16] = {0};
  CHECK(send(sb, "ping", 4, 0) == 4, "send");
  l = sizeof x;
  CHECK(recvfrom(sa, m, sizeof m, 0, (void *)&x, &l) == 4 && !memcmp(m, "ping", 4) && x.sin_port == b.sin_port, "recv %s", m);
  CHECK(sendto(sa, "pong", 4, 0, (void *)&b, sizeof b) == 4 && recv(sb, m, sizeof m, 0) == 4, "reply");
  corpus_pass();
}
