package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ftlinux/ftl/snapshot/criu"
)

// The optional CRIU engine (`--engine criu`): checkpoint of a tree ftl did
// not launch (--pid), restore of such an image (recognised by its marker
// file), and inspect. ftl-launched trees stay with ftl's own engine: CRIU
// needs every open file of a tree to be on a mount of its mount namespace,
// and a run's stdio is opened before the namespace exists (docs/criu.md).

// Engine names accepted by `ftl checkpoint --engine`.
const (
	engineFTL  = "ftl"
	engineCRIU = "criu"
)

// checkpointCRIU dumps the tree rooted at pid into dir with CRIU.
func checkpointCRIU(pid int, dir string, leaveRunning bool) error {
	if _, _, err := criu.Find(); err != nil {
		return fmt.Errorf("checkpoint --engine criu: %w", err)
	}
	sid, err := unix.Getsid(pid)
	if err != nil {
		return fmt.Errorf("checkpoint --engine criu: process %d: %w", pid, err)
	}
	err = criu.Dump(context.Background(), criu.DumpOptions{Pid: pid, Dir: dir, LeaveRunning: leaveRunning,
		TCPEstablished: true, ShellJob: sid != pid})
	if err != nil {
		return fmt.Errorf("checkpoint --engine criu pid %d: %w", pid, err)
	}
	if st, err := criu.ReadDumpStats(dir); err == nil {
		fmt.Fprintf(os.Stderr, "ftl: criu dump: frozen %v (freezing %v, memory dump %v, memory write %v)\n",
			st.Frozen, st.Freezing, st.MemDump, st.MemWrite)
	}
	abs, _ := filepath.Abs(dir)
	fmt.Println(abs)
	return nil
}

// isCRIUImage tells whether dir was written by the CRIU engine.
func isCRIUImage(dir string) (criu.Marker, bool) {
	m, err := criu.ReadMarker(dir)
	return m, err == nil
}

// restoreCRIU restores a CRIU image; in the foreground ftl stays the
// parent of the restored root and exits with its status.
func restoreCRIU(dir string, detach bool) error {
	pid, err := criu.Restore(context.Background(), criu.RestoreOptions{Dir: dir, Detach: detach})
	if err != nil {
		return fmt.Errorf("restore %s: %w", dir, err)
	}
	if detach {
		fmt.Println(pid)
		return nil
	}
	fmt.Fprintf(os.Stderr, "ftl: criu restored root %d\n", pid)
	return exitError{waitTree(pid)}
}

// inspectCRIU shows what ftl knows of a CRIU image: its marker and CRIU's
// own dump statistics.
func inspectCRIU(dir string, m criu.Marker, asJSON bool) error {
	info := struct {
		Dir    string          `json:"dir"`
		Engine string          `json:"engine"`
		Marker criu.Marker     `json:"marker"`
		Stats  *criu.DumpStats `json:"dump_stats,omitempty"`
	}{Dir: dir, Engine: "criu " + m.Version, Marker: m}
	if st, err := criu.ReadDumpStats(dir); err == nil {
		info.Stats = &st
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("inspect %s: %w", dir, err)
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	fmt.Printf("image:   %s\nengine:  %s (CRIU's own format; see `crit` for details)\n", dir, info.Engine)
	fmt.Printf("options: tcp-established=%v shell-job=%v ext-unix-sk=%v file-locks=%v pidns=%v mntns=%v\n",
		m.TCPEstablished, m.ShellJob, m.ExtUnixSk, m.FileLocks, m.PidNS, m.MountNS)
	if info.Stats != nil {
		fmt.Printf("dump:    frozen %v (freezing %v, memory dump %v, memory write %v)\n",
			info.Stats.Frozen, info.Stats.Freezing, info.Stats.MemDump, info.Stats.MemWrite)
	}
	return nil
}

// waitTree reaps this process's children until none is left and returns
// the status of root as a shell would give it (128+N for signal N).
func waitTree(root int) int {
	status := 0
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return status
		}
		if pid == root {
			if ws.Signaled() {
				status = 128 + int(ws.Signal())
			} else {
				status = ws.ExitStatus()
			}
		}
	}
}
