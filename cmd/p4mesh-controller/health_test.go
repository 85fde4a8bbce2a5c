package main

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/demo"
)

// probe GETs path on the metrics listener at addr.
func probe(t *testing.T, addr net.Addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr.String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// waitReady waits until addr's /readyz answers 200.
func waitReady(t *testing.T, addr net.Addr, what string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		code, body := probe(t, addr, "/readyz")
		if code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never ready: %d %q", what, code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReadiness: a controller is alive at once, and ready once it has
// heard every peer controller, or its --peer-grace has passed without.
func TestReadiness(t *testing.T) {
	dir := t.TempDir()

	// c2 never answers and the grace is long: alive, not ready, even once
	// c1 has had time to find c2 down.
	cfg := writeConfig(t, filepath.Join(dir, "c1.yaml"), closedPort(t), nil)
	lonely := start(t, "--config", cfg, "--data-dir", filepath.Join(dir, "lonely"),
		"--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--peer-grace", "1h")
	if code, _ := probe(t, lonely.metrics, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}
	lonely.waitLog(t, `msg="peering inactive" vpc=red peer_vpc=blue reason="waiting for controller c2`)
	if code, body := probe(t, lonely.metrics, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "peer controller") {
		t.Errorf("/readyz with c2 unheard within the grace = %d %q; want 503 naming the peer controllers", code, body)
	}
	lonely.stop(t)

	// The same past a short grace: ready without c2.
	graced := start(t, "--config", cfg, "--data-dir", filepath.Join(dir, "graced"),
		"--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--peer-grace", "300ms")
	waitReady(t, graced.metrics, "c1 past its grace")
	graced.stop(t)

	// c1 and c2 both up, each with a grace it never reaches: each is
	// ready because it heard the other.
	addrs := [2]string{closedPort(t), closedPort(t)}
	topo := demo.DemoTopology(addrs)
	var started [2]*started
	for i, name := range []string{"c1", "c2"} {
		path := filepath.Join(dir, "demo-"+name+".yaml")
		if err := topo.Configs[name].SaveFile(path); err != nil {
			t.Fatal(err)
		}
		started[i] = start(t, "--config", path, "--data-dir", filepath.Join(dir, "demo-"+name),
			"--listen", addrs[i], "--metrics-addr", "127.0.0.1:0", "--peer-grace", "1h")
	}
	for i, c := range started {
		waitReady(t, c.metrics, []string{"c1", "c2"}[i]+" with its peer up")
	}
}
