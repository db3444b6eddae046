/* closerange.c: close_range/closefrom through the shim, before any socket is
 * tracked (ftl_fdmax still -1) and after, with an unbounded upper end. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/close_range.h>

int main(void) {
  if (close_range(3, ~0U, 0) != 0) { perror("close_range before sockets"); return 1; }
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) { perror("socket"); return 1; }
  if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) { perror("close_range cloexec"); return 1; }
  if (close_range(3, ~0U, 0) != 0) { perror("close_range after socket"); return 1; }
  closefrom(3);
  puts("ok");
  return 0;
}
