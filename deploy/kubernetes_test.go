package deploy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Template struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	HostNetwork bool        `yaml:"hostNetwork"`
	Containers  []container `yaml:"containers"`
}

type container struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name string `yaml:"name"`
	} `yaml:"env"`
	Liveness  *probe `yaml:"livenessProbe"`
	Readiness *probe `yaml:"readinessProbe"`
}

type probe struct {
	HTTPGet struct {
		Host string `yaml:"host"`
		Path string `yaml:"path"`
		Port int    `yaml:"port"`
	} `yaml:"httpGet"`
}

// k8sVar is a $(VAR) reference, which Kubernetes expands in args from the
// container's env.
var k8sVar = regexp.MustCompile(`\$\(([A-Z_]+)\)`)

// TestKubernetes: every container of the manifests runs a daemon with
// flags it defines and accepts, its env defines every $(VAR) its args use,
// and its probes ask paths the running daemon serves, on the port its
// --metrics-addr listens on.
func TestKubernetes(t *testing.T) {
	bin := buildDaemons(t)
	files, _ := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no manifests")
	}
	// The image builds the daemons into /usr/local/bin.
	cf, err := os.ReadFile("Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	inImage := map[string]bool{}
	for _, m := range regexp.MustCompile(`\./cmd/([a-z0-9-]+)`).FindAllStringSubmatch(string(cf), -1) {
		inImage["/usr/local/bin/"+m[1]] = true
	}
	if !strings.Contains(string(cf), "COPY --from=build /out/ /usr/local/bin/") {
		t.Error("the Containerfile does not install the binaries into /usr/local/bin")
	}
	type probeUse struct {
		daemon, where, path string
	}
	var probes []probeUse
	containers := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		for {
			var obj k8sObject
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			for _, c := range obj.Spec.Template.Spec.Containers {
				containers++
				where := f + " " + obj.Metadata.Name + "/" + c.Name
				if len(c.Command) != 1 {
					t.Errorf("%s: command %q, want the daemon alone", where, c.Command)
					continue
				}
				if !inImage[c.Command[0]] {
					t.Errorf("%s: %s is not built into the image (deploy/Containerfile)", where, c.Command[0])
				}
				d := filepath.Base(c.Command[0])
				env := map[string]bool{}
				for _, e := range c.Env {
					env[e.Name] = true
				}
				var args []string
				for _, a := range c.Args {
					for _, m := range k8sVar.FindAllStringSubmatch(a, -1) {
						if !env[m[1]] {
							t.Errorf("%s: %s uses $(%s), which its env does not set (Kubernetes would pass it as is)", where, a, m[1])
						}
					}
					args = append(args, k8sVar.ReplaceAllString(a, "h1"))
				}
				defined := flagsOf(t, filepath.Join(bin, d))
				metricsPort := ""
				for _, a := range args {
					name, value, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
					if !defined[name] {
						t.Errorf("%s: %s does not define %s", where, d, a)
					}
					if name == "metrics-addr" {
						_, metricsPort, _ = net.SplitHostPort(value)
					}
				}
				out, _ := exec.Command(filepath.Join(bin, d), append(args, "-h")...).CombinedOutput()
				for _, bad := range []string{"flag provided but not defined", "invalid value", "unexpected arguments"} {
					if strings.Contains(string(out), bad) {
						t.Errorf("%s: %s refuses %q:\n%s", where, d, args, out)
					}
				}
				for kind, p := range map[string]*probe{"liveness": c.Liveness, "readiness": c.Readiness} {
					if p == nil {
						t.Errorf("%s: no %s probe", where, kind)
						continue
					}
					if port := p.HTTPGet.Port; metricsPort == "" || port == 0 || strconv.Itoa(port) != metricsPort {
						t.Errorf("%s: %s probe on port %d, but --metrics-addr listens on %q", where, kind, port, metricsPort)
					}
					probes = append(probes, probeUse{d, where + " " + kind, p.HTTPGet.Path})
				}
			}
		}
	}
	if containers == 0 {
		t.Fatal("no containers in the manifests")
	}

	// The paths, asked of the running daemons: served, whether ready or
	// not, never 404.
	metrics := runDaemons(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, p := range probes {
		code, _, err := get(ctx, "http://"+metrics[p.daemon]+p.path)
		if err != nil || (code != http.StatusOK && code != http.StatusServiceUnavailable) {
			t.Errorf("%s: %s %s answers %d %v", p.where, p.daemon, p.path, code, err)
		}
	}
}
