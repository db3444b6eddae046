package libos

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestShimCloseRangeUnbounded checks that close_range(first, ~0U) and
// closefrom return at once under the shim, also before any socket is
// tracked: an unsigned comparison against the "nothing tracked" marker once
// made the shim walk (and wrap) the whole fd space forever.
func TestShimCloseRangeUnbounded(t *testing.T) {
	bin := buildC(t, "closerange")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = shimEnv(t, newRegion(t))
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("close_range under the shim did not return within 10s (spinning)")
	}
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("closerange: %v\n%s", err, out)
	}
}
