/*
 * ftl_region.h - the shared-memory region between libftl.so (the LD_PRELOAD
 * shim, the writer) and libos (Go, the reader).
 *
 * THIS HEADER IS THE TRUTH. libos/region.go mirrors it field by field and
 * libos/region_test.go compiles a C program against this file and checks
 * every size, offset, constant and call name. Change both together and bump
 * FTL_REGION_VERSION whenever the layout or the meaning of a field changes.
 *
 * Layout (all offsets from the start of the file, all integers little-endian
 * native, all structs naturally aligned, no padding left implicit):
 *
 *   [0, FTL_HEADER_SIZE)          struct ftl_header
 *   [procs_off, +max_procs*sizeof(struct ftl_proc))   proc slots
 *   [conns_off, +max_conns*sizeof(struct ftl_conn))   connection entries
 *   [events_off, +events_size)    reserved: event log ring (later issues)
 *   [commit_off, +commit_size)    reserved: output-commit markers (later)
 *
 * Concurrency rules:
 *   - Counters (calls[], bytes_in, bytes_out, drop counters) are only ever
 *     changed with atomic adds and read with atomic loads.
 *   - A proc slot is claimed by CAS of state FREE/EXITED -> CLAIMING, filled,
 *     then published with a release store of LIVE; gen is bumped on every
 *     claim so a reader can tell a reused slot from the one it saw.
 *   - A conn entry is claimed by CAS of state FREE -> CLAIMING. Its
 *     descriptive fields (state, addresses, ...) are written under the
 *     entry's seqlock `seq` (odd while a write is in progress); a writer
 *     that finds seq odd skips its update instead of spinning, so the shim
 *     never blocks (signal handlers, fork children).
 *   - Readers never trust anything: they retry a torn read a few times and
 *     bound-check every length.
 */
#ifndef FTL_REGION_H
#define FTL_REGION_H

#include <stdint.h>

#define FTL_REGION_MAGIC 0x314e4745524c5446ULL /* "FTLREGN1" little-endian */
#define FTL_REGION_VERSION 1u

#define FTL_HEADER_SIZE 4096u
#define FTL_MAX_PROCS 256u
#define FTL_MAX_CONNS 4096u
#define FTL_MAX_CALLS 128u /* room in ftl_proc.calls; FTL_NCALLS <= this */
#define FTL_ADDR_MAX 112u  /* bytes of raw sockaddr kept (sockaddr_un is 110) */
#define FTL_COMM_LEN 16u
#define FTL_EVENTS_SIZE (4u << 20) /* reserved for the event log ring */
#define FTL_COMMIT_SIZE 4096u      /* reserved for output-commit markers */

/* ftl_proc.state */
#define FTL_PROC_FREE 0u
#define FTL_PROC_CLAIMING 1u
#define FTL_PROC_LIVE 2u
#define FTL_PROC_EXITED 3u

/* ftl_conn.slot_state (is the entry in use?) */
#define FTL_SLOT_FREE 0u
#define FTL_SLOT_CLAIMING 1u
#define FTL_SLOT_USED 2u

/* ftl_conn.state (the socket's state as the shim last saw it) */
#define FTL_CONN_OPEN 0u       /* created, neither listening nor connected */
#define FTL_CONN_LISTEN 1u
#define FTL_CONN_CONNECTING 2u /* non-blocking connect in progress */
#define FTL_CONN_ESTABLISHED 3u
#define FTL_CONN_CLOSED 4u     /* peer EOF seen or shut down both ways */

/* ftl_conn.flags */
#define FTL_CONNF_PAIR 1u /* made by socketpair: both ends are inside the program, so
                           * its bytes are not counted in ftl_proc.bytes_in/out */

/* Interposition policies (see FTL_CALLS). */
#define FTL_TRACK 1u  /* passed to libc; updates the connection table and/or bytes */
#define FTL_PASS 2u   /* passed to libc unchanged; only counted */
#define FTL_REFUSE 3u /* not passed; fails with an errno (none today) */

