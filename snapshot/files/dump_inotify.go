package files

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// dumpInotify records each watch by path: the fdinfo line gives the
// watched inode's file handle, which open_by_handle_at turns into a path.
func dumpInotify(desc *Desc, fi *fdinfo) error {
	st := &InotifyState{}
	for _, ln := range fi.Lines {
		if !strings.HasPrefix(ln, "inotify ") {
			continue
		}
		w := words(strings.TrimPrefix(ln, "inotify "))
		wd, err1 := strconv.ParseInt(w["wd"], 16, 32)
		mask, err2 := strconv.ParseUint(w["mask"], 16, 32)
		sdev, err3 := strconv.ParseUint(w["sdev"], 16, 32)
		htype, err4 := strconv.ParseInt(w["fhandle-type"], 16, 32)
		hb, err5 := hex.DecodeString(w["f_handle"])
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil {
			return fmt.Errorf("inotify fdinfo line %q: cannot parse", ln)
		}
		path, err := handlePath(uint32(sdev), int32(htype), hb)
		if err != nil {
			return fmt.Errorf("%w: inotify watch %d: %v", ErrUnsupported, wd, err)
		}
		st.Watches = append(st.Watches, InotifyWatch{WD: int(wd), Path: path, Mask: uint32(mask)})
	}
	desc.Inotify = st
	return nil
}

// handlePath resolves a file handle on the filesystem with kernel device
// number sdev (major<<20 | minor) to a path.
func handlePath(sdev uint32, htype int32, handle []byte) (string, error) {
	major, minor := sdev>>20, sdev&0xfffff
	mnt, err := mountPointOf(major, minor)
	if err != nil {
		return "", err
	}
	mfd, err := unix.Open(mnt, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0) // not O_PATH: open_by_handle_at wants a real fd
	if err != nil {
		return "", fmt.Errorf("open mount %s: %w", mnt, err)
	}
	defer unix.Close(mfd)
	fd, err := unix.OpenByHandleAt(mfd, unix.NewFileHandle(htype, handle), unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		return "", fmt.Errorf("open_by_handle_at on %s: %w", mnt, err)
	}
	defer unix.Close(fd)
	p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return "", fmt.Errorf("readlink: %w", err)
	}
	if strings.HasSuffix(p, deletedSuffix) {
		return "", fmt.Errorf("watched file %s was deleted", p)
	}
	return p, nil
}

func mountPointOf(major, minor uint32) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("mountinfo: %w", err)
	}
	defer f.Close()
	want := fmt.Sprintf("%d:%d", major, minor)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 4 && fs[2] == want {
			return fs[4], nil
		}
	}
	return "", fmt.Errorf("no mount of device %s", want)
}
