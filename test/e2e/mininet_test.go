package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/internal/testenv"
)

// debianPython is the interpreter Debian's mininet package is installed
// for; the python3 first on PATH may be another without it.
const debianPython = "/usr/bin/python3"

// mininetLinks matches the root namespace's interfaces a Mininet lab
// makes: the underlay bridge and its ports, the host switches' ports.
var mininetLinks = regexp.MustCompile(`^(ul|ul-eth\d+|h\d+-eth\d+)$`)

// TestMininet runs deploy/mininet's headless mode with p4mesh-switch: the
// demo's topology on Mininet, daemons as processes with mutual TLS, real
// pings across the peering, within a VPC and to the non-peered VPC. Then
// nothing it started may be left: no process, no interface
// (runMininetLab).
func TestMininet(t *testing.T) {
	out := runMininetLab(t, 3*time.Minute)
	for _, row := range []string{
		`ok +red1 +blue1 +reply +reply`,
		`ok +red1 +red2 +reply +reply`,
		`ok +blue1 +red1 +reply +reply`,
		`ok +red1 +green1 +no reply +no reply`,
	} {
		if !regexp.MustCompile(`(?m)^` + row).Match(out) {
			t.Errorf("the table lacks a row %q", row)
		}
	}
}

// TestMininetConfig runs the headless mode on a lab of the user's own
// configurations (deploy/mininet/example: two controllers, two hosts,
// red and blue peered with blue exporting half its subnet, green alone):
// the pings are what those configurations promise, and each one holds.
func TestMininetConfig(t *testing.T) {
	start := time.Now()
	out := runMininetLab(t, 2*time.Minute,
		"--config", "../../deploy/mininet/example/c1.yaml", "--config", "../../deploy/mininet/example/c2.yaml")
	for _, row := range []string{
		`ok +red1 +red2 +reply +reply +within red`,
		`ok +blue1 +red1 +reply +reply +blue and red peered`,
		`ok +blue2 +red1 +no reply +no reply +blue's export policy half to red leaves out 10.2.1.10`,
		`ok +blue1 +green1 +no reply +no reply +green has no peering with blue`,
		`ok +green1 +red2 +no reply +no reply +red has no peering with green`,
	} {
		if !regexp.MustCompile(`(?m)^` + row).Match(out) {
			t.Errorf("the table lacks a row %q", row)
		}
	}
	if n := len(regexp.MustCompile(`(?m)^ok `).FindAll(out, -1)); n != 10 {
		t.Errorf("%d rows ok; want the 10 pairs of the 5 VMs", n)
	}
	t.Logf("the lab of deploy/mininet/example took %v", time.Since(start).Round(time.Second))
}

// runMininetLab runs deploy/mininet's headless mode with p4mesh-switch
// and args, fails the test unless it exits 0, and checks that nothing it
// started is left: no process, no interface, no Mininet node. It returns
// the lab's output.
func runMininetLab(t *testing.T, timeout time.Duration, args ...string) []byte {
	t.Helper()
	testenv.NeedRoot(t, "Mininet")
	testenv.NeedTool(t, "ping", "the Mininet lab's pings")
	if out, err := exec.Command(debianPython, "-c", "import mininet.net").CombinedOutput(); err != nil {
		testenv.Skipf(t, "Mininet is not installed for %s (apt-get install mininet): %v %s", debianPython, err, out)
	}
	bin := buildDaemons(t)
	run := t.TempDir()
	before := links(t)

	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, debianPython, append([]string{"../../deploy/mininet/p4mesh_mininet.py",
		"--bin", bin, "--target", "p4mesh", "--test", "--run-dir", run}, args...)...)
	// Mininet's teardown must run on a timeout too: an interrupt, which the
	// lab turns into its orderly stop.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("lab ran %s:\n%s", time.Since(start).Round(time.Millisecond), out)
	defer func() {
		for _, l := range links(t) {
			if mininetLinks.MatchString(l) && !containsString(before, l) {
				t.Errorf("interface %s left behind", l)
			}
		}
		if procs := processesUnder(t, bin); len(procs) > 0 {
			t.Errorf("processes left behind: %q", procs)
		}
		// Mininet's nodes are shells (bash ... mininet:red1), each holding
		// its network namespace: one left is a namespace left.
		if shells := processesMatching(t, "mininet:"); len(shells) > 0 {
			t.Errorf("Mininet node shells (and their namespaces) left behind: %q", shells)
		}
	}()
	if err != nil {
		showLogs(t, filepath.Join(run, "logs"))
		t.Fatalf("lab --test: %v", err)
	}
	return out
}

// processesMatching are the command lines of running processes that
// contain s.
func processesMatching(t *testing.T, s string) []string {
	t.Helper()
	var procs []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), s) {
			procs = append(procs, strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " "))
		}
	}
	return procs
}

// links are the names of the root namespace's interfaces.
func links(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatalf("ip link: %v", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			names = append(names, name)
		}
	}
	return names
}

// processesUnder are the command lines of running processes whose
// executable is in dir.
func processesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var procs []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		if strings.HasPrefix(string(b), dir+"/") {
			procs = append(procs, strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " "))
		}
	}
	return procs
}

func showLogs(t *testing.T, dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		t.Logf("%s:\n%s", e.Name(), b)
	}
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
