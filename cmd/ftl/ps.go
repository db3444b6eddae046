package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ftlinux/ftl/libos/launcher"
	"github.com/spf13/cobra"
)

var psJSON bool

var psCmd = &cobra.Command{
	Use:   "ps [NAME]",
	Short: "list wrapped programs, or show one in detail",
	Long: `List the programs running under ftl: name, pids (inside each run's namespace),
uptime, fault-tolerance mode, open network connections and socket bytes in/out.
With NAME, show that run in detail. --json prints the same for scripts.

Connections and bytes come from the shim's shared-memory region: bytes are the
socket payload bytes every process of the run read and wrote; connections are
the TCP/UDP sockets open now (established or listening are shown apart).`,
	Args: usageArgs(cobra.MaximumNArgs(1)),
	RunE: func(_ *cobra.Command, args []string) error {
		if len(args) == 1 {
			s, err := launcher.Lookup(args[0])
			if err != nil {
				return launcherError(err)
			}
			info := describe(s)
			if psJSON {
				return printJSON(info)
			}
			printDetail(info)
			return nil
		}
		specs, err := launcher.List()
		if err != nil {
			return err
		}
		infos := make([]runInfo, 0, len(specs))
		for _, s := range specs {
			infos = append(infos, describe(s))
		}
		if psJSON {
			return printJSON(infos)
		}
		printTable(infos)
		return nil
	},
}

// runInfo is one run as `ftl ps` shows it; its JSON form is the --json output.
type runInfo struct {
	Name          string             `json:"name"`
	Mode          string             `json:"mode"`
	Detached      bool               `json:"detached"`
	Argv          []string           `json:"argv"`
	Dir           string             `json:"dir"`
	Created       time.Time          `json:"created"`
	UptimeSeconds float64            `json:"uptime_seconds"`
	InitPid       int                `json:"init_pid"`
	PidNS         string             `json:"pid_ns"`
	MntNS         string             `json:"mnt_ns"`
	Processes     []launcher.Process `json:"processes"`
	Region        string             `json:"region"`
	Log           string             `json:"log,omitempty"`
	RestoredFrom  string             `json:"restored_from,omitempty"`
	Stats         *runStats          `json:"stats"` // nil when the region cannot be read
	StatsError    string             `json:"stats_error,omitempty"`
}

func describe(s *launcher.Spec) runInfo {
	procs, _ := s.Processes()
	if procs == nil {
		procs = []launcher.Process{}
	}
	info := runInfo{
		Name: s.Name, Mode: s.Mode, Detached: s.Detached, Argv: s.Argv, Dir: s.Dir,
		Created: s.Created, UptimeSeconds: time.Since(s.Created).Round(time.Millisecond).Seconds(),
		InitPid: s.InitPid, PidNS: s.PidNS, MntNS: s.MntNS, Processes: procs,
		Region: s.Region, Log: s.Log, RestoredFrom: s.RestoredFrom,
	}
	st, err := regionStats(s.Region)
	if err != nil {
		info.StatsError = err.Error()
	} else {
		info.Stats = st
	}
	return info
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func pidList(ps []launcher.Process) string {
	if len(ps) == 0 {
		return "-"
	}
	var s []string
	for _, p := range ps {
		s = append(s, strconv.Itoa(p.NSPid))
	}
	return strings.Join(s, ",")
}

func uptime(sec float64) string {
	return (time.Duration(sec) * time.Second).String()
}

func printTable(infos []runInfo) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tPIDS\tUPTIME\tMODE\tCONNS\tIN\tOUT")
	for _, in := range infos {
		conns, bin, bout := "-", "-", "-"
		if in.Stats != nil {
			conns = strconv.Itoa(in.Stats.Established)
			bin, bout = strconv.FormatUint(in.Stats.BytesIn, 10), strconv.FormatUint(in.Stats.BytesOut, 10)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", in.Name, pidList(in.Processes), uptime(in.UptimeSeconds), in.Mode, conns, bin, bout)
	}
	w.Flush()
}

func printDetail(in runInfo) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "name:\t%s\n", in.Name)
	fmt.Fprintf(w, "command:\t%s\n", strings.Join(in.Argv, " "))
	fmt.Fprintf(w, "dir:\t%s\n", in.Dir)
	fmt.Fprintf(w, "mode:\t%s\n", in.Mode)
	fmt.Fprintf(w, "started:\t%s (up %s)\n", in.Created.Local().Format(time.RFC3339), uptime(in.UptimeSeconds))
	fmt.Fprintf(w, "init:\thost pid %d, %s, %s\n", in.InitPid, in.PidNS, in.MntNS)
	if in.Detached {
		fmt.Fprintf(w, "log:\t%s\n", in.Log)
	}
	if in.RestoredFrom != "" {
		fmt.Fprintf(w, "restored from:\t%s\n", in.RestoredFrom)
	}
	fmt.Fprintf(w, "region:\t%s\n", in.Region)
	w.Flush()
	fmt.Println("processes:")
	w = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  PID\tPPID\tHOST PID\tCOMMAND")
	for _, p := range in.Processes {
		fmt.Fprintf(w, "  %d\t%d\t%d\t%s\n", p.NSPid, p.PPid, p.HostPid, p.Comm)
	}
	w.Flush()
	if in.Stats == nil {
		fmt.Printf("connections: unknown (%s)\n", in.StatsError)
		return
	}
	st := in.Stats
	fmt.Printf("socket bytes: in %d, out %d\n", st.BytesIn, st.BytesOut)
	fmt.Printf("connections: %d established, %d listening\n", st.Established, st.Listening)
	if len(st.Conns) > 0 {
		w = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "  PID\tFD\tKIND\tSTATE\tLOCAL\tPEER\tIN\tOUT")
		for _, c := range st.Conns {
			fmt.Fprintf(w, "  %d\t%d\t%s\t%s\t%s\t%s\t%d\t%d\n", c.Pid, c.FD, c.Kind, c.State, c.Local, c.Peer, c.BytesIn, c.BytesOut)
		}
		w.Flush()
	}
}

func init() {
	psCmd.Flags().BoolVar(&psJSON, "json", false, "print JSON for scripts")
	rootCmd.AddCommand(psCmd)
}
