/*
 * untraceable: a process holding kernel state the snapshot engine refuses
 * up front (tests/snapshot_refuse_test.go).
 *
 *   untraceable MODE [SECONDS]
 *
 * MODE:
 *   ptrace          fork a child and trace it with PTRACE_SEIZE; the child
 *                   is the process to checkpoint (its TracerPid is us)
 *   seccomp         install an allow-all seccomp filter (mode 2) in the
 *                   main thread
 *   seccomp-thread  install it in a second thread only (filters are per
 *                   thread: the main thread shows Seccomp: 0)
 *   seccomp-strict  a second thread enters strict mode (mode 1) and blocks
 *                   in read(2) on a pipe
 *   uring           keep an io_uring instance open (an fd
 *                   anon_inode:[io_uring])
 *   uring-map       map an io_uring's rings, then close its fd: only the
 *                   mapping is left
 *   plain           nothing (the control: a checkpoint must succeed)
 *
 *   untraceable exec-seccomp PROGRAM ARGS...
 *                   install an allow-all seccomp filter, then exec PROGRAM:
 *                   a filter inherited from an ancestor, as a container's
 *                   seccomp profile is
 *
 * A MODE prints "ready PID" (the pid to checkpoint) once set up, then sleeps; it
 * exits after SECONDS (default 60) so a leaked process cannot live long.
 * Exit status 3 and a line "setup: ..." on stderr if the kernel refuses
 * the set-up (the test skips then).
 *
 * Build: gcc -O1 -Wall -o untraceable untraceable.c -lpthread
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int seconds = 60;

static void setup_failed(const char *what) {
	fprintf(stderr, "setup: %s: %s\n", what, strerror(errno));
	exit(3);
}

static void ready(pid_t pid) {
	printf("ready %d\n", (int)pid);
	fflush(stdout);
}

static void sleep_out(void) {
	time_t end = time(NULL) + seconds;
	while (time(NULL) < end)
		sleep(1);
}

static int allow_all(void) {
	struct sock_filter f[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
	struct sock_fprog prog = {.len = 1, .filter = f};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

static int gate[2];	 /* the thread reports its set-up on gate[1] */
static int strict_in[2]; /* the strict thread blocks reading strict_in[0] */

static void *filter_thread(void *arg) {
	(void)arg;
	int rc = allow_all() == 0 ? 0 : errno;
	if (write(gate[1], &rc, sizeof rc) != sizeof rc)
		_exit(4);
	sleep_out();
	return NULL;
}

static void *strict_thread(void *arg) {
	(void)arg;
	int rc = 0;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0)
		rc = errno;
	/* Strict mode allows read, write, _exit and sigreturn only. */
	if (write(gate[1], &rc, sizeof rc) != sizeof rc || rc != 0)
		syscall(SYS_exit, 4);
	char c;
	while (read(strict_in[0], &c, 1) > 0)
		;
	syscall(SYS_exit, 0);
	return NULL;
}

static void in_thread(void *(*fn)(void *)) {
	pthread_t th;
	if (pipe(gate) != 0)
		setup_failed("pipe");
	if (pthread_create(&th, NULL, fn, NULL) != 0)
		setup_failed("pthread_create");
	int rc;
	if (read(gate[0], &rc, sizeof rc) != sizeof rc)
		setup_failed("read gate");
	if (rc != 0) {
		errno = rc;
		setup_failed("seccomp in a thread");
	}
	ready(getpid());
	sleep_out();
	exit(0);
}

static int uring(void) {
	struct io_uring_params p;
	memset(&p, 0, sizeof p);
	int fd = (int)syscall(SYS_io_uring_setup, 4, &p);
	if (fd < 0)
		setup_failed("io_uring_setup");
	return fd;
}

static void trace_child(void) {
	pid_t child = fork();
	if (child < 0)
		setup_failed("fork");
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		sleep_out();
		_exit(0);
	}
	if (ptrace(PTRACE_SEIZE, child, 0, 0) != 0) {
		kill(child, SIGKILL);
		setup_failed("PTRACE_SEIZE");
	}
	ready(child);
	time_t end = time(NULL) + seconds + 5;
	while (time(NULL) < end) {
		int st;
		pid_t w = waitpid(child, &st, __WALL | WNOHANG);
		if (w == child && (WIFEXITED(st) || WIFSIGNALED(st)))
			exit(0);
		if (w == child && WIFSTOPPED(st)) {
			/* Pass signals on; a group-stop is left to PTRACE_LISTEN. */
			int sig = WSTOPSIG(st);
			if (st >> 16 == PTRACE_EVENT_STOP)
				ptrace(PTRACE_LISTEN, child, 0, 0);
			else
				ptrace(PTRACE_CONT, child, 0, sig);
			continue;
		}
		usleep(20000);
	}
	kill(child, SIGKILL);
	exit(0);
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: untraceable MODE [SECONDS]\n");
		return 2;
	}
	const char *mode = argv[1];
	if (strcmp(mode, "exec-seccomp") == 0) {
		if (argc < 3) {
			fprintf(stderr, "usage: untraceable exec-seccomp PROGRAM ARGS...\n");
			return 2;
		}
		if (allow_all() != 0)
			setup_failed("seccomp");
		execvp(argv[2], argv + 2);
		setup_failed(argv[2]);
	}
	if (argc > 2)
		seconds = atoi(argv[2]);
	if (strcmp(mode, "ptrace") == 0) {
		trace_child();
	} else if (strcmp(mode, "seccomp") == 0) {
		if (allow_all() != 0)
			setup_failed("seccomp");
		ready(getpid());
	} else if (strcmp(mode, "seccomp-thread") == 0) {
		in_thread(filter_thread);
	} else if (strcmp(mode, "seccomp-strict") == 0) {
		if (pipe(strict_in) != 0)
			setup_failed("pipe");
		in_thread(strict_thread);
	} else if (strcmp(mode, "uring") == 0) {
		uring();
		ready(getpid());
	} else if (strcmp(mode, "uring-map") == 0) {
		int fd = uring();
		void *sq = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
		if (sq == MAP_FAILED)
			setup_failed("mmap io_uring");
		close(fd);
		ready(getpid());
	} else if (strcmp(mode, "plain") == 0) {
		ready(getpid());
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	sleep_out();
	return 0;
}
