// fill: touches N MiB of memory (half random, half repeating text, so it
// compresses about 2:1), prints "ready" and sleeps.
#include <linux/close_range.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    close_range(3, ~0U, 0);
    long mib = atol(argv[1]);
    size_t n = (size_t)mib << 20;
    char *p = malloc(n);
    unsigned long x = 88172645463325252UL;
    for (size_t i = 0; i < n; i += 4096) {
        for (size_t j = 0; j < 2048; j += 8) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; memcpy(p + i + j, &x, 8); }
        memcpy(p + i + 2048, "the quick brown fox jumps over the lazy dog. ", 45);
        memset(p + i + 2093, 'a', 4096 - 2093);
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
