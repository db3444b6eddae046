package snapshot

// Level says how far the engine restores one kind of process state.
type Level string

// Support levels.
const (
	Supported Level = "supported"
	Partly    Level = "partly"
	Refused   Level = "refused"
)

// Support is one row of the engine's support table: what, how well, and
// how (partly) or why (refused). File descriptors have their own table in
// snapshot/files (files.Table).
type Support struct {
	What  string
	Level Level
	Note  string
}

// Table is what the engine core restores.
var Table = []Support{
	{"pids and tids", Supported, "exact, through clone3 set_tid injected into stubs; a fresh pid namespace for ftl-launched trees, the caller's for --pid trees (pids must be free)"},
	{"process tree", Supported, "parents as dumped; top-level processes become children of the restorer (ftl's init); session leaders call setsid, process groups are re-joined"},
	{"sessions and process groups", Partly, "a session or group whose leader is outside the tree is inherited from the restorer; a member created under a parent of another session cannot join it"},
	{"registers, fs/gs base, xstate", Supported, "GETREGS/SETREGS, NT_X86_XSTATE sized at run time; syscall restart fixed up (-512/-513/-514 restart, -516 becomes -EINTR)"},
	{"signal masks, dispositions", Supported, "per-thread masks via PTRACE_SETSIGMASK; rt_sigaction injected per caught or ignored signal"},
	{"pending signals", Supported, "thread and process queues read with PTRACE_PEEKSIGINFO and requeued with rt_tgsigqueueinfo/rt_sigqueueinfo (siginfo kept)"},
	{"rseq, robust list, clear_child_tid", Supported, "re-registered per thread at the image's addresses"},
	{"thread names", Supported, "PR_SET_NAME per thread"},
	{"rlimits", Partly, "set inside the target; a hard limit above the restorer's cannot be raised without CAP_SYS_RESOURCE: set to what is allowed, reported as a warning"},
	{"credentials", Partly, "uids, gids and groups (setresuid/setresgid/setgroups per thread); capability sets are what the uid change leaves"},
	{"cwd, root, umask, personality", Supported, "chdir/chroot/umask/personality injected"},
	{"mm fields, auxv, exe link", Supported, "PR_SET_MM_MAP (start/end of code, data, brk, stack, args, env, auxv, exe_fd)"},
	{"madvise, mlock and mseal flags of mappings", Partly, "per VMA from smaps VmFlags (vmflags.go: vmFlagTable), set again once the pages are in: DONTFORK, WIPEONFORK, HUGEPAGE, NOHUGEPAGE, DONTDUMP, MERGEABLE, SEQUENTIAL, RANDOM (madvise), mlock/mlock2 ONFAULT (a failure, e.g. RLIMIT_MEMLOCK, is a warning; huge-page and KSM advice refused by the kernel too), mseal last; not kept: mlockall(MCL_FUTURE) (no /proc file shows it: later mappings are not locked), MADV_GUARD_INSTALL guard regions, userfaultfd registrations"},
	{"vDSO", Supported, "[vvar] [vvar_vclock] [vdso] moved together with mremap to the image's address; a different vDSO (another kernel) is refused"},
	{"private anonymous memory", Supported, "present and swapped pages (pagemap); heap, stacks, guard pages (PROT_NONE) kept"},
	{"private file mappings", Supported, "file reopened by path and mapped; only pages that differ from the file (copied on write) are saved"},
	{"shared memory", Supported, "MAP_SHARED anonymous, memfd, /dev/shm, SysV segments: one object per inode, contents saved once, restored as one memfd mapped by every sharer"},
	{"SysV shared memory semantics", Partly, "the segment's memory comes back as a memfd mapping; shmctl/shmat on the old id does not"},
	{"mappings of deleted files", Supported, "contents saved from /proc/PID/map_files and restored as a memfd (private or shared)"},
	{"shim region", Supported, "contents saved; the new run's region file is filled and mapped at the old address"},
	{"interval timers", Supported, "ITIMER_REAL/VIRTUAL/PROF read with getitimer and re-armed with setitimer inside the target (the remaining time restarts at the restore; a periodic ITIMER_REAL whose SIGALRM was pending, which reads as value 0, is re-armed with one interval beside its restored signal)"},
	{"POSIX timers", Partly, "timer_create timers: id, clock, signal, sigev_value and notify mode (signal, none, thread id) from /proc/PID/timers, remaining time and interval from timer_gettime injected into the target; recreated with their ids (PR_TIMER_CREATE_RESTORE_IDS, Linux >= 6.15; refused up front without it) and re-armed relative (the remaining time restarts at the restore, TIMER_ABSTIME timers become relative); a pending timer signal comes back with the pending signals, the overrun count is lost; a per-thread CPU-clock timer of a multi-threaded process is refused unless it notifies a thread (taken as its clock's thread), and one on another process's CPU clock is refused"},
	{"ptraced processes", Refused, "checked up front (precheck.go): a thread with a TracerPid (debugger, strace, another checkpoint) makes the checkpoint fail before the freeze, naming the process and the tracer"},
	{"seccomp", Refused, "checked up front per thread: strict mode, or a filter beyond those ftl itself runs under (inherited ones come back by inheritance), makes the checkpoint fail before the freeze: filters cannot be re-installed yet"},
	{"io_uring", Refused, "checked up front: an io_uring fd (fd layer) or a mapping of its rings left after the fd was closed makes the checkpoint fail before the freeze; a ring with neither (NO_MMAP + registered ring fd) is not detected"},
	{"namespaces inside the tree", Refused, "not saved"},
	{"incremental images", Partly, "the format has Parent and per-extent Parent flags; this version writes full images and refuses to restore incremental ones"},
}
