// Package launcher starts programs under ftl and owns their run-state.
//
// Every run lives in its own pid and mount namespace under a minimal init:
// the ftl binary re-executed as `ftl __init RUNDIR` (see RunInit). The init is
// pid 1 of the namespace and the program is pid 2. The init mounts a private
// /proc, is a child subreaper, reaps every child at once (a zombie keeps its
// pid and breaks a later same-pid restore), forwards SIGTERM, SIGINT, SIGHUP
// and SIGQUIT to the program (to every process of the namespace once the
// program is gone), and lives while any process of the namespace lives; then
// it removes the run's state and exits.
//
// State under Home():
//
//	run/NAME/spec.json  the Spec (written atomically: tmp + rename)
//	run/NAME/region     the shared-memory region the shim writes
//	log/NAME.log        stdout and stderr of a detached run (kept after it ends)
//
// Invariants:
//   - A name is claimed by mkdir of run/NAME while holding an flock on
//     run/.lock, so two concurrent Starts with one name cannot both win.
//   - run/NAME exists only while its owner lives: the claiming ftl process
//     until the init has written its pid into the spec, the init after that.
//     Lookup, List, Start, Stop and Kill remove an entry whose owner is dead
//     (a "stale" entry) and say so once on stderr.
//   - The init never has LD_PRELOAD; the program gets LD_PRELOAD=<libftl.so>,
//     FTL_REGION=<region path> and FTL_NAME=<name>, and the shim's exec
//     wrappers keep them for the whole tree.
//   - The init reports to its parent over fd 3, one line per event:
//     "started NSPID HOSTPID", "error MESSAGE" (the program could not be
//     started), "stopped SIGNAL" (the program was stopped: job control),
//     "exited STATUS REMAINING" (the program ended with the status
//     a shell would give; REMAINING processes of the namespace still live).
package launcher

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Sentinel errors. The CLI maps ErrNotFound, ErrNameInUse, ErrBadName,
// ErrNoProgram and ErrBadMode to usage errors (exit status 2).
var (
	ErrNotFound  = errors.New("no such run")
	ErrNameInUse = errors.New("name already in use")
	ErrBadName   = errors.New("bad name")
	ErrNoProgram = errors.New("program not found")
	ErrBadMode   = errors.New("fault-tolerance mode not available yet")
	ErrNoShim    = errors.New("libftl.so not found")
	ErrExec      = errors.New("program could not be started")
	ErrInitDied  = errors.New("init died")
	ErrNoRestore = errors.New("restore is not available in this binary")
	ErrPid2      = errors.New("the program could not be made pid 2")
	ErrTimeout   = errors.New("timed out")
)

// InitCommand is the hidden ftl subcommand that runs RunInit.
const InitCommand = "__init"

// ModeNone is the only fault-tolerance mode available now: wrapped, counted,
// checkpointable on demand.
const ModeNone = "none"

// Modes lists every --ft mode and whether it is available now.
var Modes = []struct {
	Name      string
	Available bool
	Note      string
}{
	{ModeNone, true, "wrapped and counted; checkpoint on demand"},
	{"checkpoint", false, "epoch checkpoints to a backup: not available yet"},
	{"log", false, "input and misprediction log to a backup: not available yet"},
}

// Home is the root of ftl's state: $FTL_HOME, or /var/lib/ftl.
func Home() string {
	h := os.Getenv("FTL_HOME")
	if h == "" {
		return "/var/lib/ftl"
	}
	if abs, err := filepath.Abs(h); err == nil {
		return abs
	}
	return h
}

// RunDir is the state directory of the run called name.
func RunDir(name string) string { return filepath.Join(Home(), "run", name) }

// LogPath is where a detached run's stdout and stderr go.
func LogPath(name string) string { return filepath.Join(Home(), "log", name+".log") }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ValidName reports an ErrBadName error unless name follows the rules:
// [A-Za-z0-9][A-Za-z0-9._-]{0,62}.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w %q: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrBadName, name)
	}
	return nil
}

// baseName turns a program path into a name candidate: its base name with
// every character outside the name alphabet replaced by '-'.
func baseName(program string) string {
	b := []byte(filepath.Base(program))
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			b[i] = '-'
		}
	}
	s := strings.TrimLeft(string(b), "._-")
	if s == "" {
		s = "run"
	}
	if len(s) > 55 {
		s = s[:55]
	}
	return s
}

// ShimPath finds libftl.so: $FTL_SHIM when set (it must exist), else
// libftl.so beside the ftl binary, else /usr/local/lib/ftl/libftl.so. The
// path returned is absolute.
func ShimPath() (string, error) {
	if p := os.Getenv("FTL_SHIM"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil || !isFile(abs) {
			return "", fmt.Errorf("%w: $FTL_SHIM is %s, which is not a file", ErrNoShim, p)
		}
		return abs, nil
	}
	var tried []string
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "libftl.so")
		tried = append(tried, p)
		if isFile(p) {
			return p, nil
		}
	}
	const system = "/usr/local/lib/ftl/libftl.so"
	tried = append(tried, system)
	if isFile(system) {
		return system, nil
	}
	return "", fmt.Errorf("%w: tried %s (build it with make, or set FTL_SHIM)", ErrNoShim, strings.Join(tried, ", "))
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// warnf prints one line on stderr; used for stale entries, which every
// command removes and reports once.
func warnf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ftl: "+format+"\n", args...)
}
