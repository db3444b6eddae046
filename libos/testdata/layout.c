// layout.c - prints every constant, size, offset and call of
// shim/ftl_region.h, one per line, for region_test.go to compare with the
// Go mirror. Built by the test: gcc -I<repo>/shim layout.c.
#include <stddef.h>
#include <stdio.h>

#include "ftl_region.h"

#define K(name) printf("const %s %llu\n", #name, (unsigned long long)(name));
#define F(st, field) \
  printf("field %s %s %zu %zu\n", #st, #field, offsetof(struct st, field), sizeof(((struct st *)0)->field));
#define CALL(name, policy, why) printf("call %d %s %u %s\n", FTL_CALL_##name, #name, policy, why);

int main(void) {
  K(FTL_REGION_MAGIC) K(FTL_REGION_VERSION) K(FTL_HEADER_SIZE) K(FTL_MAX_PROCS) K(FTL_MAX_CONNS)
  K(FTL_MAX_CALLS) K(FTL_ADDR_MAX) K(FTL_COMM_LEN) K(FTL_EVENTS_SIZE) K(FTL_COMMIT_SIZE)
  K(FTL_PROC_FREE) K(FTL_PROC_CLAIMING) K(FTL_PROC_LIVE) K(FTL_PROC_EXITED)
  K(FTL_SLOT_FREE) K(FTL_SLOT_CLAIMING) K(FTL_SLOT_USED)
  K(FTL_CONN_OPEN) K(FTL_CONN_LISTEN) K(FTL_CONN_CONNECTING) K(FTL_CONN_ESTABLISHED) K(FTL_CONN_CLOSED) K(FTL_CONNF_PAIR)
  K(FTL_TRACK) K(FTL_PASS) K(FTL_REFUSE) K(FTL_NCALLS)
  K(FTL_PROCS_OFF) K(FTL_CONNS_OFF) K(FTL_EVENTS_OFF) K(FTL_COMMIT_OFF) K(FTL_REGION_SIZE)
  printf("size ftl_header %zu\nsize ftl_proc %zu\nsize ftl_conn %zu\n", sizeof(struct ftl_header),
         sizeof(struct ftl_proc), sizeof(struct ftl_conn));
  F(ftl_header, magic) F(ftl_header, version) F(ftl_header, header_size) F(ftl_header, region_size)
  F(ftl_header, max_procs) F(ftl_header, proc_size) F(ftl_header, max_conns) F(ftl_header, conn_size)
  F(ftl_header, max_calls) F(ftl_header, ncalls) F(ftl_header, procs_off) F(ftl_header, conns_off)
  F(ftl_header, events_off) F(ftl_header, events_size) F(ftl_header, commit_off) F(ftl_header, commit_size)
  F(ftl_header, created_ns) F(ftl_header, procs_dropped) F(ftl_header, conns_dropped) F(ftl_header, reused_bytes_in)
  F(ftl_header, reused_bytes_out) F(ftl_header, reserved)
  F(ftl_proc, state) F(ftl_proc, gen) F(ftl_proc, pid) F(ftl_proc, ppid) F(ftl_proc, start_ticks)
  F(ftl_proc, start_ns) F(ftl_proc, exit_ns) F(ftl_proc, pidns) F(ftl_proc, comm) F(ftl_proc, bytes_in)
  F(ftl_proc, bytes_out) F(ftl_proc, reserved) F(ftl_proc, calls)
  F(ftl_conn, seq) F(ftl_conn, slot_state) F(ftl_conn, owner) F(ftl_conn, owner_gen) F(ftl_conn, pid)
  F(ftl_conn, fd) F(ftl_conn, refs) F(ftl_conn, state) F(ftl_conn, family) F(ftl_conn, type)
  F(ftl_conn, protocol) F(ftl_conn, flags) F(ftl_conn, reserved) F(ftl_conn, local_len) F(ftl_conn, peer_len) F(ftl_conn, opened_ns)
  F(ftl_conn, bytes_in) F(ftl_conn, bytes_out) F(ftl_conn, local) F(ftl_conn, peer)
  FTL_CALLS(CALL)
  return 0;
}
