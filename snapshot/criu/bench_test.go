package criu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ftlinux/ftl/snapshot/internal/mcfill"
	"golang.org/x/sys/unix"
)

// BenchmarkDumpRestore dumps (killing) and restores one process holding
// 64 MiB and 256 MiB of non-zero anonymous memory, over and over, and
// reports per operation: wall time of Dump and Restore, and CRIU's own
// freezing, frozen, memdump and memwrite times. After the loop the restored
// process's memory checksum is compared with the original's.
//
//	go test -run '^$' -bench DumpRestore -benchtime 5x ./snapshot/criu/
//
// Images go to $FTL_BENCH_DIR when set (e.g. a tmpfs), else t.TempDir().
func BenchmarkDumpRestore(b *testing.B) {
	needCRIU(b)
	bin := buildC(b, "hog")
	for _, mib := range []int{64, 256} {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			benchDumpRestore(b, bin, mib)
		})
	}
}

func benchDumpRestore(b *testing.B, bin string, mib int) {
	cmd, state := startHog(b, bin, mib)
	base := filepath.Dir(state) // images go beside the state file
	pid := cmd.Process.Pid
	sum0 := checksum(b, pid, state)

	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	var dump, restore, freezing, frozen, memdump, memwrite time.Duration
	var pages uint64
	restored := false
	b.ResetTimer()
	for i := range b.N {
		img := filepath.Join(base, fmt.Sprintf("img%d", i))
		t0 := time.Now()
		if err := Dump(ctx, DumpOptions{Pid: pid, Dir: img, LogLevel: 2}); err != nil {
			b.Fatalf("Dump: %v", err)
		}
		dump += time.Since(t0)
		b.StopTimer()
		if restored {
			waitPid(b, pid)
		} else {
			reapKilled(b, cmd)
		}
		st, err := ReadDumpStats(img)
		if err != nil {
			b.Fatal(err)
		}
		freezing += st.Freezing
		frozen += st.Frozen
		memdump += st.MemDump
		memwrite += st.MemWrite
		pages += st.PagesWritten
		b.StartTimer()
		t1 := time.Now()
		got, err := Restore(ctx, RestoreOptions{Dir: img, LogLevel: 2})
		if err != nil {
			b.Fatalf("Restore: %v", err)
		}
		restore += time.Since(t1)
		b.StopTimer()
		if got != pid {
			b.Fatalf("restored pid %d; want %d", got, pid)
		}
		if !restored {
			restored = true
			b.Cleanup(func() { killRestored(b, pid) })
		}
		os.RemoveAll(img)
		b.StartTimer()
	}
	b.StopTimer()
	if sum := checksum(b, pid, state); sum != sum0 {
		b.Fatalf("memory checksum %d after %d dump/restore cycles; was %d", sum, b.N, sum0)
	}
	n := float64(b.N)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / n }
	b.ReportMetric(ms(dump), "dump-ms")
	b.ReportMetric(ms(freezing), "freezing-ms")
	b.ReportMetric(ms(frozen), "frozen-ms")
	b.ReportMetric(ms(memdump), "memdump-ms")
	b.ReportMetric(ms(memwrite), "memwrite-ms")
	b.ReportMetric(ms(restore), "restore-ms")
	b.ReportMetric(float64(pages)/n, "pages")
}

// checksum asks hog (SIGUSR1) for the checksum of its memory and waits for
// it to appear in state.
func checksum(tb testing.TB, pid int, state string) uint64 {
	tb.Helper()
	if err := os.WriteFile(state, []byte("pending             \n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Kill(pid, unix.SIGUSR1); err != nil {
		tb.Fatalf("signal hog %d: %v", pid, err)
	}
	var sum uint64
	waitFor(tb, "hog's checksum", func() bool {
		var err error
		sum, err = readNumber(state)
		return err == nil
	})
	return sum
}

// BenchmarkDumpLeaveRunning dumps a running 64 MiB and 256 MiB process and
// lets it go on, the way a periodic checkpoint would: frozen-ms is the
// pause the service sees.
//
//	go test -run '^$' -bench DumpLeaveRunning -benchtime 5x ./snapshot/criu/
func BenchmarkDumpLeaveRunning(b *testing.B) {
	needCRIU(b)
	bin := buildC(b, "hog")
	for _, mib := range []int{64, 256} {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			cmd, state := startHog(b, bin, mib)
			ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
			defer cancel()
			var frozen, memdump, memwrite time.Duration
			b.ResetTimer()
			for i := range b.N {
				img := filepath.Join(filepath.Dir(state), fmt.Sprintf("img%d", i))
				if err := Dump(ctx, DumpOptions{Pid: cmd.Process.Pid, Dir: img, LeaveRunning: true, LogLevel: 2}); err != nil {
					b.Fatalf("Dump: %v", err)
				}
				b.StopTimer()
				st, err := ReadDumpStats(img)
				if err != nil {
					b.Fatal(err)
				}
				frozen += st.Frozen
				memdump += st.MemDump
				memwrite += st.MemWrite
				os.RemoveAll(img)
				b.StartTimer()
			}
			b.StopTimer()
			if err := unix.Kill(cmd.Process.Pid, 0); err != nil {
				b.Fatalf("hog gone after leave-running dumps: %v", err)
			}
			n := float64(b.N)
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / n }
			b.ReportMetric(ms(frozen), "frozen-ms")
			b.ReportMetric(ms(memdump), "memdump-ms")
			b.ReportMetric(ms(memwrite), "memwrite-ms")
		})
	}
}

