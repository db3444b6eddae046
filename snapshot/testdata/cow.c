// cow: a writer thread sweeps a 64 MiB buffer page by page, stamping each
// page with its pass number after checking that the page still holds the
// previous pass's stamp. Memory saved at one instant (a consistent cut)
// never breaks that; memory copied while the program ran does. A region
// madvised MADV_DONTFORK ('D') and one MADV_WIPEONFORK ('W') must come back
// too. After every pass it writes "pid passes errors dok wok" to argv[1].
#include <fcntl.h>
#include <linux/close_range.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SIZE (64UL << 20)
#define SIDE (1UL << 20)

static char *buf, *dreg, *wreg;
static const char *out;

static int filled(const char *p, char c) {
    for (size_t i = 0; i < SIDE; i++)
        if (p[i] != c) return 0;
    return 1;
}

static void *writer(void *arg) {
    (void)arg;
    long errors = 0;
    for (long pass = 1;; pass++) {
        for (size_t i = 0; i < SIZE; i += 4096) {
            long *stamp = (long *)(buf + i);
            if (*stamp != pass - 1) errors++;
            *stamp = pass;
        }
        char line[128];
        int n = snprintf(line, sizeof line, "%d %ld %ld %d %d\n", getpid(), pass, errors, filled(dreg, 'D'), filled(wreg, 'W'));
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            write(fd, line, n);
            close(fd);
        }
        usleep(1000);
    }
    return NULL;
}

int main(int argc, char **argv) {
    close_range(3, ~0U, 0);
    out = argv[1];
    buf = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    dreg = mmap(NULL, SIDE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    wreg = mmap(NULL, SIDE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED || dreg == MAP_FAILED || wreg == MAP_FAILED) return 1;
    if (madvise(dreg, SIDE, MADV_DONTFORK) || madvise(wreg, SIDE, MADV_WIPEONFORK)) return 2;
    memset(dreg, 'D', SIDE);
    memset(wreg, 'W', SIDE);
    pthread_t t;
    pthread_create(&t, NULL, writer, NULL);
    for (;;) pause();
}
