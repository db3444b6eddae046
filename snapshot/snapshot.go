// Package snapshot checkpoints and restores whole process trees without
// CRIU: it freezes every thread with ptrace, reads memory with
// process_vm_readv, reads per-task kernel state by injecting system calls
// through a `syscall` instruction borrowed from the target's vDSO, and
// writes an image (package snapshot/image). Restore recreates every process
// with its exact pid and every thread with its exact tid through clone3
// set_tid injected into stub processes, rebuilds the address spaces, then
// registers, and lets the whole tree go at once.
//
// Invariants:
//   - Every ptrace call of one Dump or Restore is made from one OS thread:
//     both lock their goroutine for their whole run and must not be called
//     concurrently on one goroutine.
//   - The tree is frozen from the first seize to the last detach; a dump
//     that fails detaches (or, for a kill-after-dump, leaves running) every
//     task it froze and removes its temporary image.
//   - Restore checks the whole image (manifest, versions, checksums, vDSO,
//     pids free) before it creates any process; a restore that fails later
//     kills every process it created.
//
// What is supported, partly, or refused is tabled in support.go.
package snapshot

import "errors"

// Sentinel errors of the engine.
var (
	ErrNoProcess    = errors.New("no such process")
	ErrExited       = errors.New("process exited")
	ErrPidTaken     = errors.New("pid already in use")
	ErrVdsoMismatch = errors.New("vDSO of this kernel differs from the image's")
	ErrUnsupported  = errors.New("unsupported state")
	ErrEmptyTree    = errors.New("no process to checkpoint")
)
