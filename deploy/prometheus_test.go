package deploy

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

type promConfig struct {
	Global struct {
		ScrapeInterval     string `yaml:"scrape_interval"`
		EvaluationInterval string `yaml:"evaluation_interval"`
	} `yaml:"global"`
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs bin until the test ends, showing its output if it failed.
func start(t *testing.T, bin string, args ...string) {
	t.Helper()
	out := &lockedWriter{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s:\n%s", filepath.Base(bin), out.String())
		}
	})
}

type lockedWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func get(ctx context.Context, url string) (int, string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// sampleName is a sample line's metric name in the text exposition format.
var sampleName = regexp.MustCompile(`(?m)^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]`)

// runDaemons runs the three daemons as in production (a controller, a
// switch, its OHC, on loopback) until every one is ready, and returns
// their metrics listeners' addresses.
func runDaemons(t *testing.T) map[string]string {
	t.Helper()
	bin := buildDaemons(t)
	dir := t.TempDir()
	ctl, sw := freeAddr(t), freeAddr(t)
	metrics := map[string]string{"p4mesh-controller": freeAddr(t), "p4mesh-switch": freeAddr(t), "p4mesh-ohc": freeAddr(t)}
	start(t, filepath.Join(bin, "p4mesh-controller"), "--config", "../controller/testdata/red-blue.yaml",
		"--data-dir", filepath.Join(dir, "c1"), "--listen", ctl, "--peer-grace", "100ms", "--metrics-addr", metrics["p4mesh-controller"])
	start(t, filepath.Join(bin, "p4mesh-switch"), "--grpc-addr", sw, "--mem-ports", "1,2,3", "--metrics-addr", metrics["p4mesh-switch"])
	start(t, filepath.Join(bin, "p4mesh-ohc"), "--host", "h1", "--controller", ctl, "--switch", sw, "--metrics-addr", metrics["p4mesh-ohc"])

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for _, d := range daemons {
		for {
			code, body, err := get(ctx, "http://"+metrics[d]+"/readyz")
			if code == http.StatusOK {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s never ready: %d %q %v", d, code, body, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return metrics
}

// exported are the metric names each daemon serves once ready.
func exported(t *testing.T) map[string]map[string]bool {
	t.Helper()
	metrics := runDaemons(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	names := map[string]map[string]bool{}
	for _, d := range daemons {
		code, body, err := get(ctx, "http://"+metrics[d]+"/metrics")
		if err != nil || code != http.StatusOK {
			t.Fatalf("%s /metrics: %d %v", d, code, err)
		}
		names[d] = map[string]bool{}
		for _, m := range sampleName.FindAllStringSubmatch(body, -1) {
			names[d][m[1]] = true
		}
	}
	return names
}

// promIdent is a metric name in a PromQL expression: p4mesh's, or up.
var promIdent = regexp.MustCompile(`\b(p4mesh_[a-z0-9_]+|up)\b`)

// TestPrometheus: the scrape configuration scrapes each daemon where
// deploy/systemd serves its metrics, and every metric an alert rule or the
// Grafana dashboard names is one the running daemons export.
func TestPrometheus(t *testing.T) {
	var cfg promConfig
	readYAML(t, filepath.Join("prometheus", "prometheus.yml"), &cfg)
	envPort := map[string]string{}
	for _, d := range daemons {
		env := parseEnv(t, filepath.Join("systemd", strings.TrimPrefix(d, "p4mesh-")+".env"))
		_, port, err := net.SplitHostPort(env["METRICS_ADDR"])
		if err != nil {
			t.Fatalf("%s METRICS_ADDR: %v", d, err)
		}
		envPort[d] = port
	}
	var jobs []string
	for _, sc := range cfg.ScrapeConfigs {
		jobs = append(jobs, sc.JobName)
		if sc.MetricsPath != "/metrics" {
			t.Errorf("job %s scrapes %q; the daemons serve /metrics", sc.JobName, sc.MetricsPath)
		}
		want, ok := envPort[sc.JobName]
		if !ok {
			t.Errorf("job %s is no daemon's (%v)", sc.JobName, daemons)
			continue
		}
		for _, s := range sc.StaticConfigs {
			for _, target := range s.Targets {
				if _, port, _ := net.SplitHostPort(target); port != want {
					t.Errorf("job %s target %s: the systemd unit serves metrics on port %s", sc.JobName, target, want)
				}
			}
		}
	}
	for _, d := range daemons {
		if !slices.Contains(jobs, d) {
			t.Errorf("no scrape job for %s", d)
		}
	}

	names := exported(t)
	all := map[string]bool{"up": true} // Prometheus's own, per target
	for _, ns := range names {
		for n := range ns {
			all[n] = true
		}
	}
	// Each daemon exports under its own prefix: a collector wired to the
	// wrong daemon would show here.
	for d, ns := range names {
		prefix := strings.ReplaceAll(d, "-", "_") + "_"
		var own int
		for n := range ns {
			if strings.HasPrefix(n, prefix) {
				own++
			}
		}
		if own == 0 {
			t.Errorf("%s exports no %s* metric", d, prefix)
		}
	}

	var rules int
	for _, f := range cfg.RuleFiles {
		var rf ruleFile
		readYAML(t, filepath.Join("prometheus", f), &rf)
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				rules++
				idents := promIdent.FindAllString(r.Expr, -1)
				if len(idents) == 0 {
					t.Errorf("alert %s: %q names no metric", r.Alert, r.Expr)
				}
				for _, n := range idents {
					if !all[n] {
						t.Errorf("alert %s names %s, which no daemon exports", r.Alert, n)
					}
				}
			}
		}
	}
	if rules == 0 {
		t.Error("no alert rules")
	}

	// The Grafana dashboard's queries, likewise.
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile(filepath.Join("grafana", "p4mesh.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana/p4mesh.json: %v", err)
	}
	var queries int
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			queries++
			idents := promIdent.FindAllString(q.Expr, -1)
			if len(idents) == 0 {
				t.Errorf("panel %q: %q names no metric", p.Title, q.Expr)
			}
			for _, n := range idents {
				if !all[n] {
					t.Errorf("panel %q names %s, which no daemon exports", p.Title, n)
				}
			}
		}
	}
	if queries == 0 {
		t.Error("the dashboard has no queries")
	}
}
