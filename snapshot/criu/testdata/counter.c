/* counter: increments a counter in memory every 10 ms and stores it,
 * fixed width, at offset 0 of the file named by argv[1], so the file's size
 * never changes (CRIU refuses to restore a file whose size changed). */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
	if (argc != 2)
		return 2;
	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return 1;
	struct timespec ts = {0, 10 * 1000 * 1000};
	char buf[32];
	for (unsigned long n = 1;; n++) {
		int len = snprintf(buf, sizeof buf, "%020lu\n", n);
		if (pwrite(fd, buf, len, 0) != len)
			return 1;
		nanosleep(&ts, NULL);
	}
}
