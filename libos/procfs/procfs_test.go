package procfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

func TestReadStatSelf(t *testing.T) {
	st, err := ReadStat("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.PPid() != os.Getppid() || st.StartTime() == 0 || st.Dead() {
		t.Errorf("own stat: ppid %d (want %d), start %d, state %c", st.PPid(), os.Getppid(), st.StartTime(), st.State)
	}
}

// A command name with spaces and ')' must not shift the fields.
func TestReadStatOddComm(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "7"), 0o755)
	line := "7 (a) b (c) S 3 7 7 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 4242 0 0\n"
	os.WriteFile(filepath.Join(dir, "7", "stat"), []byte(line), 0o644)
	st, err := ReadStat(dir, 7)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != 'S' || st.PPid() != 3 || st.StartTime() != 4242 {
		t.Errorf("got state %c ppid %d start %d", st.State, st.PPid(), st.StartTime())
	}
	os.WriteFile(filepath.Join(dir, "7", "stat"), []byte("7 (x S 1 2\n"), 0o644)
	if _, err := ReadStat(dir, 7); err == nil {
		t.Errorf("a stat file without ')' parsed")
	}
}

func TestAliveZombie(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Not waited for yet: once it exits it stays a zombie.
	for i := 0; i < 500 && Alive("/proc", pid); i++ {
		st, _ := ReadStat("/proc", pid)
		if st.Dead() {
			break
		}
		exec.Command("sleep", "0.01").Run()
	}
	if Alive("/proc", pid) {
		t.Errorf("exited child %s still counts as alive", strconv.Itoa(pid))
	}
	cmd.Wait()
	if Alive("/proc", pid) {
		t.Errorf("reaped child still counts as alive")
	}
}

func TestNumbers(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"12", "3", "self", "40", "x1"} {
		os.Mkdir(filepath.Join(dir, n), 0o755)
	}
	got, err := Numbers(dir)
	if err != nil || len(got) != 3 || got[0] != 3 || got[1] != 12 || got[2] != 40 {
		t.Errorf("Numbers = %v, %v; want [3 12 40]", got, err)
	}
	if _, err := Numbers(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("Numbers of a missing dir: %v, want not-exist", err)
	}
}
