package criu

// Level says how far this engine supports a kind of process state.
type Level int

const (
	Supported Level = iota
	Partly
	Refused
)

func (l Level) String() string {
	switch l {
	case Supported:
		return "supported"
	case Partly:
		return "partly"
	default:
		return "refused"
	}
}

// Feature is one row of the support table.
type Feature struct {
	Name  string
	Level Level
	Note  string // how (Partly) or why not (Refused)
}

// Support is what the CRIU engine does with each kind of state, as exposed
// by this package (CRIU itself can do more; what is not exposed is refused).
var Support = []Feature{
	{"process trees, threads, memory, regular files, pipes inside the tree", Supported, "CRIU defaults; original pids kept"},
	{"listening TCP/UDP sockets", Supported, "CRIU defaults"},
	{"established TCP connections", Partly, "opt-in TCPEstablished; CRIU drops the connections' packets (iptables rules per connection) from the dump to the restore: an image killed and never restored leaves those rules behind"},
	{"terminals and sessions the tree does not lead", Partly, "opt-in ShellJob; start servers with setsid instead"},
	{"unix sockets to peers outside the tree", Partly, "opt-in ExtUnixSk on dump; the peer must still exist on restore"},
	{"pipes or files to processes outside the tree", Partly, "restore needs InheritFds naming the image's key (pipe:[ino])"},
	{"file locks", Partly, "opt-in FileLocks"},
	{"a tree in its own pid and mount namespace", Partly, "dump its namespace init; restore rebuilds the mount namespace on RestoreOptions.Root (default /); every open file must be on a mount of that namespace"},
	{"regular files that grew or shrank since the dump", Refused, "CRIU checks each file's size on restore"},
	{"processes that switch to another uid", Refused, "root here lacks CAP_SYS_RESOURCE, which CRIU needs for them"},
	{"pre-dump, incremental dumps, page server, lazy pages", Refused, "not exposed: the default engine owns iterative checkpoints"},
}
