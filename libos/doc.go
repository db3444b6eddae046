// Package libos is ftl's library OS: the Go side of what the LD_PRELOAD
// shim (libftl.so, shim/ in this repository) sees inside a wrapped program.
//
// This package owns the shared-memory region between the shim and Go: a
// file created by [CreateRegion] before the program starts, mapped
// MAP_SHARED by the shim in every process of the program's tree and
// read-only by [OpenRegion]. The C header shim/ftl_region.h is the truth
// for its layout; region.go mirrors it and region_test.go checks every
// size, offset, constant and call name against the header.
//
// Invariants:
//   - Only the shim writes the region after creation. Go never writes it.
//   - Readers never trust the region: counters are read atomically, the
//     descriptive fields of a connection entry under its seqlock, every
//     length is bounds-checked; a torn or garbage read yields a skipped
//     or odd-looking entry, never a panic.
//   - Proc slots may be stale (a process killed by SIGKILL never marks
//     itself exited); [Region.Procs] checks that the pid still names the
//     same process (pid namespace, pid and start time) and reports it as
//     exited otherwise.
//
// The launcher (libos/launcher) creates the region and starts programs with
// LD_PRELOAD and FTL_REGION set; `ftl ps` reads it.
package libos
