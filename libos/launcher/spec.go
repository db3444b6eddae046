package launcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// Spec is what ftl knows about one run; it is run/NAME/spec.json.
type Spec struct {
	Name     string
	Argv     []string // as given; Argv[0] may be a bare name found in PATH
	Program  string   // absolute path of the executable that was started
	Env      []string // the program's environment, without what the launcher adds
	Dir      string   // working directory
	Mode     string   // fault-tolerance mode (--ft)
	Detached bool
	Terminal bool // the program gets the terminal (foreground ftl in its terminal's foreground)

	// The init: host pid and start time (field 22 of /proc/PID/stat) together
	// identify it even after pid reuse. Zero until the init has started.
	InitPid   int
	InitStart uint64
	PidNS     string // readlink /proc/INITPID/ns/pid, e.g. "pid:[4026532291]"
	MntNS     string // readlink /proc/INITPID/ns/mnt
	MainPid   int    // the program's pid inside the namespace (2)

	// The ftl process that claimed the name; it owns the entry until InitPid
	// is set.
	OwnerPid   int
	OwnerStart uint64

	Created      time.Time
	Region       string // path of the shared-memory region
	Shim         string // path of libftl.so given to the program
	Log          string // path of the log of a detached run, or ""
	RestoredFrom string // image directory this run was restored from, or ""
}

// RunDir is the spec's state directory.
func (s *Spec) RunDir() string { return RunDir(s.Name) }

// Alive reports whether the entry's owner still runs: the init once it has
// started, the claiming ftl process before that.
func (s *Spec) Alive() bool {
	if s.InitPid != 0 {
		return pidAlive(s.InitPid, s.InitStart)
	}
	return s.OwnerPid != 0 && pidAlive(s.OwnerPid, s.OwnerStart)
}

const specFile = "spec.json"

// writeSpec stores s in dir atomically (tmp + rename).
func writeSpec(dir string, s *Spec) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode spec: %w", err)
	}
	tmp := filepath.Join(dir, "."+specFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil { // it holds the environment
		return fmt.Errorf("write spec: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, specFile)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write spec: %w", err)
	}
	return nil
}

func readSpec(dir string) (*Spec, error) {
	b, err := os.ReadFile(filepath.Join(dir, specFile))
	if err != nil {
		return nil, err
	}
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, specFile), err)
	}
	return &s, nil
}

// lockRuns holds an exclusive flock on run/.lock (creating run/) until the
// returned function is called. Claims and stale removals happen under it.
func lockRuns() (func(), error) {
	dir := filepath.Join(Home(), "run")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open run lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// entryGraceTime is how long a run directory without a readable spec counts
// as being claimed right now rather than stale.
const entryGraceTime = 10 * time.Second

// checkEntry reads run/NAME and removes it when stale. It must be called
// with the run lock held. It returns ErrNotFound when there is (now) no entry.
func checkEntry(name string) (*Spec, error) {
	dir := RunDir(name)
	s, err := readSpec(dir)
	if err != nil {
		st, serr := os.Stat(dir)
		if serr != nil {
			if errors.Is(serr, fs.ErrNotExist) {
				return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
			}
			return nil, fmt.Errorf("inspect %s: %w", dir, serr)
		}
		if !st.IsDir() || time.Since(st.ModTime()) > entryGraceTime {
			warnf("removed stale entry %s (no readable spec)", name)
			os.RemoveAll(dir)
			return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		// Being claimed right now: report it as in use with what we have.
		return &Spec{Name: name}, nil
	}
	if s.Name != name {
		s.Name = name
	}
	if !s.Alive() {
		if s.InitPid != 0 {
			warnf("removed stale entry %s (its init, pid %d, is gone)", name, s.InitPid)
		} else {
			warnf("removed stale entry %s (the ftl process that started it, pid %d, is gone)", name, s.OwnerPid)
		}
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return s, nil
}

// Lookup returns the spec of the live run called name. Stale entries are
// removed (and reported on stderr); a missing one gives ErrNotFound.
func Lookup(name string) (*Spec, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	unlock, err := lockRuns()
	if err != nil {
		return nil, err
	}
	defer unlock()
	return checkEntry(name)
}

// List returns the specs of every live run, sorted by name. Stale entries
// are removed (and reported on stderr).
func List() ([]*Spec, error) {
	unlock, err := lockRuns()
	if err != nil {
		return nil, err
	}
	defer unlock()
	ents, err := os.ReadDir(filepath.Join(Home(), "run"))
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	var out []*Spec
	for _, e := range ents {
		if !e.IsDir() || ValidName(e.Name()) != nil {
			continue
		}
		s, err := checkEntry(e.Name())
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if s.InitPid == 0 {
			continue // still starting
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
