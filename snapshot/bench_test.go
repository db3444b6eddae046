package snapshot

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkCheckpoint measures, against resident size: the freeze of a
// --leave-running dump through copy-on-write twins and the rate of the
// copy from the twins afterwards (freeze-ms, twin-MiB/s); the freeze of
// one that copies while frozen and its copy rate (freeze-copying-ms,
// copy-MiB/s: raw bytes before compression, which runs after the tree
// resumes); the time of a full dump that kills the tree; restore time;
// beside memcpy bandwidth measured in the same run. Sizes in MiB come from
// FTL_BENCH_SIZES (default "64"; e.g. "64,256,1024,4096").
//
//	go test -run XXX -bench Checkpoint -benchtime 3x ./snapshot/
func BenchmarkCheckpoint(b *testing.B) {
	sizes := []int{64}
	if s := os.Getenv("FTL_BENCH_SIZES"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				b.Fatalf("FTL_BENCH_SIZES: %v", err)
			}
			sizes = append(sizes, n)
		}
	}
	bin := buildC(b, "fill")
	b.Run("memcpy", func(b *testing.B) {
		src := make([]byte, 256<<20)
		dst := make([]byte, 256<<20)
		for i := range src {
			src[i] = byte(i)
		}
		copy(dst, src) // fault in
		b.SetBytes(int64(len(src)))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			copy(dst, src)
		}
	})
	for _, mib := range sizes {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			var freeze, twinCopy, frozen, frozenCopy, dump, restore time.Duration
			for i := 0; i < b.N; i++ {
				f, tc, fr, fc, d, r := checkpointOnce(b, bin, mib)
				freeze, twinCopy, frozen, frozenCopy = freeze+f, twinCopy+tc, frozen+fr, frozenCopy+fc
				dump += d
				restore += r
			}
			n := float64(b.N)
			b.ReportMetric(freeze.Seconds()*1000/n, "freeze-ms")
			b.ReportMetric(float64(mib)/(twinCopy.Seconds()/n), "twin-MiB/s")
			b.ReportMetric(frozen.Seconds()*1000/n, "freeze-copying-ms")
			b.ReportMetric(float64(mib)/(frozenCopy.Seconds()/n), "copy-MiB/s")
			b.ReportMetric(dump.Seconds()*1000/n, "dump-ms")
			b.ReportMetric(restore.Seconds()*1000/n, "restore-ms")
		})
	}
}

func checkpointOnce(b *testing.B, bin string, mib int) (freeze, twinCopy, frozen, frozenCopy, dump, restore time.Duration) {
	b.StopTimer()
	cmd := exec.Command(bin, strconv.Itoa(mib))
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer func() { unix.Kill(pid, unix.SIGKILL); cmd.Wait() }()
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		b.Fatalf("fill: %q", line)
	}
	dir := b.TempDir()
	b.StartTimer()
	tw, fr := liveDumps(b, pid, dir)
	freeze, twinCopy, frozen, frozenCopy = tw.Frozen, tw.Memory, fr.Frozen, fr.Memory
	var root int
	dump, restore, root = dumpKillRestore(b, cmd, dir)
	unix.Kill(root, unix.SIGKILL)
	reapTasks([]int{root}, 5*time.Second)
	return
}

// liveDumps makes two --leave-running dumps of pid: through copy-on-write
// twins, then copying while frozen.
func liveDumps(b *testing.B, pid int, dir string) (twin, frozen *DumpStats) {
	for _, fc := range []bool{false, true} {
		st, err := Dump(filepath.Join(dir, fmt.Sprint("live-", fc)), DumpOptions{Roots: []int{pid}, LeaveRunning: true, FrozenCopy: fc})
		if err != nil {
			b.Fatalf("dump --leave-running (frozen copy %v): %v", fc, err)
		}
		if fc {
			frozen = st
		} else {
			twin = st
		}
	}
	return twin, frozen
}

// dumpKillRestore dumps cmd's process to dir/img (killing it), reaps it and
// restores the image; the timer stops after the restore.
func dumpKillRestore(b *testing.B, cmd *exec.Cmd, dir string) (dump, restore time.Duration, root int) {
	st, err := Dump(filepath.Join(dir, "img"), DumpOptions{Roots: []int{cmd.Process.Pid}})
	if err != nil {
		b.Fatalf("dump: %v", err)
	}
	dump = st.Total
	cmd.Wait()
	t0 := time.Now()
	res, err := Restore(filepath.Join(dir, "img"), RestoreOptions{})
	if err != nil {
		b.Fatalf("restore: %v", err)
	}
	restore = time.Since(t0)
	b.StopTimer()
	return dump, restore, res.Root
}

