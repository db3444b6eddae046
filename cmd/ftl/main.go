// Command ftl gives unmodified Linux servers transparent fault tolerance.
//
// The binary is a set of thin subcommands over the project's packages; each
// subcommand lives in its own file and registers itself with the root command
// from an init function. Exit status: 0 on success, 2 for a usage error (bad
// flag, missing program, unknown or duplicate name), 1 for a runtime failure.
// `ftl run` in the foreground exits with the wrapped program's own status.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// rootCmd is the top of the command tree; subcommands add themselves in init.
var rootCmd = &cobra.Command{
	Use:   "ftl",
	Short: "transparent fault tolerance for unmodified Linux servers",
	Long: `ftl wraps an unmodified server program (memcached, redis, nginx, ...) so that
it can be checkpointed, restored and, in later releases, failed over to another
host with its clients' TCP connections kept open.

State lives under $FTL_HOME (default /var/lib/ftl).`,
	SilenceUsage:  true,
	SilenceErrors: true,
}

// usageError marks an error caused by how ftl was called; it exits with 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usage error (exit status 2) with a formatted message.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitError carries an exit status chosen by a subcommand (for example the
// wrapped program's own status); nothing more is printed for it.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	rootCmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	rootCmd.Args = usageArgs(cobra.NoArgs)
	rootCmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	os.Exit(run(os.Args[1:]))
}

// run executes the command line and maps its error to an exit status.
func run(args []string) int {
	rootCmd.SetArgs(args)
	err := rootCmd.Execute()
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintf(os.Stderr, "ftl: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// usageArgs wraps a cobra argument check so that its failure is a usage
// error (exit status 2). Every subcommand sets Args through it.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
