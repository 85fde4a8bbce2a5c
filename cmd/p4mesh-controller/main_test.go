package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/watch"
)

// waitTimeout bounds every wait; a deadline, never an assertion of speed.
const waitTimeout = 20 * time.Second

// syncBuffer is a log sink the controller writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// closedPort returns a loopback address nothing listens on: c2's address
// in the tests, so that c1's peering with blue waits for it.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// writeConfig writes controller/testdata/red-blue.yaml (c1) with c2 at
// c2Addr and edit applied, and returns its path.
func writeConfig(t *testing.T, path, c2Addr string, edit func(string) string) string {
	t.Helper()
	data, err := os.ReadFile("../../controller/testdata/red-blue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(data), "127.0.0.1:7002", c2Addr, 1)
	if edit != nil {
		s = edit(s)
	}
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFlagErrors(t *testing.T) {
	dir := t.TempDir()
	invalid := writeConfig(t, filepath.Join(dir, "invalid.yaml"), "127.0.0.1:7002", func(s string) string {
		return strings.Replace(s, "vni: 100", "vni: 0", 1)
	})
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{}, 2, "--data-dir is required"},
		{[]string{"--config", "c1.yaml"}, 2, "--data-dir is required"},
		{[]string{"--data-dir", dir, "--log-level", "loud"}, 2, "--log-level"},
		{[]string{"--data-dir", dir, "extra"}, 2, "unexpected arguments"},
		{[]string{"--data-dir", dir, "--nope"}, 2, "flag provided but not defined"},
		{[]string{"--data-dir", dir, "--gnmi-max-msg-size", "-1"}, 2, "--gnmi-max-msg-size -1: must be positive"},
		{[]string{"--data-dir", dir, "--config-overrides-saved"}, 2, "--config-overrides-saved needs --config"},
		{[]string{"--data-dir", dir, "--max-sending-streams", "0"}, 2, "--max-sending-streams must be positive"},
		{[]string{"--data-dir", dir, "--max-sending-streams-per-peer", "-1"}, 2, "--max-sending-streams-per-peer must be positive"},
		{[]string{"--data-dir", dir, "--stall-timeout", "0s"}, 2, "--stall-timeout must be positive"},
		{[]string{"--data-dir", dir, "--bgp-listen", "179"}, 2, `--bgp-listen "179": an IPv4 address:port, or none`},
		{[]string{"--data-dir", t.TempDir(), "--config", filepath.Join(dir, "missing.yaml")}, 1, "--config: open " + filepath.Join(dir, "missing.yaml") + ": no such file or directory"},
		{[]string{"--data-dir", t.TempDir(), "--config", invalid}, 1, "vpcs[red].vni: 0 is out of range"},
		{[]string{"--data-dir", t.TempDir()}, 1, "no configuration"},
	} {
		var out, errOut syncBuffer
		code := runWith(t.Context(), tc.args, &out, &errOut, hooks{ready: func(boundAddrs) { t.Errorf("%q: controller started", tc.args) }})
		if code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("run(%q) = %d, %q; want %d and %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}

// started is a controller run by the test.
type started struct {
	grpc, metrics, gnmi net.Addr
	logs                *syncBuffer
	cancel              context.CancelFunc
	done                chan int
}

func start(t *testing.T, args ...string) *started {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	s := &started{logs: &syncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	ready := make(chan struct{})
	go func() {
		// The tests' peer controller is a dead port: do not wait the
		// production grace for it.
		args := append([]string{"--peer-grace", "200ms"}, args...)
		s.done <- runWith(ctx, args, io.Discard, s.logs, hooks{ready: func(b boundAddrs) {
			s.grpc, s.metrics, s.gnmi = b.grpc, b.metrics, b.gnmi
			close(ready)
		}})
	}()
	select {
	case <-ready:
	case code := <-s.done:
		cancel()
		t.Fatalf("run exited with %d before serving:\n%s", code, s.logs.String())
	case <-time.After(waitTimeout):
		cancel()
		t.Fatalf("not serving:\n%s", s.logs.String())
	}
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("controller log:\n%s", s.logs.String())
		}
	})
	return s
}

// stop cancels the controller and checks that it exits 0. Idempotent.
func (s *started) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case code, ok := <-s.done:
		if ok {
			close(s.done)
			if code != 0 {
				t.Errorf("run = %d after cancel, want 0", code)
			}
		}
	case <-time.After(2 * shutdownGrace):
		t.Fatal("run did not return after cancel")
	}
}

