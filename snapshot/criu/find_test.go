package criu

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	for _, c := range []struct {
		out  string
		want Version
		ok   bool
	}{
		{"Version: 4.2.1\n", Version{4, 2, 1}, true},
		{"Version: 3.17\nGitID: v3.17-12-gabc\n", Version{3, 17, 0}, true},
		{"criu\nVersion: 4.10.0\n", Version{4, 10, 0}, true},
		{"Version: four\n", Version{}, false},
		{"Version: 4\n", Version{}, false},
		{"hello\n", Version{}, false},
	} {
		v, ok := parseVersion([]byte(c.out))
		if ok != c.ok || v != c.want {
			t.Errorf("parseVersion(%q) = %v, %v; want %v, %v", c.out, v, ok, c.want, c.ok)
		}
	}
	if !(Version{4, 2, 0}).atLeast(4, 2) || !(Version{5, 0, 0}).atLeast(4, 2) || (Version{4, 1, 9}).atLeast(4, 2) || (Version{3, 17, 1}).atLeast(4, 2) {
		t.Error("atLeast compares wrongly")
	}
}

// fakeCriu writes an executable script printing out to stdout.
func fakeCriu(t *testing.T, out string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "criu")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nprintf '"+out+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFindRefuses(t *testing.T) {
	if os.Geteuid() != 0 {
		// Find refuses any non-root uid before looking at versions.
		_, _, err := Find()
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "root") {
			t.Fatalf("Find as non-root: %v; want ErrUnavailable naming root", err)
		}
		t.Skip("skipping the version checks: Find needs root")
	}
	old := fakeCriu(t, `Version: 3.17.1\n`)
	cases := []struct {
		name, path string
		want       []string
	}{
		{"old", old, []string{"criu 3.17.1 at " + old + " is older than 4.2"}},
		{"garbage", fakeCriu(t, `no version here\n`), []string{"printed no version", "no version here"}},
		{"missing", filepath.Join(t.TempDir(), "nope"), []string{"no criu at"}},
	}
	// Debian 12's packaged criu, if installed, must be refused too.
	if _, err := os.Stat("/usr/sbin/criu"); err == nil {
		cases = append(cases, struct {
			name, path string
			want       []string
		}{"debian", "/usr/sbin/criu", []string{"at /usr/sbin/criu is older than 4.2"}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(EnvPath, c.path)
			p, v, err := Find()
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Find() = %q, %q, %v; want ErrUnavailable", p, v, err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			// Dump and Restore refuse the same way before touching anything.
			dir := filepath.Join(t.TempDir(), "img")
			if err := Dump(t.Context(), DumpOptions{Pid: os.Getpid(), Dir: dir}); !errors.Is(err, ErrUnavailable) {
				t.Errorf("Dump: %v; want ErrUnavailable", err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("refused Dump created %s", dir)
			}
		})
	}
}

func TestFindAcceptsNew(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: Find needs root")
	}
	t.Setenv(EnvPath, fakeCriu(t, `Version: 4.2\n`))
	if _, v, err := Find(); err != nil || v != "4.2" {
		t.Fatalf("Find() = %q, %v; want 4.2", v, err)
	}
}

func TestMarker(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadMarker(dir); !errors.Is(err, ErrNotImage) {
		t.Fatalf("ReadMarker(empty) = %v; want ErrNotImage", err)
	}
	want := Marker{Version: "4.2.1", TCPEstablished: true, FileLocks: true, MountNS: true}
	if err := writeMarker(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadMarker(dir)
	if err != nil || got != want {
		t.Fatalf("ReadMarker = %+v, %v; want %+v", got, err, want)
	}
	b, _ := os.ReadFile(filepath.Join(dir, MarkerFile))
	if !strings.HasPrefix(string(b), "criu 4.2.1\n") {
		t.Errorf("marker starts %q; want \"criu 4.2.1\\n\"", b)
	}
	if err := os.WriteFile(filepath.Join(dir, MarkerFile), []byte("ftl 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadMarker(dir); !errors.Is(err, ErrNotImage) {
		t.Fatalf("ReadMarker(foreign) = %v; want ErrNotImage", err)
	}
	if _, err := Restore(t.Context(), RestoreOptions{Dir: t.TempDir()}); !errors.Is(err, ErrNotImage) {
		t.Fatalf("Restore(empty dir) = %v; want ErrNotImage", err)
	}
}
