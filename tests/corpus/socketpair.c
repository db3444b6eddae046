// socketpair: stream, dgram and seqpacket pairs with data queued both ways.
#include "fdcorpus.h"
#include <sys/socket.h>

int main(void) {
  corpus_setup("socketpair");
  int s[2], d[2], q[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0, "stream pair");
  CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, d) == 0, "dgram pair");
  CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, q) == 0, "seqpacket pair");
  CHECK(write(s[0], "a->b", 4) == 4 && write(s[1], "b->a!", 5) == 5, "stream write");
  CHECK(send(d[0], "one", 3, 0) == 3 && send(d[0], "second", 6, 0) == 6 && send(d[1], "back", 4, 0) == 4, "dgram send");
  CHECK(send(q[1], "rec1", 4, 0) == 4 && send(q[1], "record2", 7, 0) == 7, "seqpacket send");
  corpus_ready();
  char b[64] = {0};
  CHECK(read(s[1], b, sizeof b) == 4 && !memcmp(b, "a->b", 4), "stream b got %s", b);
  memset(b, 0, sizeof b);
  CHECK(read(s[0], b, sizeof b) == 5 && !memcmp(b, "b->a!", 5), "stream a got %s", b);
  memset(b, 0, sizeof b);
  CHECK(recv(d[1], b, sizeof b, 0) == 3 && !memcmp(b, "one", 3), "dgram 1 %s", b);
  memset(b, 0, sizeof b);
  CHECK(recv(d[1], b, sizeof b, 0) == 6 && !memcmp(b, "second", 6), "dgram 2 %s", b);
  memset(b, 0, sizeof b);
  CHECK(recv(d[0], b, sizeof b, 0) == 4 && !memcmp(b, "back", 4), "dgram back %s", b);
  memset(b, 0, sizeof b);
  CHECK(recv(q[0], b, sizeof b, 0) == 4 && !memcmp(b, "rec1", 4), "seqpacket 1 %s", b);
  memset(b, 0, sizeof b);
  CHECK(recv(q[0], b, sizeof b, 0) == 7 && !memcmp(b, "record2", 7), "seqpacket 2 %s", b);
  CHECK(write(s[0], "x", 1) == 1 && read(s[1], b, 1) == 1 && b[0] == 'x', "stream still connected");
  corpus_pass();
}
