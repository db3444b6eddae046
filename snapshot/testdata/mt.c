// mt: 4 worker threads count; a forked child shares a MAP_SHARED|MAP_ANONYMOUS
// page with the parent; main publishes "pid n t0 t1 t2 t3 shared childpid" every 10 ms.
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/close_range.h>
static volatile long cnt[4];
static volatile int tids[4];
static void *worker(void *a) {
    long i = (long)a;
    tids[i] = syscall(SYS_gettid);
    for (;;) { cnt[i]++; usleep(1000); }
    return 0;
}
int main(int argc, char **argv) {
    close_range(3, ~0U, 0); // fds leaked by whoever started the test
    const char *out = argv[1];
    volatile long *sh = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t child = fork();
    if (child == 0) {
        for (;;) { sh[0]++; usleep(1000); }
    }
    pthread_t th[4];
    for (long i = 0; i < 4; i++) pthread_create(&th[i], 0, worker, (void *)i);
    for (long n = 0; n < 100000; n++) {
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s.tmp", out);
        FILE *f = fopen(tmp, "w");
        if (!f) return 1;
        fprintf(f, "%d %ld %ld %ld %ld %ld %ld %d %d %d %d %d\n", getpid(), n, cnt[0], cnt[1], cnt[2], cnt[3], sh[0], child,
                tids[0], tids[1], tids[2], tids[3]);
        fclose(f);
        rename(tmp, out);
        usleep(10000);
    }
    kill(child, SIGKILL);
    return 0;
}