// BenchmarkCheckpointMemcached is the bar program: memcached -t 4
// holding N MiB of values (FTL_BENCH_MEMCACHED, default "1024"). Per
// iteration: the freeze of a --leave-running dump through copy-on-write
// twins and the same with the copy made while frozen, a full dump that
// kills it, and the restore; a sample of keys is read back afterwards.
//
//	go test -run XXX -bench CheckpointMemcached -benchtime 2x ./snapshot/
func BenchmarkCheckpointMemcached(b *testing.B) {
	if _, err := exec.LookPath("memcached"); err != nil {
		b.Skip("memcached not installed")
	}
	buildC(b, "fill") // root and gcc checks
	sizes := []int{1024}
	if s := os.Getenv("FTL_BENCH_MEMCACHED"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				b.Fatalf("FTL_BENCH_MEMCACHED: %v", err)
			}
			sizes = append(sizes, n)
		}
	}
	for _, mib := range sizes {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			var twin, frozen, dump, restore time.Duration
			for i := 0; i < b.N; i++ {
				tw, fr, d, r := memcachedOnce(b, mib)
				twin, frozen, dump, restore = twin+tw, frozen+fr, dump+d, restore+r
			}
			n := float64(b.N)
			b.ReportMetric(twin.Seconds()*1000/n, "freeze-ms")
			b.ReportMetric(frozen.Seconds()*1000/n, "freeze-copying-ms")
			b.ReportMetric(dump.Seconds()*1000/n, "dump-ms")
			b.ReportMetric(restore.Seconds()*1000/n, "restore-ms")
		})
	}
}

const mcValue = 4000

func mcValueOf(i int) []byte {
	v := make([]byte, mcValue)
	x := uint64(i)*2654435761 + 1
	for j := 0; j < mcValue/2; j += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(v[j:], x)
	}
	for j := mcValue / 2; j < mcValue; j++ {
		v[j] = "the quick brown fox jumps over the lazy dog "[j%44]
	}
	return v
}

// memcachedFill starts memcached on a free port and stores about mib MiB
// of values (pipelined, noreply); it returns the process and key count.
func memcachedFill(b *testing.B, mib int) (*exec.Cmd, int, int) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	// An fd this process inherited without CLOEXEC would reach memcached
	// as a pipe to outside its tree, which the dump refuses.
	unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	cmd := exec.Command("memcached", "-u", "root", "-t", "4", "-U", "0", "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-m", strconv.Itoa(mib*5/4+64))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var c net.Conn
	for i := 0; i < 200; i++ {
		if c, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		unix.Kill(cmd.Process.Pid, unix.SIGKILL)
		cmd.Wait()
		b.Fatalf("memcached does not answer: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	keys := mib << 20 / (mcValue + 100)
	w := bufio.NewWriterSize(c, 1<<20)
	for i := 0; i < keys; i++ {
		fmt.Fprintf(w, "set k%d 0 0 %d noreply\r\n", i, mcValue)
		w.Write(mcValueOf(i))
		w.WriteString("\r\n")
	}
	w.WriteString("version\r\n")
	w.Flush()
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "VERSION") {
		b.Fatalf("fill memcached: %q %v", line, err)
	}
	return cmd, port, keys
}

// memcachedCheck reads back every 997th key.
func memcachedCheck(b *testing.B, port, keys int) {
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		b.Fatalf("restored memcached: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(c)
	for i := 0; i < keys; i += 997 {
		fmt.Fprintf(c, "get k%d\r\n", i)
		head, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(head, "VALUE ") {
			b.Fatalf("get k%d after restore: %q %v", i, head, err)
		}
		v := make([]byte, mcValue+len("\r\nEND\r\n"))
		if _, err := io.ReadFull(r, v); err != nil || !bytes.Equal(v[:mcValue], mcValueOf(i)) {
			b.Fatalf("k%d differs after restore (%v)", i, err)
		}
	}
}

func memcachedOnce(b *testing.B, mib int) (twin, frozen, dump, restore time.Duration) {
	b.StopTimer()
	cmd, port, keys := memcachedFill(b, mib)
	pid := cmd.Process.Pid
	defer func() { unix.Kill(pid, unix.SIGKILL); cmd.Wait() }()
	dir := b.TempDir()
	b.StartTimer()
	tw, fr := liveDumps(b, pid, dir)
	twin, frozen = tw.Frozen, fr.Frozen
	var root int
	dump, restore, root = dumpKillRestore(b, cmd, dir)
	defer func() {
		unix.Kill(root, unix.SIGKILL)
		reapTasks([]int{root}, 5*time.Second)
	}()
	memcachedCheck(b, port, keys)
	return
}
