// Package files dumps and restores the open file descriptions of a frozen
// process tree: regular (also deleted-but-open) files, directories,
// character devices, pipes, FIFOs, unix, TCP and UDP sockets, eventfd,
// epoll, timerfd, signalfd, inotify and memfd.
//
// It owns the description records (Desc), the per-process fd lists (FD) and
// the support table (support.go) that says what is restored fully, partly
// (and how), or refused (and why). It does not own the target's fd table:
// the engine core installs each *os.File returned by Restorer.File at its
// number; this package only touches a target through Restorer.Finish's
// Injector (epoll interest lists, which are keyed by the target's own fd
// numbers).
//
// Invariants:
//   - Dumper.Add is called while the tree is frozen; every fd it sees is
//     pulled into this process with pidfd_getfd and held until Close, so a
//     description cannot vanish between Add and Descs.
//   - Two fds that kcmp(KCMP_FILE)-equal are one Desc, restored once.
//   - Dump reads state without consuming it (tee for pipes, MSG_PEEK with
//     SO_PEEK_OFF for socket queues, TCP_REPAIR for TCP); the only state it
//     leaves changed is TCP repair mode when KeepRepair(true) says the tree
//     will be killed (so its sockets die without a FIN or RST).
//   - A kind the restorer cannot rebuild is refused at dump time with an
//     error wrapping ErrUnsupported that names the process, fd and kind.
//   - Restorer.File creates each description once and caches it; Close
//     closes every file it created (the targets hold their own copies).
package files
