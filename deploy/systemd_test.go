package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/p4mesh/p4mesh/internal/testenv"
)

var daemons = []string{"p4mesh-controller", "p4mesh-switch", "p4mesh-ohc"}

// buildOnce builds the daemons once for all the tests of the package.
var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "p4mesh-deploy-test-")
	if err != nil {
		return "", err
	}
	args := []string{"build", "-o", dir + "/"}
	for _, d := range daemons {
		args = append(args, "github.com/p4mesh/p4mesh/cmd/"+d)
	}
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		return "", &buildError{err, string(out)}
	}
	return dir, nil
})

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

func buildDaemons(t *testing.T) string {
	t.Helper()
	testenv.NeedTool(t, "go", "building the daemons")
	dir, err := buildOnce()
	if err != nil {
		t.Fatalf("go build: %v", err)
	}
	return dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if dir, err := buildOnce(); err == nil && dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// flagLine is a flag in a Go flag set's usage: "  -name" then its type.
var flagLine = regexp.MustCompile(`(?m)^  -([a-zA-Z0-9-]+)`)

// flagsOf are the flags bin defines, from its -h usage: the flag set
// itself, as the flag package prints it.
func flagsOf(t *testing.T, bin string) map[string]bool {
	t.Helper()
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) < 5 {
		t.Fatalf("%s -h lists %d flags:\n%s", bin, len(flags), out)
	}
	return flags
}

// unit is a systemd unit file: its keys by section, continuation lines
// joined.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	var pending string
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\n")
		if pending != "" {
			line, pending = pending+" "+strings.TrimSpace(line), ""
		} else if t := strings.TrimSpace(line); t == "" || t[0] == '#' || t[0] == ';' {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			pending = strings.TrimSuffix(line, "\\")
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is no key=value", path, line)
		}
		u[section][k] = append(u[section][k], strings.TrimSpace(v))
	}
	return u
}

func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Fatalf("[%s] %s: %q, want one", section, key, v)
	}
	return v[0]
}

// parseEnv reads an EnvironmentFile: KEY=VALUE lines, VALUE maybe quoted.
func parseEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is no KEY=VALUE", path, line)
		}
		env[k] = strings.Trim(v, `"`)
	}
	return env
}

var envRef = regexp.MustCompile(`\$\{([A-Z_]+)\}|\$([A-Z_]+)`)

// expand is systemd's ExecStart expansion: ${VAR} is one word, $VAR
// alone as a word splits into words. It reports the variables used.
func expand(t *testing.T, words []string, env map[string]string) (args []string, used map[string]bool) {
	t.Helper()
	used = map[string]bool{}
	for _, w := range words {
		if m := envRef.FindStringSubmatch(w); m != nil && m[2] != "" && m[0] == w {
			v, ok := env[m[2]]
			if !ok {
				t.Errorf("$%s is not set in the environment file", m[2])
			}
			used[m[2]] = true
			args = append(args, strings.Fields(v)...)
			continue
		}
		args = append(args, envRef.ReplaceAllStringFunc(w, func(ref string) string {
			name := strings.Trim(ref, "${}")
			v, ok := env[name]
			if !ok {
				t.Errorf("%s is not set in the environment file", ref)
			}
			used[name] = true
			return v
		}))
	}
	return args, used
}

// TestSystemdUnits: each unit runs its daemon with flags the daemon
// defines and values it accepts, takes every setting of its environment
// file, and is hardened: a dedicated user, a read-only system, restarts on
// failure, capabilities only for the switch's AF_PACKET ports.
func TestSystemdUnits(t *testing.T) {
	bin := buildDaemons(t)
	for _, d := range daemons {
		t.Run(d, func(t *testing.T) {
			u := parseUnit(t, filepath.Join("systemd", d+".service"))
			envFile := u.one(t, "Service", "EnvironmentFile")
			env := parseEnv(t, filepath.Join("systemd", filepath.Base(strings.TrimSuffix(envFile, ".env"))+".env"))
			words := strings.Fields(u.one(t, "Service", "ExecStart"))
			if words[0] != "/usr/local/bin/"+d {
				t.Fatalf("ExecStart runs %s, want /usr/local/bin/%s", words[0], d)
			}
			args, used := expand(t, words[1:], env)
			for k := range env {
				if !used[k] {
					t.Errorf("%s sets %s, which the unit never passes", envFile, k)
				}
			}
			defined := flagsOf(t, filepath.Join(bin, d))
			for _, a := range args {
				if !strings.HasPrefix(a, "-") {
					continue
				}
				name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
				if !defined[name] {
					t.Errorf("ExecStart passes %s, which %s does not define", a, d)
				}
			}
			// The values too: the daemon's own flag set parses the whole
			// command line before -h stops it.
			out, _ := exec.Command(filepath.Join(bin, d), append(args, "-h")...).CombinedOutput()
			for _, bad := range []string{"flag provided but not defined", "invalid value", "invalid boolean", "unexpected arguments"} {
				if strings.Contains(string(out), bad) {
					t.Errorf("%s refuses the unit's command line %q:\n%s", d, args, out)
				}
			}

			for key, want := range map[string]string{
				"User": "p4mesh", "ProtectSystem": "strict", "Restart": "on-failure", "NoNewPrivileges": "yes",
				"ProtectHome": "yes", "PrivateTmp": "yes",
			} {
				if got := u[("Service")][key]; !slices.Equal(got, []string{want}) {
					t.Errorf("%s=%q, want %s", key, got, want)
				}
			}
			wantCaps := ""
			if d == "p4mesh-switch" {
				wantCaps = "CAP_NET_RAW CAP_NET_ADMIN"
			}
			for _, key := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
				if got := u.one(t, "Service", key); got != wantCaps {
					t.Errorf("%s=%q, want %q", key, got, wantCaps)
				}
			}
			if d == "p4mesh-controller" {
				dataDir := args[slices.Index(args, "--data-dir")+1]
				if state := u.one(t, "Service", "StateDirectory"); dataDir != "/var/lib/"+state {
					t.Errorf("--data-dir %s is not the StateDirectory /var/lib/%s: ProtectSystem=strict makes it read-only", dataDir, state)
				}
			}
		})
	}
}

// TestSystemdAnalyzeVerify has systemd itself check the units: an unknown
// key or a bad value, which systemd only warns of and ignores, fails here.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa := testenv.NeedTool(t, "systemd-analyze", "checking the units with systemd")
	bin := buildDaemons(t)
	dir := t.TempDir()
	here, _ := filepath.Abs("systemd")
	for _, d := range daemons {
		b, err := os.ReadFile(filepath.Join("systemd", d+".service"))
		if err != nil {
			t.Fatal(err)
		}
		// The installed paths, pointed at this checkout and build.
		s := strings.ReplaceAll(string(b), "/usr/local/bin/", bin+"/")
		s = strings.ReplaceAll(s, "EnvironmentFile=/etc/p4mesh/", "EnvironmentFile="+here+"/")
		if err := os.WriteFile(filepath.Join(dir, d+".service"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"verify"}
	for _, d := range daemons {
		args = append(args, filepath.Join(dir, d+".service"))
	}
	out, err := exec.Command(sa, args...).CombinedOutput()
	var complaints []string
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, dir) {
			complaints = append(complaints, strings.TrimSpace(line))
		}
	}
	if err != nil || len(complaints) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(complaints, "\n"))
	}
}