/*
 * FTL_CALLS(X): every interposed call, in counter order, with its policy
 * and why. X(name, policy, why). Index i of ftl_proc.calls counts calls of
 * the i-th entry made by the process (through the PLT, see docs/shim.md).
 * Append only: inserting renumbers counters and needs a version bump.
 */
#define FTL_CALLS(X)                                                                          \
  X(socket, FTL_TRACK, "new socket: entry with family/type, state open")                      \
  X(socketpair, FTL_TRACK, "two connected entries flagged PAIR (bytes not in proc totals)")                                      \
  X(bind, FTL_TRACK, "records the local address")                                             \
  X(listen, FTL_TRACK, "state listen")                                                        \
  X(accept, FTL_TRACK, "new established entry with local and peer address")                   \
  X(accept4, FTL_TRACK, "as accept")                                                          \
  X(connect, FTL_TRACK, "peer address; state connecting or established")                      \
  X(close, FTL_TRACK, "drops the fd's reference to its entry; entry freed at last reference")  \
  X(close_range, FTL_TRACK, "as close for every fd in the range (unless CLOSE_RANGE_CLOEXEC)") \
  X(fclose, FTL_TRACK, "as close for fileno(stream): libc closes it internally")              \
  X(shutdown, FTL_TRACK, "SHUT_RDWR marks the entry closed")                                  \
  X(dup, FTL_TRACK, "new fd shares the entry")                                                \
  X(dup2, FTL_TRACK, "new fd shares the entry; old target released")                          \
  X(dup3, FTL_TRACK, "as dup2")                                                               \
  X(fcntl, FTL_TRACK, "F_DUPFD/F_DUPFD_CLOEXEC as dup; everything else passed")               \
  X(fcntl64, FTL_TRACK, "as fcntl (the LFS name nginx and redis import)")                     \
  X(read, FTL_TRACK, "bytes in when the fd is a socket; 0 marks peer EOF")                    \
  X(__read_chk, FTL_TRACK, "as read (_FORTIFY_SOURCE name)")                                  \
  X(readv, FTL_TRACK, "as read")                                                              \
  X(recv, FTL_TRACK, "bytes in (not with MSG_PEEK)")                                          \
  X(__recv_chk, FTL_TRACK, "as recv (_FORTIFY_SOURCE name)")                                  \
  X(recvfrom, FTL_TRACK, "as recv")                                                           \
  X(__recvfrom_chk, FTL_TRACK, "as recv (_FORTIFY_SOURCE name)")                              \
  X(recvmsg, FTL_TRACK, "as recv")                                                            \
  X(recvmmsg, FTL_TRACK, "sum of msg_len of the received messages")                           \
  X(write, FTL_TRACK, "bytes out when the fd is a socket")                                    \
  X(writev, FTL_TRACK, "as write")                                                            \
  X(send, FTL_TRACK, "bytes out")                                                             \
  X(sendto, FTL_TRACK, "bytes out")                                                           \
  X(sendmsg, FTL_TRACK, "bytes out")                                                          \
  X(sendmmsg, FTL_TRACK, "sum of msg_len of the sent messages")                               \
  X(sendfile, FTL_TRACK, "bytes out when out_fd is a socket (payload never in user space)")   \
  X(sendfile64, FTL_TRACK, "as sendfile (the LFS name nginx imports)")                        \
  X(splice, FTL_TRACK, "bytes in when fd_in is a socket, out when fd_out is")                 \
  X(epoll_create, FTL_PASS, "counted; epoll sets are not tracked yet")                        \
  X(epoll_create1, FTL_PASS, "counted")                                                       \
  X(epoll_ctl, FTL_PASS, "counted")                                                           \
  X(epoll_wait, FTL_PASS, "counted; later the predictor orders events here")                  \
  X(epoll_pwait, FTL_PASS, "counted")                                                         \
  X(epoll_pwait2, FTL_PASS, "counted")                                                        \
  X(poll, FTL_PASS, "counted")                                                                \
  X(__poll_chk, FTL_PASS, "counted (_FORTIFY_SOURCE name, memcached imports it)")             \
  X(ppoll, FTL_PASS, "counted")                                                               \
  X(select, FTL_PASS, "counted")                                                              \
  X(pselect, FTL_PASS, "counted")                                                             \
  X(pipe, FTL_PASS, "counted; pipe bytes are not socket bytes")                               \
  X(pipe2, FTL_PASS, "counted")                                                               \
  X(eventfd, FTL_PASS, "counted")                                                             \
  X(clock_gettime, FTL_PASS, "counted; non-deterministic input for the event log later")     \
  X(gettimeofday, FTL_PASS, "counted")                                                        \
  X(time, FTL_PASS, "counted")                                                                \
  X(getrandom, FTL_PASS, "counted")                                                           \
  X(pthread_create, FTL_PASS, "counted")                                                      \
  X(fork, FTL_TRACK, "child takes its own proc slot and copies of the parent's entries")      \
  X(vfork, FTL_PASS, "counted in the parent; the child may only exec or _exit")               \
  X(execve, FTL_TRACK, "LD_PRELOAD and FTL_* put back into envp; slot marked exited")        \
  X(execv, FTL_TRACK, "as execve with environ")                                               \
  X(execvp, FTL_TRACK, "as execve with environ, PATH search by libc")                         \
  X(execvpe, FTL_TRACK, "as execve, PATH search by libc")                                     \
  X(execl, FTL_TRACK, "as execv")                                                             \
  X(execlp, FTL_TRACK, "as execvp")                                                           \
  X(execle, FTL_TRACK, "as execve")                                                           \
  X(fexecve, FTL_TRACK, "as execve")                                                          \
  X(execveat, FTL_TRACK, "as execve")                                                         \
  X(posix_spawn, FTL_TRACK, "LD_PRELOAD and FTL_* put back into envp")                        \
  X(posix_spawnp, FTL_TRACK, "as posix_spawn")                                                \
  X(sigaction, FTL_PASS, "counted; the shim installs no handlers of its own")                 \
  X(signal, FTL_PASS, "counted")                                                              \
  X(_exit, FTL_TRACK, "slot marked exited (destructors do not run)")                         \
  X(closefrom, FTL_TRACK, "as close for every fd >= lowfd")

