package files

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// fdinfo is /proc/PID/fdinfo/N parsed: the common fields and the raw
// kind-specific lines.
type fdinfo struct {
	Pos   int64
	Flags int // octal in the file; includes O_CLOEXEC for the fd
	Ino   uint64
	Lines []string
}

func readFdinfo(pid, fd int) (*fdinfo, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	if err != nil {
		return nil, fmt.Errorf("read fdinfo: %w", err)
	}
	fi := &fdinfo{}
	for _, ln := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(ln, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "pos":
			fi.Pos, _ = strconv.ParseInt(v, 10, 64)
		case "flags":
			f, _ := strconv.ParseInt(v, 8, 64)
			fi.Flags = int(f)
		case "ino":
			fi.Ino, _ = strconv.ParseUint(v, 10, 64)
		default:
			fi.Lines = append(fi.Lines, ln)
		}
	}
	return fi, nil
}

// field returns the value of "key: value" among the kind lines.
func (fi *fdinfo) field(key string) (string, bool) {
	for _, ln := range fi.Lines {
		k, v, ok := strings.Cut(ln, ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// words splits "a: 1 b: 2 c:3" style lines (epoll tfd lines, inotify lines)
// into key -> value.
func words(ln string) map[string]string {
	m := map[string]string{}
	f := strings.Fields(strings.ReplaceAll(ln, ":", ": "))
	for i := 0; i+1 < len(f); i++ {
		if strings.HasSuffix(f[i], ":") {
			m[strings.TrimSuffix(f[i], ":")] = f[i+1]
			i++
		}
	}
	return m
}

// parseTimerfd reads "clockid:", "ticks:", "it_value: (s, ns)", "it_interval:".
func parseTimerfd(fi *fdinfo) (*TimerfdState, error) {
	st := &TimerfdState{}
	v, ok := fi.field("clockid")
	if !ok {
		return nil, fmt.Errorf("timerfd fdinfo lacks clockid")
	}
	c, _ := strconv.Atoi(v)
	st.Clock = c
	if v, ok := fi.field("ticks"); ok {
		st.Ticks, _ = strconv.ParseUint(v, 10, 64)
	}
	pair := func(key string) int64 {
		v, ok := fi.field(key)
		if !ok {
			return 0
		}
		v = strings.Trim(v, "()")
		a, b, _ := strings.Cut(v, ",")
		s, _ := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
		ns, _ := strconv.ParseInt(strings.TrimSpace(b), 10, 64)
		return s*1e9 + ns
	}
	st.ValueNs = pair("it_value")
	st.IntervNs = pair("it_interval")
	return st, nil
}
