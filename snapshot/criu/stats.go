package criu

import (
	"fmt"
	"os"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/stats"
)

// DumpStats are CRIU's own timings of a dump (its stats-dump file).
type DumpStats struct {
	Freezing time.Duration // seizing and stopping every task
	Frozen   time.Duration // tasks stopped, from freeze to resume or kill
	MemDump  time.Duration // collecting memory into pipes while frozen
	MemWrite time.Duration // writing collected pages to the image
	// Pages counts in 4 KiB pages.
	PagesScanned uint64
	PagesWritten uint64
}

// RestoreStats are CRIU's own timings of a restore (its stats-restore file).
type RestoreStats struct {
	Forking       time.Duration // recreating the process tree
	Restore       time.Duration // whole restore as CRIU counts it
	PagesRestored uint64
}

func usec(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }

// ReadDumpStats reads the statistics CRIU left in dir after a dump.
func ReadDumpStats(dir string) (DumpStats, error) {
	d, err := os.Open(dir)
	if err != nil {
		return DumpStats{}, fmt.Errorf("criu dump stats: %w", err)
	}
	defer d.Close()
	s, err := stats.CriuGetDumpStats(d)
	if err != nil {
		return DumpStats{}, fmt.Errorf("criu dump stats in %s: %w", dir, err)
	}
	return DumpStats{
		Freezing:     usec(s.GetFreezingTime()),
		Frozen:       usec(s.GetFrozenTime()),
		MemDump:      usec(s.GetMemdumpTime()),
		MemWrite:     usec(s.GetMemwriteTime()),
		PagesScanned: s.GetPagesScanned(),
		PagesWritten: s.GetPagesWritten(),
	}, nil
}

// ReadRestoreStats reads the statistics CRIU left in dir after a restore.
func ReadRestoreStats(dir string) (RestoreStats, error) {
	d, err := os.Open(dir)
	if err != nil {
		return RestoreStats{}, fmt.Errorf("criu restore stats: %w", err)
	}
	defer d.Close()
	s, err := stats.CriuGetRestoreStats(d)
	if err != nil {
		return RestoreStats{}, fmt.Errorf("criu restore stats in %s: %w", dir, err)
	}
	return RestoreStats{
		Forking:       usec(s.GetForkingTime()),
		Restore:       usec(s.GetRestoreTime()),
		PagesRestored: s.GetPagesRestored(),
	}, nil
}
