// counter: counts in memory and publishes "pid count" to a file every 10 ms.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/close_range.h>
int main(int argc, char **argv) {
    close_range(3, ~0U, 0); // fds leaked by whoever started the test
    const char *out = argv[1];
    char *heap = malloc(1 << 20);
    memset(heap, 7, 1 << 20);
    for (long n = 0; n < 100000; n++) {
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s.tmp", out);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) return 1;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        dprintf(fd, "%d %ld %d\n", getpid(), n, heap[12345] + heap[(1 << 20) - 1]);
        close(fd);
        rename(tmp, out);
        usleep(10000);
    }
    return 0;
}
