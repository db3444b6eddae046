package criu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Names of files this engine keeps in an image directory beside CRIU's
// own *.img files.
const (
	// MarkerFile's first line is "criu <version>"; the lines after it name
	// the dump options that restore must repeat (see Marker).
	MarkerFile = "ftl-engine"
	// DumpLog and RestoreLog are CRIU's logs.
	DumpLog    = "dump.log"
	RestoreLog = "restore.log"
	// inventoryFile is the first file of every CRIU image.
	inventoryFile = "inventory.img"
)

// markerPrefix starts the marker's first line.
const markerPrefix = "criu "

// Marker is what MarkerFile records about a dump: the CRIU version that
// wrote it and the options a restore has to be given again (CRIU refuses to
// restore established TCP connections, shell jobs, external unix sockets or
// file locks unless told so at restore time too).
type Marker struct {
	Version        string
	TCPEstablished bool
	ShellJob       bool
	ExtUnixSk      bool
	FileLocks      bool
	// PidNS and MountNS record that the dumped root was the init of its
	// own pid namespace, or lived in a mount namespace other than the
	// dumper's. CRIU recreates both; a mount namespace needs a root
	// directory at restore (Restore uses "/" unless told otherwise).
	PidNS   bool
	MountNS bool
}

// marker option keywords, one per line after the version line.
const (
	kwTCPEstablished = "tcp-established"
	kwShellJob       = "shell-job"
	kwExtUnixSk      = "ext-unix-sk"
	kwFileLocks      = "file-locks"
	kwPidNS          = "pidns"
	kwMountNS        = "mntns"
)

func (m Marker) encode() []byte {
	var b bytes.Buffer
	b.WriteString(markerPrefix + m.Version + "\n")
	for _, o := range []struct {
		on bool
		kw string
	}{
		{m.TCPEstablished, kwTCPEstablished},
		{m.ShellJob, kwShellJob},
		{m.ExtUnixSk, kwExtUnixSk},
		{m.FileLocks, kwFileLocks},
		{m.PidNS, kwPidNS},
		{m.MountNS, kwMountNS},
	} {
		if o.on {
			b.WriteString(o.kw + "\n")
		}
	}
	return b.Bytes()
}

// writeMarker writes the marker atomically (temporary file + rename).
func writeMarker(dir string, m Marker) error {
	tmp := filepath.Join(dir, MarkerFile+".tmp")
	if err := os.WriteFile(tmp, m.encode(), 0o644); err != nil {
		return fmt.Errorf("writing criu image marker: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, MarkerFile)); err != nil {
		return fmt.Errorf("writing criu image marker: %w", err)
	}
	return nil
}

// ReadMarker tells whether dir holds an image dumped by this engine and
// returns its marker. It fails with ErrNotImage when dir has no marker (for
// example an image of the default engine, or a dump that did not finish).
// Unknown option lines are ignored so that newer markers stay readable.
func ReadMarker(dir string) (Marker, error) {
	b, err := os.ReadFile(filepath.Join(dir, MarkerFile))
	if errors.Is(err, os.ErrNotExist) {
		return Marker{}, fmt.Errorf("%w: no %s in %s", ErrNotImage, MarkerFile, dir)
	}
	if err != nil {
		return Marker{}, fmt.Errorf("reading criu image marker: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	if !sc.Scan() {
		return Marker{}, fmt.Errorf("%w: empty %s in %s", ErrNotImage, MarkerFile, dir)
	}
	v, ok := strings.CutPrefix(sc.Text(), markerPrefix)
	if !ok || v == "" {
		return Marker{}, fmt.Errorf("%w: %s in %s does not start with %q", ErrNotImage, MarkerFile, dir, markerPrefix)
	}
	m := Marker{Version: v}
	for sc.Scan() {
		switch strings.TrimSpace(sc.Text()) {
		case kwTCPEstablished:
			m.TCPEstablished = true
		case kwShellJob:
			m.ShellJob = true
		case kwExtUnixSk:
			m.ExtUnixSk = true
		case kwFileLocks:
			m.FileLocks = true
		case kwPidNS:
			m.PidNS = true
		case kwMountNS:
			m.MountNS = true
		}
	}
	return m, nil
}
