/* hog: fills argv[1] MiB of anonymous memory with a pseudo-random pattern
 * (so no page is zero or shared), writes "ready\n" to the file argv[2],
 * then idles. On SIGUSR1 it rewrites argv[2] with the checksum of its
 * memory, fixed width, so a restored copy can be checked against the
 * original. */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t want_sum;

static void on_usr1(int sig) { (void)sig; want_sum = 1; }

int main(int argc, char **argv) {
	if (argc != 3)
		return 2;
	size_t n = (size_t)atol(argv[1]) << 20;
	uint64_t *mem = malloc(n);
	if (!mem)
		return 1;
	uint64_t x = 88172645463325252ull;
	for (size_t i = 0; i < n / 8; i++) {
		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		mem[i] = x;
	}
	signal(SIGUSR1, on_usr1);
	int fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return 1;
	char buf[32];
	memcpy(buf, "ready               \n", 21);
	if (pwrite(fd, buf, 21, 0) != 21)
		return 1;
	/* A flag polled every 10 ms, not pause(): a signal that arrives
	 * between the check and pause() would be lost. */
	struct timespec ts = {0, 10 * 1000 * 1000};
	for (;;) {
		nanosleep(&ts, NULL);
		if (!want_sum)
			continue;
		want_sum = 0;
		uint64_t sum = 0;
		for (size_t i = 0; i < n / 8; i++)
			sum = sum * 31 + mem[i];
		snprintf(buf, sizeof buf, "%020llu\n", (unsigned long long)sum);
		if (pwrite(fd, buf, 21, 0) != 21)
			return 1;
	}
}