enum ftl_call {
#define FTL_CALL_ENUM(name, policy, why) FTL_CALL_##name,
  FTL_CALLS(FTL_CALL_ENUM)
#undef FTL_CALL_ENUM
  FTL_NCALLS
};

/* The region header: 4096 bytes, written once by libos.CreateRegion except
 * for the atomic counters at the end. */
struct ftl_header {
  uint64_t magic;          /* FTL_REGION_MAGIC */
  uint32_t version;        /* FTL_REGION_VERSION */
  uint32_t header_size;    /* FTL_HEADER_SIZE */
  uint64_t region_size;    /* total bytes of the file */
  uint32_t max_procs;      /* FTL_MAX_PROCS */
  uint32_t proc_size;      /* sizeof(struct ftl_proc) */
  uint32_t max_conns;      /* FTL_MAX_CONNS */
  uint32_t conn_size;      /* sizeof(struct ftl_conn) */
  uint32_t max_calls;      /* FTL_MAX_CALLS */
  uint32_t ncalls;         /* FTL_NCALLS of the writer that created it */
  uint64_t procs_off;
  uint64_t conns_off;
  uint64_t events_off;     /* reserved for the event log */
  uint64_t events_size;
  uint64_t commit_off;     /* reserved for output-commit markers */
  uint64_t commit_size;
  uint64_t created_ns;     /* CLOCK_REALTIME at creation */
  /* atomic counters */
  uint64_t procs_dropped;  /* processes that found no free slot (not counted) */
  uint64_t conns_dropped;  /* sockets that found no free entry (bytes still in proc) */
  uint64_t reused_bytes_in;  /* bytes_in of exited slots taken over by new processes */
  uint64_t reused_bytes_out; /* (so totals over the run survive slot reuse) */
  uint8_t reserved[FTL_HEADER_SIZE - 136];
};

