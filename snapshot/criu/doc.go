// Package criu is ftl's optional second snapshot engine: it checkpoints and
// restores a process tree by driving an installed CRIU (>= 4.2) over CRIU's
// swrk RPC, with the protocol types of github.com/checkpoint-restore/go-criu.
// It exists as a battle-tested fallback for users, a differential check for
// the default engine (package snapshot), and a benchmark anchor. The default
// engine never depends on it.
//
// Images are CRIU's own format, written by CRIU into the image directory,
// together with CRIU's logs (dump.log, restore.log) and a marker file
// (MarkerFile, "criu <version>") that tells an ftl CRIU image from an image
// of the default engine.
//
// Invariants:
//   - Nothing here is usable unless Find locates a criu >= 4.2 ($FTL_CRIU,
//     then PATH, then /usr/local/sbin/criu); every entry point fails with an
//     error wrapping ErrUnavailable otherwise, never with a half-done image.
//   - One Dump or Restore runs one short-lived `criu swrk` child over a
//     close-on-exec SOCK_SEQPACKET socketpair; the child's end is closed in
//     the parent right after start, so a crashing criu cannot hang the
//     caller, and a reply that does not fit the receive buffer is an error,
//     never a silently truncated message.
//   - Cancelling the context kills the criu child. The kernel then detaches
//     a half-dumped tree and it keeps running (with TCPEstablished its
//     connections may stay behind CRIU's network lock). A restore cancelled
//     mid-way can leave tasks CRIU had already created: CRIU cleans up only
//     after its own failures, not after being killed.
//   - The marker is written last, only after CRIU reported a successful
//     dump: a directory without it is not a finished ftl CRIU image.
//
// What is supported, partly, or refused is tabled in support.go.
package criu

import "errors"

// Sentinel errors of the CRIU engine.
var (
	// ErrUnavailable: no criu >= 4.2 that can be run here.
	ErrUnavailable = errors.New("criu engine unavailable")
	// ErrDump: criu ran but reported a failed dump.
	ErrDump = errors.New("criu dump failed")
	// ErrRestore: criu ran but reported a failed restore.
	ErrRestore = errors.New("criu restore failed")
	// ErrNotImage: the directory holds no CRIU image written by this engine.
	ErrNotImage = errors.New("not a criu image")
	// ErrImageExists: a dump would overwrite an existing image.
	ErrImageExists = errors.New("directory already holds an image")
	// ErrProtocol: criu's RPC reply was truncated, malformed or unexpected.
	ErrProtocol = errors.New("criu rpc protocol error")
)