// waitLog waits until the log contains want.
func (s *started) waitLog(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(s.logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q:\n%s", want, s.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hostView follows host's programming on the controller at addr.
func hostView(t *testing.T, addr net.Addr, host string) (*watch.View, <-chan struct{}) {
	t.Helper()
	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var v watch.View
	changed := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watch.Follow(ctx, "h1", nil, func(ctx context.Context, rev uint64) (watch.Stream, error) {
			return p4meshv1.NewHostProgrammingClient(conn).Watch(ctx, &p4meshv1.WatchRequest{Host: host, ResumeRevision: rev})
		}, v.Handler(func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		}))
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		conn.Close()
	})
	return &v, changed
}

func waitView(t *testing.T, v *watch.View, changed <-chan struct{}, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for !v.Synced() || !cond() {
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; view has %d items", what, v.Len())
		}
	}
}

func scrape(t *testing.T, addr net.Addr) string {
	t.Helper()
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func hasMetric(body, sample string) bool {
	for line := range strings.Lines(body) {
		if strings.TrimSpace(line) == sample {
			return true
		}
	}
	return false
}

func TestServesHostProgrammingMetricsAndReloads(t *testing.T) {
	dir := t.TempDir()
	c2 := closedPort(t)
	cfgPath := writeConfig(t, filepath.Join(dir, "c1.yaml"), c2, nil)
	c := start(t, "--config", cfgPath, "--data-dir", filepath.Join(dir, "data"),
		"--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--log-level", "debug")

	// The directory says c1 is at 127.0.0.1:7001; it listens elsewhere.
	for _, want := range []string{
		"listening on another address than this controller's directory entry",
		"directory=127.0.0.1:7001",
		`vpcs="red(vni 100) green(vni 300)"`,
		`msg="peering configured" vpc=red peer_vpc=blue export_policy=all peer_controller=c2`,
	} {
		if !strings.Contains(c.logs.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
	// c2 is down: after a moment the log says the peering waits for it.
	c.waitLog(t, `msg="peering inactive" vpc=red peer_vpc=blue reason="waiting for controller c2`)

	v, changed := hostView(t, c.grpc, "h1")
	waitView(t, v, changed, "h1's programming", func() bool {
		return v.Get("endpoint/red-vm1") != nil && v.Get("vpc/red") != nil && v.Get("peering/red/blue") != nil
	})
	if p := v.Get("peering/red/blue").GetPeering(); p.GetActive() || p.GetPeerController() != c2 {
		t.Errorf("peering red/blue = %v, want inactive, peer controller %s", p, c2)
	}

	body := scrape(t, c.metrics)
	for _, want := range []string{
		"p4mesh_controller_published_services 3",
		"p4mesh_controller_peerings 1",
		"p4mesh_controller_peerings_active 0",
		`p4mesh_controller_watch_subscribers{stream="host"} 1`,
		`p4mesh_controller_config_reloads_total{result="error"} 0`,
		"p4mesh_controller_watch_streams_sending 0",
		"p4mesh_controller_watch_streams_waiting_to_send 0",
		"p4mesh_controller_watch_stalls_total 0",
	} {
		if !hasMetric(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !strings.Contains(body, "go_goroutines") {
		t.Error("/metrics lacks the Go collector")
	}
	if t.Failed() {
		t.Fatalf("/metrics:\n%s", body)
	}

	// SIGHUP applies an edited --config: a new endpoint on h1 appears.
	writeConfig(t, cfgPath, c2, func(s string) string {
		return strings.Replace(s, "endpoints:\n", "endpoints:\n  - {id: red-vm9, vpc: red, kind: vm, ip: 10.1.0.99, mac: \"02:01:00:00:00:99\", host: h1, port: 9}\n", 1)
	})
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitView(t, v, changed, "red-vm9 after SIGHUP", func() bool { return v.Get("endpoint/red-vm9") != nil })
	c.waitLog(t, "SIGHUP: configuration applied")

	// An invalid one is refused and logged; nothing changes.
	writeConfig(t, cfgPath, c2, func(s string) string {
		return strings.Replace(s, "subnets: [10.1.0.0/16]", "subnets: [10.1.0.0/16, 10.1.5.0/24]", 1)
	})
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	c.waitLog(t, "SIGHUP: configuration not reloaded; nothing changed")
	if !strings.Contains(c.logs.String(), "vpcs[red].subnets[1]") {
		t.Error("the refusal does not name vpcs[red].subnets[1]")
	}
	body = scrape(t, c.metrics)
	for _, want := range []string{
		`p4mesh_controller_config_reloads_total{result="ok"} 1`,
		`p4mesh_controller_config_reloads_total{result="error"} 1`,
		"p4mesh_controller_config_applies_total 1",
		"p4mesh_controller_config_apply_errors_total 1",
	} {
		if !hasMetric(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if v.Get("endpoint/red-vm9") == nil {
		t.Error("the refused configuration removed red-vm9")
	}

	// The controller restarts from its data directory alone, with what
	// SIGHUP applied, and stops cleanly.
	c.stop(t)
	r := start(t, "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0")
	if !strings.Contains(r.logs.String(), "configuration: the saved one") {
		t.Error("the restart did not start from the saved configuration")
	}
	v, changed = hostView(t, r.grpc, "h1")
	waitView(t, v, changed, "red-vm9 after restart", func() bool { return v.Get("endpoint/red-vm9") != nil })
}

func TestAdvertise(t *testing.T) {
	dir := t.TempDir()
	cfgPath := writeConfig(t, filepath.Join(dir, "c1.yaml"), closedPort(t), nil)
	c := start(t, "--config", cfgPath, "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--advertise", "127.0.0.1:7001")
	if l := c.logs.String(); strings.Contains(l, "differs from this controller's directory") || strings.Contains(l, "listening on another address") {
		t.Errorf("--advertise matching the directory still warned:\n%s", c.logs.String())
	}
	c.stop(t)
	c = start(t, "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--advertise", "10.0.0.1:7001")
	if !strings.Contains(c.logs.String(), "--advertise differs") {
		t.Errorf("--advertise differing from the directory did not warn:\n%s", c.logs.String())
	}
}

func TestSameAddress(t *testing.T) {
	tcp := func(ip string, port int) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: port} }
	for _, tc := range []struct {
		bound net.Addr
		entry string
		want  bool
	}{
		{tcp("127.0.0.1", 7001), "127.0.0.1:7001", true},
		{tcp("127.0.0.1", 7002), "127.0.0.1:7001", false},
		{tcp("0.0.0.0", 7001), "10.0.0.5:7001", true},
		{tcp("::", 7001), "ctl1.example:7001", true},
		{tcp("10.0.0.4", 7001), "10.0.0.5:7001", false},
		{tcp("127.0.0.1", 7001), "localhost:7001", false},
		{tcp("127.0.0.1", 7001), "", false},
	} {
		if got := sameAddress(tc.bound, tc.entry); got != tc.want {
			t.Errorf("sameAddress(%s, %q) = %v, want %v", tc.bound, tc.entry, got, tc.want)
		}
	}
}

// gnmiSet sends req to the controller's gNMI server at addr.
func gnmiSet(t *testing.T, addr net.Addr, req *gnmi.SetRequest) {
	t.Helper()
	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := gnmi.NewGNMIClient(conn).Set(t.Context(), req); err != nil {
		t.Fatalf("gNMI Set: %v", err)
	}
}

func gnmiPath(t *testing.T, s string) *gnmi.Path {
	t.Helper()
	p, err := ygot.StringToStructuredPath(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Issue 9: a VNI, a directory address and an endpoint set over gNMI were
// reverted by a restart with the same --config. The saved configuration
// wins now, with a warning naming what differs, and
// --config-overrides-saved makes the file win.
func TestRestartKeepsChangesAcceptedOverGNMI(t *testing.T) {
	dir := t.TempDir()
	cfgPath := writeConfig(t, filepath.Join(dir, "c1.yaml"), closedPort(t), nil)
	args := []string{"--config", cfgPath, "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0",
		"--gnmi-addr", "127.0.0.1:0", "--gnmi-insecure"}
	c := start(t, args...)
	movedC2 := closedPort(t)
	gnmiSet(t, c.gnmi, &gnmi.SetRequest{Update: []*gnmi.Update{
		{Path: gnmiPath(t, "/p4mesh/vpcs/vpc[name=red]/config/vni"), Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_UintVal{UintVal: 101}}},
		{Path: gnmiPath(t, "/p4mesh/directory/controllers/controller[name=c2]/config/address"), Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_StringVal{StringVal: movedC2}}},
		{Path: gnmiPath(t, "/p4mesh/endpoints/endpoint[id=red-vm9]"), Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: []byte(
			`{"p4mesh:id":"red-vm9","p4mesh:config":{"id":"red-vm9","vpc":"red","kind":"vm","ip":"10.1.0.99","mac":"02:01:00:00:00:99","host":"h1","port":9}}`)}}},
	}})
	c.stop(t)

	// The same command line: what the Set changed is still there.
	r := start(t, args...)
	logs := r.logs.String()
	for _, want := range []string{
		`level=WARN msg="configuration: the saved one, which differs from --config`,
		`differences="directory c2: address differs; vpc red: vni differs; endpoint red-vm9: only in saved"`,
		`vpcs="red(vni 101) green(vni 300)"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("restart log lacks %q", want)
		}
	}
	v, changed := hostView(t, r.grpc, "h1")
	waitView(t, v, changed, "red-vm9 and c2's new address after restart", func() bool {
		return v.Get("endpoint/red-vm9") != nil && v.Get("peering/red/blue").GetPeering().GetPeerController() == movedC2
	})
	r.stop(t)

	// --config-overrides-saved: the file wins, and says what it replaces.
	o := start(t, append(args, "--config-overrides-saved")...)
	logs = o.logs.String()
	for _, want := range []string{
		`level=WARN msg="configuration: from --config (--config-overrides-saved), replacing the saved one`,
		`differences="directory c2: address differs; vpc red: vni differs; endpoint red-vm9: only in saved"`,
		`vpcs="red(vni 100) green(vni 300)"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("--config-overrides-saved log lacks %q", want)
		}
	}
	o.stop(t)

	// And what it applied is what is saved now: a plain restart agrees.
	p := start(t, args...)
	if logs := p.logs.String(); !strings.Contains(logs, `level=INFO msg="configuration: the saved one"`) || !strings.Contains(logs, `vpcs="red(vni 100) green(vni 300)"`) {
		t.Errorf("after --config-overrides-saved, a restart did not start from --config's content")
	}
}

// A saved configuration cut short stops the controller with an error
// naming the file and the ways out; --config-overrides-saved moves it
// aside and starts from --config.
func TestDamagedSavedConfiguration(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfgPath := writeConfig(t, filepath.Join(dir, "c1.yaml"), closedPort(t), nil)
	// The YAML store: the item store's damaged items are
	// controller.TestItemStoreDamagedItem's.
	args := []string{"--config", cfgPath, "--data-dir", data, "--listen", "127.0.0.1:0", "--store", "yaml"}
	start(t, args...).stop(t)

	saved := filepath.Join(data, "config.yaml")
	b, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	cut := b[:strings.Index(string(b), "  - id: red-router\n")]
	if err := os.WriteFile(saved, cut, 0o600); err != nil {
		t.Fatal(err)
	}
	var errOut syncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	code := runWith(ctx, args, io.Discard, &errOut, hooks{ready: func(boundAddrs) {
		t.Error("started from a damaged saved configuration")
		cancel()
	}})
	for _, want := range []string{saved + " is damaged: it has no checksum line", "from a backup", "--config-overrides-saved"} {
		if code != 1 || !strings.Contains(errOut.String(), want) {
			t.Errorf("run = %d, %q; want 1 and %q", code, errOut.String(), want)
		}
	}

	o := start(t, append(args, "--config-overrides-saved")...)
	o.waitLog(t, `level=WARN msg="saved configuration unusable: moved aside, starting from --config (--config-overrides-saved)" moved_to=`+saved+".damaged-")
	if !strings.Contains(o.logs.String(), `endpoints=4`) {
		t.Error("--config-overrides-saved did not start from --config")
	}
}

// A data directory the YAML store kept is imported into store.db on the
// first start with the default store, and the saved configuration (with a
// change --config does not have) still wins over --config.
func TestMigratesYAMLDataDir(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfgPath := writeConfig(t, filepath.Join(dir, "c1.yaml"), closedPort(t), nil)
	args := []string{"--config", cfgPath, "--data-dir", data, "--listen", "127.0.0.1:0"}
	start(t, append(args, "--store", "yaml")...).stop(t)
	// What --config no longer says, so that starting from it would show.
	os.WriteFile(cfgPath, []byte(strings.Replace(readFile(t, cfgPath), "vni: 100", "vni: 101", 1)), 0o600)

	p := start(t, args...)
	p.waitLog(t, `level=WARN msg="imported the configuration and peer sides an older p4mesh kept as files into the store`)
	if logs := p.logs.String(); !strings.Contains(logs, `msg="configuration: the saved one, which differs from --config`) {
		t.Errorf("after the import the saved configuration did not win:\n%s", logs)
	}
	p.stop(t)
	if _, err := os.Stat(filepath.Join(data, "config.yaml.migrated")); err != nil {
		t.Errorf("config.yaml not renamed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "config.yaml")); err == nil {
		t.Error("config.yaml still there")
	}
	again := start(t, args...)
	if strings.Contains(again.logs.String(), "imported") {
		t.Error("imported twice")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// --bgp-listen overrides where the BGP speaker listens; none: not at all.
func TestBGPListenFlag(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		arg  string
		addr string
		port int32
	}{
		{"", "", 0},
		{"none", "", -1},
		{"127.0.0.1:1179", "127.0.0.1", 1179},
	} {
		args := []string{"--data-dir", dir}
		if tc.arg != "" {
			args = append(args, "--bgp-listen", tc.arg)
		}
		o, err := parseFlags(args, io.Discard)
		if err != nil || o.bgpListenAddr != tc.addr || o.bgpListenPort != tc.port {
			t.Errorf("--bgp-listen %q: %q %d, %v; want %q %d", tc.arg, o.bgpListenAddr, o.bgpListenPort, err, tc.addr, tc.port)
		}
	}
}
