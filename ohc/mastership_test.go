package ohc_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4rt"
)

// waitTimeout bounds every wait of these tests; a deadline, never an
// assertion of speed.
const waitTimeout = 20 * time.Second

// syncBuffer is a log sink an OHC writes while the test reads.
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

// serveController serves c1 of red-blue.yaml, which programs h1, on
// loopback.
func serveController(t *testing.T) (*controller.Server, string) {
	t.Helper()
	cfg, err := controller.LoadFile("../controller/testdata/red-blue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	store, err := controller.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	ctl, err := controller.NewServer(controller.ServerOptions{Auth: identity.Auth{Insecure: true}, Store: store, PeerGrace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	ctl.Register(g)
	go g.Serve(lis)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ctl.Run(ctx); close(done) }()
	t.Cleanup(func() {
		g.Stop()
		cancel()
		<-done
	})
	return ctl, lis.Addr().String()
}

// daemon is an OHC run by RunDaemon, with its log and metrics.
type daemon struct {
	logs   *syncBuffer
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{}
}

func runDaemon(t *testing.T, o ohc.DaemonOptions) *daemon {
	t.Helper()
	d := &daemon{logs: &syncBuffer{}, reg: prometheus.NewRegistry(), done: make(chan struct{})}
	o.Logger = slog.New(slog.NewTextHandler(d.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	ready := make(chan struct{})
	go func() {
		defer close(d.done)
		err := ohc.RunDaemon(ctx, o, func(p *ohc.Programmer, c *p4rt.Client, a *ohc.Agent) {
			d.reg.MustRegister(ohc.NewCollector(p, c, a))
			close(ready)
		})
		if err != nil {
			t.Errorf("RunDaemon: %v", err)
		}
	}()
	<-ready
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("OHC log:\n%s", d.logs.String())
		}
	})
	return d
}

func (d *daemon) stop() {
	d.cancel()
	<-d.done
}

// waitLog waits for a log line holding every one of want.
func (d *daemon) waitLog(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		for line := range strings.Lines(d.logs.String()) {
			if !containsAll(line, want) {
				continue
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q", want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func containsAll(line string, want []string) bool {
	for _, w := range want {
		if !strings.Contains(line, w) {
			return false
		}
	}
	return true
}

// primaryGauge is p4mesh_ohc_switch_primary.
func (d *daemon) primaryGauge(t *testing.T) float64 {
	t.Helper()
	mfs, err := d.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "p4mesh_ohc_switch_primary" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no p4mesh_ohc_switch_primary")
	return 0
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settledLines is what the switch holds once two reads 300ms apart agree.
func settledLines(t *testing.T, s *p4rt.Schema, c *p4rt.Client) []string {
	t.Helper()
	var last []string
	deadline := time.Now().Add(waitTimeout)
	for {
		got, ok := switchLines(t, s, c)
		if ok && last != nil && slices.Equal(got, last) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the switch's entities never settled: last %d, now %d", len(last), len(got))
		}
		last = got
		time.Sleep(300 * time.Millisecond)
	}
}

// reportedPrimary is what the controller holds of h1's mastership.
func reportedPrimary(ctl *controller.Server) (primary, ok bool) {
	primary, ok = ctl.Stats().HostSwitchPrimary["h1"]
	return primary, ok
}

// TestMastershipTakenIsLoudAndReclaimed plays issue 9: a client arbitrating
// with election id 100 takes the switch from an OHC with the old fixed id
// 1, deletes entries and leaves. The OHC says so at ERROR, naming id 100,
// its gauge drops to 0 and the controller hears it is not primary at once
// (its periodic report is an hour away); it neither fights nor writes. A
// restarted OHC with the default id (its start time, far above 100)
// reclaims the switch and puts the entries back.
func TestMastershipTakenIsLoudAndReclaimed(t *testing.T) {
	ts := startSwitch(t, "127.0.0.1:0")
	ctl, ctlAddr := serveController(t)
	s := schema(t)
	o := ohc.DaemonOptions{Host: "h1", Controllers: []string{ctlAddr}, Switch: ts.addr, DeviceID: 1}

	first := o
	first.ElectionID, first.ReportInterval = 1, time.Hour
	d1 := runDaemon(t, first)
	d1.waitLog(t, `msg="switch reconciled"`)
	if g := d1.primaryGauge(t); g != 1 {
		t.Fatalf("switch_primary = %v while primary, want 1", g)
	}
	reader, err := p4rt.New(p4rt.Config{Addr: ts.addr, DeviceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	go reader.Run(t.Context())
	defer reader.Close()
	// The first reconcile may come before every source has synced: the
	// reference is what the OHC holds the switch at once it stops writing.
	programmed := settledLines(t, s, reader)
	if len(programmed) == 0 {
		t.Fatalf("the OHC programmed nothing")
	}

	intruder, err := p4rt.New(p4rt.Config{Addr: ts.addr, DeviceID: 1, ElectionID: p4rt.ElectionID{Low: 100}})
	if err != nil {
		t.Fatal(err)
	}
	go intruder.Run(t.Context())
	defer intruder.Close()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := intruder.WaitPrimary(ctx); err != nil {
		t.Fatal(err)
	}
	// From here the switch refuses the OHC's writes: what it holds now is
	// what the intruder's deletions count against.
	held, _ := switchLines(t, s, reader)
	entries, err := intruder.ReadAll(ctx, []*p4v1.Entity{{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{}}}})
	if err != nil {
		t.Fatal(err)
	}
	var dels []*p4v1.Update
	for _, e := range entries[:min(15, len(entries))] {
		dels = append(dels, &p4v1.Update{Type: p4v1.Update_DELETE, Entity: e})
	}
	if err := intruder.Write(ctx, dels); err != nil {
		t.Fatal(err)
	}

	d1.waitLog(t, "level=ERROR", "another controller is primary", "primary_election_id=100", "election_id=1 ")
	waitFor(t, "switch_primary 0", func() bool { return d1.primaryGauge(t) == 0 })
	waitFor(t, "the controller to hear h1's OHC is not primary", func() bool {
		primary, ok := reportedPrimary(ctl)
		return ok && !primary
	})

	// The intruder leaves; the switch remembers id 100, so the OHC stays
	// backup, and says so again.
	intruder.Close()
	d1.waitLog(t, "level=ERROR", "the switch has no primary", "highest_election_id=100")
	if after, _ := switchLines(t, s, reader); len(after) != len(held)-len(dels) {
		t.Errorf("the switch holds %d entities after the intruder deleted %d of %d: the backup OHC wrote", len(after), len(dels), len(held))
	}

	d1.stop()
	d2 := runDaemon(t, o) // the default election id: now
	d2.waitLog(t, `msg="primary controller of the switch"`)
	waitLines(t, s, reader, programmed)
	waitFor(t, "switch_primary 1", func() bool { return d2.primaryGauge(t) == 1 })
	waitFor(t, "the controller to hear h1's OHC is primary", func() bool {
		primary, ok := reportedPrimary(ctl)
		return ok && primary
	})
	if strings.Contains(d2.logs.String(), "level=ERROR") {
		t.Errorf("the restarted OHC logged an error:\n%s", d2.logs.String())
	}
}
