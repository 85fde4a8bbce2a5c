package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestSkipfFailsInCI runs the check in a child test process, once with
// CI=true and once without, and looks at how it ended.
func TestSkipfFailsInCI(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "1" {
		NeedTool(t, "p4mesh-no-such-tool", "this test")
		t.Log("NeedTool returned")
		return
	}
	for _, c := range []struct {
		ci       string
		wantFail bool
		want     string
	}{
		{"true", true, "--- FAIL"},
		{"1", true, "--- FAIL"},
		{"", false, "--- SKIP"},
		{"false", false, "--- SKIP"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSkipfFailsInCI$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD=1", "CI="+c.ci)
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != c.wantFail || !strings.Contains(string(out), c.want) || !strings.Contains(string(out), "p4mesh-no-such-tool is not installed; it is needed for this test") {
			t.Errorf("CI=%q: exit error %v; want failed=%v and %q in:\n%s", c.ci, err, c.wantFail, c.want, out)
		}
		if strings.Contains(string(out), "NeedTool returned") {
			t.Errorf("CI=%q: NeedTool returned with the tool missing:\n%s", c.ci, out)
		}
	}
}
