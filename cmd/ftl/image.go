package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ftlinux/ftl/snapshot"
	"github.com/ftlinux/ftl/snapshot/image"
)

var imageCmd = &cobra.Command{
	Use:   "image",
	Short: "look at checkpoint images",
	Args:  usageArgs(cobra.NoArgs),
	RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
}

var inspectJSON bool

var imageInspectCmd = &cobra.Command{
	Use:   "inspect DIR [--json]",
	Short: "show what an image holds",
	Long: `Show an image's format version, parent image, processes, threads, mappings,
file descriptors by kind and sizes. The image is checked whole first
(checksums of the manifest and of every page chunk).`,
	Args: usageArgs(cobra.ExactArgs(1)),
	RunE: func(_ *cobra.Command, args []string) error {
		if cm, ok := isCRIUImage(args[0]); ok {
			return inspectCRIU(args[0], cm, inspectJSON)
		}
		m, err := image.Open(args[0])
		if err != nil {
			return fmt.Errorf("inspect %s: %w", args[0], err)
		}
		info := summarize(args[0], m)
		if inspectJSON {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(info)
		}
		printSummary(info)
		return nil
	},
}

// imageInfo is the --json form of `ftl image inspect`.
type imageInfo struct {
	Dir           string         `json:"dir"`
	Version       int            `json:"version"`
	Name          string         `json:"name"`
	Parent        string         `json:"parent"`
	Created       time.Time      `json:"created"`
	Kernel        string         `json:"kernel"`
	PidNS         bool           `json:"pid_namespace"`
	Root          int            `json:"root"`
	PageBytes     int64          `json:"page_bytes"`
	StoredBytes   int64          `json:"stored_bytes"`
	Chunks        int            `json:"chunks"`
	SharedObjects int            `json:"shared_objects"`
	FDKinds       map[string]int `json:"fds_by_kind"`
	Processes     []procInfo     `json:"processes"`
	Warnings      []string       `json:"warnings,omitempty"`
}

type procInfo struct {
	Pid      int       `json:"pid"`
	PPid     int       `json:"ppid"`
	Pgid     int       `json:"pgid"`
	Sid      int       `json:"sid"`
	Comm     string    `json:"comm"`
	Exe      string    `json:"exe"`
	Threads  []int     `json:"threads"`
	Pages    int64     `json:"pages"`
	FDs      int       `json:"fds"`
	Mappings []mapInfo `json:"mappings"`
}

type mapInfo struct {
	Start string `json:"start"`
	End   string `json:"end"`
	Perms string `json:"perms"`
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	Pages int64  `json:"pages"`
}

func summarize(dir string, m *image.Manifest) imageInfo {
	info := imageInfo{Dir: dir, Version: m.Version, Name: m.Name, Parent: m.Parent, Created: time.Unix(0, m.Created).UTC(),
		Kernel: m.Kernel, PidNS: m.PidNS, Root: m.Root, PageBytes: m.PageBytes, Chunks: len(m.Chunks),
		SharedObjects: len(m.Shared), Warnings: m.Warnings, FDKinds: snapshot.FDKinds(m)}
	for _, c := range m.Chunks {
		info.StoredBytes += int64(c.Comp)
	}
	for _, p := range m.Processes {
		pi := procInfo{Pid: p.Pid, PPid: p.PPid, Pgid: p.Pgid, Sid: p.Sid, Comm: p.Comm, Exe: p.Exe, FDs: snapshot.FDCount(p)}
		for _, t := range p.Threads {
			pi.Threads = append(pi.Threads, t.Tid)
		}
		for _, mp := range p.Mappings {
			perms := []byte("---p")
			if mp.Prot&1 != 0 {
				perms[0] = 'r'
			}
			if mp.Prot&2 != 0 {
				perms[1] = 'w'
			}
			if mp.Prot&4 != 0 {
				perms[2] = 'x'
			}
			if mp.Shared {
				perms[3] = 's'
			}
			n := image.Pages(mp.Extents)
			pi.Pages += n
			pi.Mappings = append(pi.Mappings, mapInfo{Start: fmt.Sprintf("%x", mp.Start), End: fmt.Sprintf("%x", mp.End),
				Perms: string(perms), Kind: mp.Kind, Name: mp.Name, Pages: n})
		}
		info.Processes = append(info.Processes, pi)
	}
	return info
}

func printSummary(info imageInfo) {
	parent := info.Parent
	if parent == "" {
		parent = "none (full image)"
	}
	fmt.Printf("image      %s\nformat     version %d\nname       %s\nparent     %s\ncreated    %s\nkernel     %s\n",
		info.Dir, info.Version, info.Name, parent, info.Created.Format(time.RFC3339), info.Kernel)
	fmt.Printf("pages      %d (%s raw, %s stored in %d chunks)\nshared     %d objects\n",
		info.PageBytes/4096, sizeStr(info.PageBytes), sizeStr(info.StoredBytes), info.Chunks, info.SharedObjects)
	var kinds []string
	for k, n := range info.FDKinds {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(kinds)
	fmt.Printf("fds        %s\n\n", strings.Join(kinds, " "))
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "PID\tPPID\tPGID\tSID\tCOMM\tTHREADS\tMAPPINGS\tPAGES\tFDS")
	for _, p := range info.Processes {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%d\n", p.Pid, p.PPid, p.Pgid, p.Sid, p.Comm, len(p.Threads), len(p.Mappings), p.Pages, p.FDs)
	}
	tw.Flush()
	for _, w := range info.Warnings {
		fmt.Printf("warning: %s\n", w)
	}
}

func sizeStr(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func init() {
	imageInspectCmd.Flags().BoolVar(&inspectJSON, "json", false, "print JSON")
	imageCmd.AddCommand(imageInspectCmd)
	rootCmd.AddCommand(imageCmd)
}
