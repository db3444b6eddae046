// Package sys holds the raw Linux bindings the snapshot engine needs and
// golang.org/x/sys/unix v0.49.0 lacks: PTRACE_SEIZE with options, xstate
// regsets, signal masks and queues through ptrace, rseq configuration,
// clone3 arguments, prctl_mm_map and the kernel's sigaction layout.
//
// Every ptrace call must come from the OS thread that attached the tracee
// (callers lock their goroutine to one thread); nothing here checks that.
package sys

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ptrace requests and constants missing from x/sys.
const (
	PtraceGetSigmask   = 0x420a
	PtraceSetSigmask   = 0x420b
	PtracePeekSiginfo  = 0x4209
	PeekSiginfoShared  = 1
	PtraceGetRseqConf  = 0x420f
	PtraceEventStop    = 0x80
	NTX86Xstate        = 0x202
	PRSetMM            = 35
	PRSetMMMap         = 14
	PRGetTidAddress    = 40
	MapFixedNoreplace  = 0x100000
	RseqFlagUnregister = 1
)

func ptrace(req, pid int, addr, data uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(pid), addr, data, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// Seize attaches with PTRACE_SEIZE and the given PTRACE_O_* options.
func Seize(pid int, opts int) error {
	return ptrace(unix.PTRACE_SEIZE, pid, 0, uintptr(opts))
}

// GetXstate reads the NT_X86_XSTATE regset into buf and returns its length.
func GetXstate(tid int, buf []byte) (int, error) {
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	if err := ptrace(unix.PTRACE_GETREGSET, tid, NTX86Xstate, uintptr(unsafe.Pointer(&iov))); err != nil {
		return 0, err
	}
	return int(iov.Len), nil
}

// SetXstate writes the NT_X86_XSTATE regset.
func SetXstate(tid int, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	return ptrace(unix.PTRACE_SETREGSET, tid, NTX86Xstate, uintptr(unsafe.Pointer(&iov)))
}

// GetSigmask returns the blocked-signal mask of a stopped thread.
func GetSigmask(tid int) (uint64, error) {
	var m uint64
	err := ptrace(PtraceGetSigmask, tid, 8, uintptr(unsafe.Pointer(&m)))
	return m, err
}

// SetSigmask sets the blocked-signal mask of a stopped thread.
func SetSigmask(tid int, m uint64) error {
	return ptrace(PtraceSetSigmask, tid, 8, uintptr(unsafe.Pointer(&m)))
}

// Siginfo is the kernel's 128-byte siginfo_t, kept opaque.
type Siginfo [128]byte

// Signo is the signal number of a siginfo.
func (s *Siginfo) Signo() int { return int(*(*int32)(unsafe.Pointer(&s[0]))) }

type peekSiginfoArgs struct {
	Off   uint64
	Flags uint32
	Nr    int32
}

// PeekSiginfo returns the queued signals of a thread (shared=false) or of
// its thread group (shared=true), without dequeuing them.
func PeekSiginfo(tid int, shared bool) ([]Siginfo, error) {
	var out []Siginfo
	buf := make([]Siginfo, 32)
	for {
		a := peekSiginfoArgs{Off: uint64(len(out)), Nr: int32(len(buf))}
		if shared {
			a.Flags = PeekSiginfoShared
		}
		r, _, e := unix.Syscall6(unix.SYS_PTRACE, PtracePeekSiginfo, uintptr(tid), uintptr(unsafe.Pointer(&a)), uintptr(unsafe.Pointer(&buf[0])), 0, 0)
		if e != 0 {
			return out, e
		}
		if r == 0 {
			return out, nil
		}
		out = append(out, buf[:r]...)
		if len(out) > 4096 {
			return out, nil
		}
	}
}

// RseqConf is struct ptrace_rseq_configuration.
type RseqConf struct {
	Pointer   uint64
	Size      uint32
	Signature uint32
	Flags     uint32
	Pad       uint32
}

// GetRseq returns the rseq registration of a stopped thread.
func GetRseq(tid int) (RseqConf, error) {
	var c RseqConf
	err := ptrace(PtraceGetRseqConf, tid, unsafe.Sizeof(c), uintptr(unsafe.Pointer(&c)))
	return c, err
}

// GetRobustList returns the robust futex list head and length of a thread.
func GetRobustList(tid int) (head, length uint64, err error) {
	_, _, e := unix.Syscall(unix.SYS_GET_ROBUST_LIST, uintptr(tid), uintptr(unsafe.Pointer(&head)), uintptr(unsafe.Pointer(&length)))
	if e != 0 {
		return 0, 0, e
	}
	return head, length, nil
}

// CloneArgs is struct clone_args (size 88, CLONE_ARGS_SIZE_VER2).
type CloneArgs struct {
	Flags      uint64
	Pidfd      uint64
	ChildTid   uint64
	ParentTid  uint64
	ExitSignal uint64
	Stack      uint64
	StackSize  uint64
	TLS        uint64
	SetTid     uint64
	SetTidSize uint64
	Cgroup     uint64
}

// PrctlMMMap is struct prctl_mm_map.
type PrctlMMMap struct {
	StartCode, EndCode, StartData, EndData uint64
	StartBrk, Brk, StartStack              uint64
	ArgStart, ArgEnd, EnvStart, EnvEnd     uint64
	Auxv                                   uint64
	AuxvSize                               uint32
	ExeFd                                  uint32
}

// KSigaction is the kernel's struct sigaction on x86_64.
type KSigaction struct {
	Handler  uint64
	Flags    uint64
	Restorer uint64
	Mask     uint64
}

// Bytes returns the in-memory layout of a value of fixed size.
func Bytes[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}

// GetSiginfo returns the siginfo of a thread in a signal-delivery-stop.
func GetSiginfo(tid int) (Siginfo, error) {
	var si Siginfo
	err := ptrace(unix.PTRACE_GETSIGINFO, tid, 0, uintptr(unsafe.Pointer(&si)))
	return si, err
}

// DetachSig detaches from tid, delivering sig (0 for none).
func DetachSig(tid, sig int) error {
	return ptrace(unix.PTRACE_DETACH, tid, 0, uintptr(sig))
}
