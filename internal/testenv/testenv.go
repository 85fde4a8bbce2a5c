// Package testenv decides what a test does when the machine lacks
// something it needs: a program on PATH (ip, ping, iperf3, go) or root.
// Elsewhere the test skips and says why. In CI it fails: CI installs every
// tool the tests use and runs them as root (.ci/run), so something missing
// there is a broken CI, and a skip would hide it behind a green run.
//
// CI is CI=true in the environment, as .ci/run and most CI systems set it.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// CI reports whether the tests run in CI: the CI environment variable is
// true (or 1).
func CI() bool {
	ci, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && ci
}

// Skipf skips tb, for a reason in the environment, with the reason; in CI
// it fails tb with it instead.
func Skipf(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		tb.Fatalf("%s (in CI, with CI=true, a test that needs it fails instead of skipping)", msg)
	}
	tb.Skip("skipped: " + msg)
}

// NeedTool returns the path of program name, which tb needs for why; if it
// is not on PATH, tb skips (fails in CI).
func NeedTool(tb testing.TB, name, why string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Skipf(tb, "%s is not installed; it is needed for %s", name, why)
	}
	return path
}

// NeedRoot skips tb (fails it in CI) unless it runs as root, which tb needs
// for why.
func NeedRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Skipf(tb, "needs root for %s", why)
	}
}
