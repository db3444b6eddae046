package snapshot

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkCheckpoint measures, against resident size: the freeze of a
// --leave-running dump, dump throughput (raw bytes copied per second in its
// memory phase, before compression, which runs after the tree resumes),
// the time of a full dump that kills the tree, and restore time;
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
			var freeze, memory, dump, restore time.Duration
			for i := 0; i < b.N; i++ {
				f, m, d, r := checkpointOnce(b, bin, mib)
				freeze += f
				memory += m
				dump += d
				restore += r
			}
			n := float64(b.N)
			b.ReportMetric(freeze.Seconds()*1000/n, "freeze-ms")
			b.ReportMetric(float64(mib)/(memory.Seconds()/n), "dump-MiB/s")
			b.ReportMetric(dump.Seconds()*1000/n, "dump-ms")
			b.ReportMetric(restore.Seconds()*1000/n, "restore-ms")
		})
	}
}

func checkpointOnce(b *testing.B, bin string, mib int) (freeze, memory, dump, restore time.Duration) {
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
	st, err := Dump(filepath.Join(dir, "live"), DumpOptions{Roots: []int{pid}, LeaveRunning: true})
	if err != nil {
		b.Fatalf("dump --leave-running: %v", err)
	}
	freeze, memory = st.Frozen, st.Memory
	st, err = Dump(filepath.Join(dir, "img"), DumpOptions{Roots: []int{pid}})
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
	unix.Kill(res.Root, unix.SIGKILL)
	reapTasks([]int{res.Root}, 5*time.Second)
	return
}
