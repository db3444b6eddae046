package snapshot

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ftlinux/ftl/bench/loadgen"
	"github.com/ftlinux/ftl/snapshot/internal/mcfill"
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
	sizes := mcfill.Sizes(b, "FTL_BENCH_SIZES", []int{64})
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

// liveDumps makes two --leave-running dumps of pid: copying while frozen,
// then through copy-on-write twins. (In this order: after a twin, the
// first process_vm_readv of each page not written since takes a fault that
// makes the page exclusive again, which slows a frozen copy down.)
func liveDumps(b *testing.B, pid int, dir string) (twin, frozen *DumpStats) {
	for _, fc := range []bool{true, false} {
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
	sizes := mcfill.Sizes(b, "FTL_BENCH_MEMCACHED", []int{1024})
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

func memcachedOnce(b *testing.B, mib int) (twin, frozen, dump, restore time.Duration) {
	b.StopTimer()
	mc := mcfill.Start(b, mib)
	cmd, pid := mc.Cmd, mc.Cmd.Process.Pid
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
	mc.Check(b)
	return
}

// BenchmarkLeaveRunningUnderLoad measures what a --leave-running
// checkpoint does to the clients of a loaded memcached -t 4 holding N MiB
// (FTL_BENCH_MEMCACHED, default "1024"): an open-loop load (4 connections,
// 20,000 requests/s, 10% sets over 10,000 keys) for 10 s without a
// checkpoint, then 10 s with one started 1 s in, through twins (and once
// more copying while frozen); the dump must end inside the window. Reported
// per window: p50, p99, p99.9 and max latency in microseconds, from each
// request's intended send time.
//
//	go test -run XXX -bench LeaveRunningUnderLoad -benchtime 1x ./snapshot/
func BenchmarkLeaveRunningUnderLoad(b *testing.B) {
	if _, err := exec.LookPath("memcached"); err != nil {
		b.Skip("memcached not installed")
	}
	buildC(b, "fill") // root and gcc checks
	for _, mib := range mcfill.Sizes(b, "FTL_BENCH_MEMCACHED", []int{1024}) {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			mc := mcfill.Start(b, mib)
			pid := mc.Cmd.Process.Pid
			defer func() { unix.Kill(pid, unix.SIGKILL); mc.Cmd.Wait() }()
			cfg := loadgen.Config{Addr: fmt.Sprintf("127.0.0.1:%d", mc.Port), Connections: 4, Duration: 10 * time.Second,
				Drain: 2 * time.Second, Rate: 20000, Keys: 10000, ValueSize: 100, SetPercent: 10, Seed: 1}
			ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
			defer cancel()
			if err := loadgen.Preload(ctx, cfg); err != nil {
				b.Fatal(err)
			}
			window := func(name string, dump func() (*DumpStats, error)) {
				done := make(chan error, 1)
				var st *DumpStats
				if dump != nil {
					go func() {
						time.Sleep(time.Second)
						var err error
						st, err = dump()
						if err == nil && st.Total > cfg.Duration-2*time.Second {
							err = fmt.Errorf("the dump took %v: longer than the load window", st.Total)
						}
						done <- err
					}()
				}
				res, err := loadgen.Run(ctx, cfg)
				if err != nil {
					b.Fatalf("%s: load: %v", name, err)
				}
				if dump != nil {
					if err := <-done; err != nil {
						b.Fatalf("%s: dump: %v", name, err)
					}
				}
				h := res.Latency
				us := func(v int64) float64 { return float64(v) / 1000 }
				b.ReportMetric(us(h.ValueAtQuantile(50)), name+"-p50-us")
				b.ReportMetric(us(h.ValueAtQuantile(99)), name+"-p99-us")
				b.ReportMetric(us(h.ValueAtQuantile(99.9)), name+"-p99.9-us")
				b.ReportMetric(us(h.Max()), name+"-max-us")
				if res.Unanswered != 0 || res.Errors != 0 {
					b.Errorf("%s: %d unanswered, %d errors", name, res.Unanswered, res.Errors)
				}
				if st != nil {
					b.Logf("%s: frozen %v, copy after %v, total %v", name, st.Frozen, st.Memory, st.Total)
				}
			}
			dir := b.TempDir()
			window("idle", nil)
			window("twin", func() (*DumpStats, error) {
				return Dump(filepath.Join(dir, "twin"), DumpOptions{Roots: []int{pid}, LeaveRunning: true})
			})
			window("frozencopy", func() (*DumpStats, error) {
				return Dump(filepath.Join(dir, "frozen"), DumpOptions{Roots: []int{pid}, LeaveRunning: true, FrozenCopy: true})
			})
		})
	}
}
