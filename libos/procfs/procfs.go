// Package procfs parses /proc/PID/stat, which the launcher, the region
// reader, the snapshot engine and the benchmark all read. Its second field,
// the command name, may hold spaces and parentheses, so fields are counted
// after the last ')'; that rule lives here once.
package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ErrMalformed is returned for a stat file that does not parse.
var ErrMalformed = errors.New("malformed /proc stat")

// Stat is /proc/PID/stat split into its fields.
type Stat struct {
	// State is field 3: R, S, D, Z (zombie), X (dead), ...
	State  byte
	fields []string // fields[0] is field 3
}

// ReadStat reads root/PID/stat; root is "/proc" or another mount of proc.
func ReadStat(root string, pid int) (Stat, error) {
	b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return Stat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("%s/%d/stat: no ')': %w", root, pid, ErrMalformed)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("%s/%d/stat: %d fields: %w", root, pid, len(f), ErrMalformed)
	}
	return Stat{State: f[0][0], fields: f}, nil
}

// Field returns numeric field n as proc(5) numbers them (n >= 4), or 0 when
// the kernel does not report it.
func (s Stat) Field(n int) uint64 {
	if n < 4 || n-3 >= len(s.fields) {
		return 0
	}
	v, _ := strconv.ParseUint(s.fields[n-3], 10, 64)
	return v
}

// PPid is field 4.
func (s Stat) PPid() int { return int(s.Field(4)) }

// StartTime is field 22, the start time in clock ticks since boot: the
// same in every pid namespace, so it tells a reused pid from the original.
func (s Stat) StartTime() uint64 { return s.Field(22) }

// Dead reports a zombie or a task being torn down.
func (s Stat) Dead() bool { return s.State == 'Z' || s.State == 'X' || s.State == 'x' }

// Alive reports whether pid exists in root and is not a zombie.
func Alive(root string, pid int) bool {
	st, err := ReadStat(root, pid)
	return err == nil && !st.Dead()
}

// Numbers lists the numeric entries of a /proc directory in ascending
// order: the pids of /proc, the tids of /proc/PID/task, the fds of
// /proc/PID/fd. Other entries are skipped.
func Numbers(dir string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out, nil
}