// startHog starts the hog program filling mib MiB in its own session, its
// state file in a temporary directory ($FTL_BENCH_DIR, e.g. a tmpfs, when
// set), and waits until its memory is filled.
func startHog(b *testing.B, bin string, mib int) (*exec.Cmd, string) {
	base := b.TempDir()
	if d := os.Getenv("FTL_BENCH_DIR"); d != "" {
		var err error
		if base, err = os.MkdirTemp(d, "criu-bench-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(base) })
	}
	state := filepath.Join(base, "state")
	cmd := startSession(b, bin, strconv.Itoa(mib), state)
	waitFor(b, "hog to fill its memory", func() bool {
		s, err := os.ReadFile(state)
		return err == nil && len(s) > 5 && string(s[:5]) == "ready"
	})
	return cmd, state
}

// BenchmarkMemcached runs CRIU on the bar program, the way
// snapshot's BenchmarkCheckpointMemcached runs ftl's engine: memcached
// -t 4 holding N MiB (FTL_BENCH_MEMCACHED, default "1024"); per
// iteration a --leave-running dump (frozen-ms), a dump that kills it and
// the restore; a sample of keys is read back.
//
//	go test -run '^$' -bench Memcached -benchtime 2x ./snapshot/criu/
func BenchmarkMemcached(b *testing.B) {
	needCRIU(b)
	if _, err := exec.LookPath("memcached"); err != nil {
		b.Skip("memcached not installed")
	}
	for _, mib := range mcfill.Sizes(b, "FTL_BENCH_MEMCACHED", []int{1024}) {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			var frozen, dump, restore time.Duration
			for i := 0; i < b.N; i++ {
				f, d, r := criuMemcachedOnce(b, mib)
				frozen, dump, restore = frozen+f, dump+d, restore+r
			}
			n := float64(b.N)
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / n }
			b.ReportMetric(ms(frozen), "frozen-ms")
			b.ReportMetric(ms(dump), "dump-ms")
			b.ReportMetric(ms(restore), "restore-ms")
		})
	}
}

func criuMemcachedOnce(b *testing.B, mib int) (frozen, dump, restore time.Duration) {
	b.StopTimer()
	mc := mcfill.Start(b, mib)
	pid := mc.Cmd.Process.Pid
	killed := false
	defer func() {
		if !killed {
			unix.Kill(pid, unix.SIGKILL)
			mc.Cmd.Wait()
		}
	}()
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	dir := b.TempDir()
	b.StartTimer()
	live := filepath.Join(dir, "live")
	if err := Dump(ctx, DumpOptions{Pid: pid, Dir: live, LeaveRunning: true, LogLevel: 2}); err != nil {
		b.Fatalf("Dump --leave-running: %v", err)
	}
	st, err := ReadDumpStats(live)
	if err != nil {
		b.Fatal(err)
	}
	frozen = st.Frozen
	os.RemoveAll(live)
	img := filepath.Join(dir, "img")
	t0 := time.Now()
	if err := Dump(ctx, DumpOptions{Pid: pid, Dir: img, LogLevel: 2}); err != nil {
		b.Fatalf("Dump: %v", err)
	}
	dump = time.Since(t0)
	reapKilled(b, mc.Cmd)
	killed = true
	t0 = time.Now()
	got, err := Restore(ctx, RestoreOptions{Dir: img, LogLevel: 2})
	if err != nil {
		b.Fatalf("Restore: %v", err)
	}
	restore = time.Since(t0)
	b.StopTimer()
	defer killRestored(b, got)
	mc.Check(b)
	return frozen, dump, restore
}