/* One process (one exec image of one pid). */
struct ftl_proc {
  uint32_t state;          /* FTL_PROC_* */
  uint32_t gen;            /* bumped on every claim */
  int32_t pid;             /* getpid(): the pid inside the program's pid namespace */
  int32_t ppid;
  uint64_t start_ticks;    /* /proc/self/stat field 22: same in every pid namespace */
  uint64_t start_ns;       /* CLOCK_REALTIME when the slot was claimed */
  uint64_t exit_ns;        /* CLOCK_REALTIME when marked exited, else 0 */
  uint64_t pidns;          /* inode of /proc/self/ns/pid, 0 if unknown */
  char comm[FTL_COMM_LEN]; /* PR_GET_NAME at claim, NUL padded */
  uint64_t bytes_in;       /* socket payload bytes read, socketpairs excluded (atomic) */
  uint64_t bytes_out;      /* socket payload bytes written, socketpairs excluded (atomic) */
  uint64_t reserved[6];
  uint64_t calls[FTL_MAX_CALLS]; /* per FTL_CALLS index (atomic) */
};

/* One socket as seen by one process (fds dup'ed from it share the entry). */
struct ftl_conn {
  uint32_t seq;            /* seqlock over the descriptive fields */
  uint32_t slot_state;     /* FTL_SLOT_* */
  uint32_t owner;          /* proc slot index */
  uint32_t owner_gen;      /* ftl_proc.gen of the owner when claimed */
  int32_t pid;             /* owner's pid (for readers) */
  int32_t fd;              /* first fd that referred to it */
  uint32_t refs;           /* fds of the owner referring to it (atomic) */
  uint32_t state;          /* FTL_CONN_* */
  uint16_t family;         /* AF_* */
  uint16_t type;           /* SOCK_STREAM, SOCK_DGRAM, ... (flags masked) */
  int32_t protocol;
  uint32_t flags;          /* FTL_CONNF_* */
  uint32_t reserved;
  uint32_t local_len;      /* bytes valid in local (<= FTL_ADDR_MAX) */
  uint32_t peer_len;       /* bytes valid in peer (<= FTL_ADDR_MAX) */
  uint64_t opened_ns;      /* CLOCK_REALTIME when the entry was made */
  uint64_t bytes_in;       /* atomic */
  uint64_t bytes_out;      /* atomic */
  uint8_t local[FTL_ADDR_MAX]; /* raw struct sockaddr */
  uint8_t peer[FTL_ADDR_MAX];
};

#define FTL_PROCS_OFF ((uint64_t)FTL_HEADER_SIZE)
#define FTL_CONNS_OFF (FTL_PROCS_OFF + (uint64_t)FTL_MAX_PROCS * sizeof(struct ftl_proc))
#define FTL_EVENTS_OFF (FTL_CONNS_OFF + (uint64_t)FTL_MAX_CONNS * sizeof(struct ftl_conn))
#define FTL_COMMIT_OFF (FTL_EVENTS_OFF + (uint64_t)FTL_EVENTS_SIZE)
#define FTL_REGION_SIZE (FTL_COMMIT_OFF + (uint64_t)FTL_COMMIT_SIZE)

_Static_assert(sizeof(struct ftl_header) == FTL_HEADER_SIZE, "header size");
_Static_assert(FTL_NCALLS <= FTL_MAX_CALLS, "too many calls for ftl_proc.calls");
_Static_assert(sizeof(struct ftl_proc) % 64 == 0, "proc slots are cache-line multiples");
_Static_assert(sizeof(struct ftl_conn) % 8 == 0, "conn entries are 8-byte aligned");

#endif
