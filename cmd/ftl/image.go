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
	"github.com/ftlinux/ftl/snapshot/netlock"
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
file descriptors by kind and sizes, and whether its network lock (the
iptables rules holding its TCP connections until the restore) is still
installed. The image is checked whole first (checksums of the manifest and
of every page chunk).`,
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
		info.NetLock = lockStatus(m.NetLock)
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
	Argv          []string       `json:"argv,omitempty"`
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
	NetLock       lockInfo       `json:"net_lock"`
	Processes     []procInfo     `json:"processes"`
	Warnings      []string       `json:"warnings,omitempty"`
}

// lockInfo is the state of an image's network lock (snapshot/netlock) as
// iptables shows it now.
type lockInfo struct {
	Tag    string `json:"tag"`    // "" when the image has no lock
	Locked bool   `json:"locked"` // some of its rules are installed
	Rules  int    `json:"rules"`  // how many
	Error  string `json:"error,omitempty"`
}

// lockStatus asks iptables whether the lock tag is installed.
func lockStatus(tag string) lockInfo {
	li := lockInfo{Tag: tag}
	if tag == "" {
		return li
	}
	n, err := netlock.Installed(tag)
	li.Rules, li.Locked = n, n > 0
	if err != nil {
		li.Error = err.Error()
	}
	return li
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
	info := imageInfo{Dir: dir, Version: m.Version, Name: m.Name, Argv: m.Argv, Parent: m.Parent, Created: time.Unix(0, m.Created).UTC(),
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
	fmt.Printf("image      %s\nformat     version %d\nname       %s\n", info.Dir, info.Version, info.Name)
	if len(info.Argv) > 0 {
		fmt.Printf("command    %s\n", strings.Join(info.Argv, " "))
	}
	fmt.Printf("parent     %s\ncreated    %s\nkernel     %s\n", parent, info.Created.Format(time.RFC3339), info.Kernel)
	fmt.Printf("pages      %d (%s raw, %s stored in %d chunks)\nshared     %d objects\n",
		info.PageBytes/4096, sizeStr(info.PageBytes), sizeStr(info.StoredBytes), info.Chunks, info.SharedObjects)
	var kinds []string
	for k, n := range info.FDKinds {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(kinds)
	fmt.Printf("fds        %s\n", strings.Join(kinds, " "))
	switch l := info.NetLock; {
	case l.Tag == "":
		fmt.Printf("net lock   none\n\n")
	case l.Error != "":
		fmt.Printf("net lock   %s: unknown (%s)\n\n", netlock.Comment(l.Tag), l.Error)
	case l.Locked:
		fmt.Printf("net lock   %s: locked, %d iptables rule(s) installed (ftl restore or ftl image unlock removes them)\n\n", netlock.Comment(l.Tag), l.Rules)
	default:
		fmt.Printf("net lock   %s: released (no rule left)\n\n", netlock.Comment(l.Tag))
	}
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

var imageUnlockCmd = &cobra.Command{
	Use:   "unlock DIR",
	Short: "remove the network lock of an image that will not be restored",
	Long: `A checkpoint that kills its tree (ftl checkpoint NAME without
--leave-running) holds the tree's established TCP connections quiet until
the restore: one iptables rule per connection (INPUT chain, comment
ftl-lock:TAG) drops the peers' packets, so they retransmit instead of
getting a reset, and ftl restore removes the rules. An image that is never
restored leaves the rules in place, and the peers hang until their own
timeouts.

ftl image unlock removes the image's rules and prints how many it removed.
The peers' next packets then meet no socket on this host: they get resets
and their connections end. A restore of the image afterwards still brings
the processes back, but peers that sent anything meanwhile have reset
their connections.

An image without a lock (taken with --leave-running, or with no TCP
connection) or whose lock is already gone (restored, or unlocked before)
is reported as such, with exit status 0. Only the manifest is read: an
image whose page store is damaged can still be unlocked.`,
	Example: `  ftl image unlock $FTL_HOME/images/redis/1`,
	Args:    usageArgs(cobra.ExactArgs(1)),
	RunE: func(_ *cobra.Command, args []string) error {
		dir := args[0]
		if _, ok := isCRIUImage(dir); ok {
			return fmt.Errorf("unlock %s: a CRIU image: its network lock is CRIU's own (removed by its restore), not ftl's: %w", dir, image.ErrNotImage)
		}
		m, err := image.ReadManifest(dir)
		if err != nil {
			return fmt.Errorf("unlock %s: %w", dir, err)
		}
		if m.NetLock == "" {
			fmt.Printf("image %s has no network lock (taken with --leave-running or without TCP connections): nothing to remove\n", dir)
			return nil
		}
		n, err := netlock.Unlock(m.NetLock)
		if err != nil {
			return fmt.Errorf("unlock %s: removed %d rule(s) of network lock %s: %w", dir, n, netlock.Comment(m.NetLock), err)
		}
		if n == 0 {
			fmt.Printf("image %s: network lock %s is already gone (restored, or unlocked before): nothing removed\n", dir, netlock.Comment(m.NetLock))
			return nil
		}
		fmt.Printf("image %s: removed %d iptables rule(s) of network lock %s; the peers of its connections now get resets\n", dir, n, netlock.Comment(m.NetLock))
		return nil
	},
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
	imageCmd.AddCommand(imageInspectCmd, imageUnlockCmd)
	rootCmd.AddCommand(imageCmd)
}
