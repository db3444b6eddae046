package criu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// EnvPath names the environment variable that selects the criu binary.
// When it is set, only that binary is considered.
const EnvPath = "FTL_CRIU"

// DefaultPath is where a locally built CRIU is installed on our machines.
const DefaultPath = "/usr/local/sbin/criu"

// minMajor and minMinor are the oldest CRIU that works on the kernels we
// target: 3.17 fails on the vDSO layout of kernel 6.18, 4.1 on memcached's
// socket options.
const (
	minMajor = 4
	minMinor = 2
)

// versionTimeout bounds `criu --version`.
const versionTimeout = 5 * time.Second

// Version is a parsed CRIU version.
type Version struct {
	Major, Minor, Sublevel int
}

func (v Version) String() string {
	if v.Sublevel == 0 {
		return fmt.Sprintf("%d.%d", v.Major, v.Minor)
	}
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Sublevel)
}

// atLeast reports whether v >= major.minor.
func (v Version) atLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

// Find locates a working criu >= 4.2 and returns its path and version. It
// looks at $FTL_CRIU when set (and nowhere else), otherwise at "criu" in
// PATH and then at DefaultPath. When none qualifies the error wraps
// ErrUnavailable and says, for every candidate, what was found and why it
// does not qualify (e.g. "criu 3.17.1 at /usr/sbin/criu is older than 4.2").
// CRIU needs root: Find refuses for any other effective uid.
func Find() (path, version string, err error) {
	if uid := os.Geteuid(); uid != 0 {
		return "", "", fmt.Errorf("%w: criu needs root, running as uid %d", ErrUnavailable, uid)
	}
	var cands []string
	if p := os.Getenv(EnvPath); p != "" {
		cands = []string{p}
	} else {
		if p, err := exec.LookPath("criu"); err == nil {
			cands = append(cands, p)
		}
		if len(cands) == 0 || cands[0] != DefaultPath {
			cands = append(cands, DefaultPath)
		}
	}
	var reasons []string
	for _, p := range cands {
		v, err := probe(p)
		if err != nil {
			reasons = append(reasons, err.Error())
			continue
		}
		if !v.atLeast(minMajor, minMinor) {
			reasons = append(reasons, fmt.Sprintf("criu %s at %s is older than %d.%d", v, p, minMajor, minMinor))
			continue
		}
		return p, v.String(), nil
	}
	where := "in PATH or at " + DefaultPath
	if os.Getenv(EnvPath) != "" {
		where = "at $" + EnvPath
	}
	return "", "", fmt.Errorf("%w: no criu >= %d.%d %s: %s", ErrUnavailable, minMajor, minMinor, where, strings.Join(reasons, "; "))
}

// probe runs `path --version` and parses its "Version: X.Y[.Z]" line.
func probe(path string) (Version, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Version{}, fmt.Errorf("no criu at %s", path)
		}
		return Version{}, fmt.Errorf("criu at %s: %w", path, err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return Version{}, fmt.Errorf("%s is not an executable file", path)
	}
	ctx, cancel := context.WithTimeout(context.Background(), versionTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return Version{}, fmt.Errorf("%s --version failed: %w", path, err)
	}
	v, ok := parseVersion(out)
	if !ok {
		return Version{}, fmt.Errorf("%s --version printed no version: %q", path, firstLine(out))
	}
	return v, nil
}

// parseVersion finds "Version: X.Y[.Z]" in the output of `criu --version`.
func parseVersion(out []byte) (Version, bool) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Version:")
		if !ok {
			continue
		}
		parts := strings.Split(strings.TrimSpace(rest), ".")
		if len(parts) < 2 || len(parts) > 3 {
			return Version{}, false
		}
		var n [3]int
		for i, p := range parts {
			x, err := strconv.Atoi(p)
			if err != nil || x < 0 {
				return Version{}, false
			}
			n[i] = x
		}
		return Version{Major: n[0], Minor: n[1], Sublevel: n[2]}, true
	}
	return Version{}, false
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}
