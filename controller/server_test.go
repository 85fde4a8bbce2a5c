package controller

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/watch"
)

// These tests run controllers as they run in production: each Server with
// its own Store in a temporary data directory, served by a real gRPC
// server on a loopback port, following its peers with Run, and watched by
// real gRPC clients.

// waitTimeout bounds every wait for something a controller or a stream
// should do. Generous because -race on a loaded machine is slow; it is a
// deadline, never an assertion about speed.
const waitTimeout = 20 * time.Second

// syncBuffer is a log sink the controllers write while a test may read it.
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

// testCtl is one controller under test.
type testCtl struct {
	name  string
	addr  string // gRPC address, as in the directory
	dir   string // data directory
	store *Store
	srv   *Server
	logs  *syncBuffer
	stop  func() // stops Run and the gRPC server; idempotent
}

// listen reserves a loopback port: listening first is what lets the
// configurations name each other's real addresses.
func listen(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// startCtl opens the store in dir, applies cfg (or, if cfg is nil, starts
// from what the store saved), and serves the controller on lis. with
// change the options.
func startCtl(t *testing.T, name string, lis net.Listener, dir string, cfg *Config, with ...func(*ServerOptions)) *testCtl {
	t.Helper()
	store, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Startup(cfg, cfg != nil); err != nil {
		t.Fatalf("%s: startup: %v", name, err)
	}
	logs := &syncBuffer{}
	o := ServerOptions{Auth: identity.Auth{Insecure: true}, Store: store, PeerGrace: 300 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, w := range with {
		w(&o)
	}
	srv, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	srv.Register(gs)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := gs.Serve(lis); err != nil {
			t.Errorf("%s: serve: %v", name, err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := srv.Run(ctx); err != nil {
			t.Errorf("%s: Run: %v", name, err)
		}
	}()
	c := &testCtl{name: name, addr: lis.Addr().String(), dir: dir, store: store, srv: srv, logs: logs}
	c.stop = sync.OnceFunc(func() {
		cancel()
		gs.Stop()
		wg.Wait()
	})
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Logf("%s log:\n%s", name, logs.String())
		}
	})
	return c
}

// directory is the two-controller directory of the tests.
func directory(addr1, addr2 string) []ControllerEntry {
	return []ControllerEntry{
		{Name: "c1", Address: addr1, VPCs: []string{"red", "green"}},
		{Name: "c2", Address: addr2, VPCs: []string{"blue"}},
	}
}

// c1Config is testdata/red-blue.yaml (c1: red and green, red peered with
// blue under "all") with the directory at the test's addresses.
func c1Config(t *testing.T, addr1, addr2 string) *Config {
	c := example(t)
	c.Directory = directory(addr1, addr2)
	return c
}

// c2Config is c2's side: blue (VNI 200, 10.2.0.0/16) with blue-in
// (10.2.1.5, h2) inside what policy "blue-web" exports (10.2.1.0/24) and
// blue-out (10.2.2.5, h3) outside it. With peered, blue peers back with
// red under "blue-web".
func c2Config(t *testing.T, addr1, addr2 string, peered bool) *Config {
	hosts := example(t)
	c := &Config{
		Controller: "c2",
		Directory:  directory(addr1, addr2),
		VPCs:       []VPC{{Name: "blue", VNI: 200, Subnets: []netip.Prefix{pfx("10.2.0.0/16")}}},
		Hosts:      []Host{*hostOf(hosts, "h2"), *hostOf(hosts, "h3")},
		Endpoints: []Endpoint{
			{ID: "blue-in", VPC: "blue", Kind: KindVM, IP: ip("10.2.1.5"), MAC: mustMAC("02:02:00:00:01:05"), Host: "h2", Port: 3},
			{ID: "blue-out", VPC: "blue", Kind: KindVM, IP: ip("10.2.2.5"), MAC: mustMAC("02:02:00:00:02:05"), Host: "h3", Port: 4},
		},
		ExportPolicies: []ExportPolicy{{Name: "blue-web", Prefixes: []netip.Prefix{pfx("10.2.1.0/24")}}},
	}
	if peered {
		c.Peerings = []Peering{{VPC: "blue", PeerVPC: "red", ExportPolicy: "blue-web", Preference: 100}}
	}
	return c
}

// twoControllers starts c1 with red-blue.yaml and c2 with blue, peered
// back with red or not.
func twoControllers(t *testing.T, peered bool) (c1, c2 *testCtl) {
	t.Helper()
	l1, l2 := listen(t), listen(t)
	a1, a2 := l1.Addr().String(), l2.Addr().String()
	c1 = startCtl(t, "c1", l1, t.TempDir(), c1Config(t, a1, a2))
	c2 = startCtl(t, "c2", l2, t.TempDir(), c2Config(t, a1, a2, peered))
	return c1, c2
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// openFunc opens one kind of watch stream.
type openFunc func(ctx context.Context, conn *grpc.ClientConn, req *p4meshv1.WatchRequest) (grpc.ServerStreamingClient[p4meshv1.Event], error)

func hostWatch(ctx context.Context, conn *grpc.ClientConn, req *p4meshv1.WatchRequest) (grpc.ServerStreamingClient[p4meshv1.Event], error) {
	return p4meshv1.NewHostProgrammingClient(conn).Watch(ctx, req)
}

func destWatch(ctx context.Context, conn *grpc.ClientConn, req *p4meshv1.WatchRequest) (grpc.ServerStreamingClient[p4meshv1.Event], error) {
	return p4meshv1.NewConnectivityClient(conn).WatchDestinations(ctx, req)
}

func fwdWatch(ctx context.Context, conn *grpc.ClientConn, req *p4meshv1.WatchRequest) (grpc.ServerStreamingClient[p4meshv1.Event], error) {
	return p4meshv1.NewConnectivityClient(conn).WatchForwarding(ctx, req)
}

// events is a raw stream whose events a goroutine delivers to a channel,
// so that the test can wait for each with a deadline.
type events struct {
	ch   chan *p4meshv1.Event
	done chan error // the error Recv ended with
}

// watchRaw opens a stream and receives it until the test ends.
func watchRaw(t *testing.T, conn *grpc.ClientConn, open openFunc, req *p4meshv1.WatchRequest) *events {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	st, err := open(ctx, conn, req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	e := &events{ch: make(chan *p4meshv1.Event, 4096), done: make(chan error, 1)}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			ev, err := st.Recv()
			if err != nil {
				e.done <- err
				return
			}
			// Every table moves to every revision of the store, so
			// idle streams get PROGRESS at any time; these tests are
			// about what changes.
			if ev.GetType() == p4meshv1.Event_PROGRESS {
				continue
			}
			select {
			case e.ch <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-finished
	})
	return e
}

// next returns the next event, failing the test if the stream ends or
// nothing comes.
func (e *events) next(t *testing.T) *p4meshv1.Event {
	t.Helper()
	select {
	case ev := <-e.ch:
		return ev
	case err := <-e.done:
		t.Fatalf("stream ended: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("no event")
	}
	return nil
}

// snapshot reads a snapshot: PUTs up to SYNCED, after an optional RESET
// (reported by reset).
func (e *events) snapshot(t *testing.T) (items map[string]*p4meshv1.Event, rev uint64, reset bool) {
	t.Helper()
	items = map[string]*p4meshv1.Event{}
	for first := true; ; first = false {
		ev := e.next(t)
		switch ev.GetType() {
		case p4meshv1.Event_RESET:
			if !first {
				t.Fatalf("RESET in the middle of a snapshot")
			}
			reset = true
		case p4meshv1.Event_PUT:
			items[ev.GetKey()] = ev
		case p4meshv1.Event_SYNCED:
			return items, ev.GetRevision(), reset
		default:
			t.Fatalf("unexpected %v in a snapshot", ev.GetType())
		}
	}
}

// ended waits for the stream to end and returns its gRPC status code and
// message.
func (e *events) ended(t *testing.T) (codes.Code, string) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case <-e.ch: // events sent before the end
		case err := <-e.done:
			st := status.Convert(err)
			return st.Code(), st.Message()
		case <-deadline:
			t.Fatal("stream did not end")
		}
	}
}

// followed is a client view kept by watch.Follow, as an OHC keeps one.
type followed struct {
	view    watch.View
	changed chan struct{}
}

func follow(t *testing.T, conn *grpc.ClientConn, open openFunc, req *p4meshv1.WatchRequest) *followed {
	t.Helper()
	f := &followed{changed: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watch.Follow(ctx, "test", nil, func(ctx context.Context, rev uint64) (watch.Stream, error) {
			r := proto.Clone(req).(*p4meshv1.WatchRequest)
			r.ResumeRevision = rev
			return open(ctx, conn, r)
		}, f.view.Handler(func() {
			select {
			case f.changed <- struct{}{}:
			default:
			}
		}))
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return f
}

// waitFor waits until the view is synced and cond holds.
func (f *followed) waitFor(t *testing.T, what string, cond func(v *watch.View) bool) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		if f.view.Synced() && cond(&f.view) {
			return
		}
		select {
		case <-f.changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; view:\n%s", what, dumpView(f.view.Items()))
		}
	}
}

func dumpView(items map[string]*p4meshv1.Event) string {
	var lines []string
	for k, ev := range items {
		lines = append(lines, fmt.Sprintf("  %s: %v", k, ev))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// eventually polls cond until it holds: for state with no stream to wait on.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkNoLeaks fails the test if goroutines of the controller, the watch
// package or gRPC outlive it. Call it first, so that its cleanup runs
// after the others (servers stopped, streams cancelled).
func checkNoLeaks(t *testing.T) {
	t.Cleanup(func() {
		deadline := time.Now().Add(waitTimeout)
		for {
			leaked := leakedGoroutines()
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func leakedGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, s := range strings.Split(string(buf), "\n\n")[1:] {
		if strings.Contains(s, "testing.tRunner(") {
			continue
		}
		if strings.Contains(s, "p4mesh/p4mesh/controller.") || strings.Contains(s, "p4mesh/p4mesh/watch.") || strings.Contains(s, "google.golang.org/grpc") {
			out = append(out, s)
		}
	}
	return out
}

func peeringOf(v *watch.View, vpc, peer string) *p4meshv1.Peering {
	return v.Get("peering/" + vpc + "/" + peer).GetPeering()
}

// keys returns the sorted keys of a snapshot.
func keys(items map[string]*p4meshv1.Event) []string {
	var out []string
	for k := range items {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestPeeringActivation(t *testing.T) {
	checkNoLeaks(t)
	c1, c2 := twoControllers(t, false)
	h1 := follow(t, dial(t, c1.addr), hostWatch, &p4meshv1.WatchRequest{Host: "h1"})

	// Only red's side exists: h1 is told about the peering, inactive, and
	// why. The reason first waits for c2, then says blue has not
	// configured the peering back; both name blue.
	h1.waitFor(t, "peering red/blue reported inactive", func(v *watch.View) bool {
		p := peeringOf(v, "red", "blue")
		return p != nil && !p.GetActive() && strings.Contains(p.GetReason(), "blue has not configured")
	})
	if p := peeringOf(&h1.view, "red", "blue"); p.GetPeerController() != c2.addr {
		t.Errorf("inactive peering's peer_controller = %q, want c2's %s", p.GetPeerController(), c2.addr)
	}
	for _, want := range []string{"host", "endpoint/red-vm1", "vpc/red"} {
		if h1.view.Get(want) == nil {
			t.Errorf("h1's programming lacks %s:\n%s", want, dumpView(h1.view.Items()))
		}
	}
	if got := c1.srv.Stats(); got.Peerings != 1 || got.ActivePeerings != 0 {
		t.Errorf("c1 Stats = %+v, want 1 peering, 0 active", got)
	}

	// c2 configures blue's side: the peering becomes active on both.
	if err := c2.srv.Apply(c2Config(t, c1.addr, c2.addr, true)); err != nil {
		t.Fatal(err)
	}
	h1.waitFor(t, "peering red/blue active", func(v *watch.View) bool {
		return peeringOf(v, "red", "blue").GetActive()
	})
	want := &p4meshv1.Peering{
		Vpc: "red", PeerVpc: "blue", PeerVni: 200, PeerExportPolicy: "blue-web",
		PeerController: c2.addr, PeerControllers: []string{c2.addr}, Active: true, PeerPrefixes: []string{"10.2.1.0/24"},
	}
	if got := peeringOf(&h1.view, "red", "blue"); !proto.Equal(got, want) {
		t.Errorf("h1's peering = %v\nwant %v", got, want)
	}

	// c2's host with a blue endpoint sees the other side: red under "all".
	h2 := follow(t, dial(t, c2.addr), hostWatch, &p4meshv1.WatchRequest{Host: "h2"})
	h2.waitFor(t, "peering blue/red active on c2", func(v *watch.View) bool {
		return peeringOf(v, "blue", "red").GetActive()
	})
	want = &p4meshv1.Peering{
		Vpc: "blue", PeerVpc: "red", PeerVni: 100, PeerExportPolicy: "all",
		PeerController: c1.addr, PeerControllers: []string{c1.addr}, Active: true, PeerPrefixes: []string{"10.1.0.0/16"},
	}
	if got := peeringOf(&h2.view, "blue", "red"); !proto.Equal(got, want) {
		t.Errorf("h2's peering = %v\nwant %v", got, want)
	}
	for _, c := range []*testCtl{c1, c2} {
		if got := c.srv.Peerings(); len(got) != 1 || !got[0].Active || got[0].Reason != "" {
			t.Errorf("%s Peerings() = %+v, want one active", c.name, got)
		}
	}

	// Withdrawing blue's side makes it inactive again.
	if err := c2.srv.Apply(c2Config(t, c1.addr, c2.addr, false)); err != nil {
		t.Fatal(err)
	}
	h1.waitFor(t, "peering red/blue inactive again", func(v *watch.View) bool {
		p := peeringOf(v, "red", "blue")
		return p != nil && !p.GetActive() && strings.Contains(p.GetReason(), "blue")
	})
}

func TestConnectivityAuthorization(t *testing.T) {
	checkNoLeaks(t)
	c1, c2 := twoControllers(t, true)
	conn1, conn2 := dial(t, c1.addr), dial(t, c2.addr)

	// h1 has only red endpoints: it may watch red's own view.
	dest := watchRaw(t, conn1, destWatch, &p4meshv1.WatchRequest{Host: "h1", Vpc: "red"})
	items, _, _ := dest.snapshot(t)
	if got, want := keys(items), []string{"10.1.0.10", "10.1.0.11", "10.1.255.1"}; !slices.Equal(got, want) {
		t.Errorf("red destinations = %v, want %v", got, want)
	}
	if d := items["10.1.0.11"].GetDestination(); d.GetEndpoint() != "red-vm2" || d.GetVpc() != "red" {
		t.Errorf("destination 10.1.0.11 = %v", d)
	}
	fwd := watchRaw(t, conn1, fwdWatch, &p4meshv1.WatchRequest{Host: "h1", Vpc: "red"})
	items, _, _ = fwd.snapshot(t)
	wantFwd := &p4meshv1.Forwarding{Vpc: "red", Ip: "10.1.0.11", Mac: "02:01:00:00:00:0b", Host: "h2", HostIp: "192.168.0.2"}
	if got := items["10.1.0.11"].GetForwarding(); len(items) != 3 || !proto.Equal(got, wantFwd) {
		t.Errorf("red forwarding: %d items, 10.1.0.11 = %v; want 3, %v", len(items), got, wantFwd)
	}

	denied := []struct {
		name string
		conn *grpc.ClientConn
		req  *p4meshv1.WatchRequest
		code codes.Code
		msg  string
	}{
		{"own view of a VPC the host has no endpoint in", conn1, &p4meshv1.WatchRequest{Host: "h1", Vpc: "green"}, codes.PermissionDenied, "no endpoint in VPC green"},
		{"a VPC of another controller", conn1, &p4meshv1.WatchRequest{Host: "h1", Vpc: "blue", ExportPolicy: "blue-web", PeerVpc: "red"}, codes.NotFound, "owned by controller c2"},
		{"a VPC nobody owns", conn1, &p4meshv1.WatchRequest{Host: "h1", Vpc: "purple"}, codes.NotFound, "purple"},
		{"under a policy, claiming a VPC blue does not peer with", conn2, &p4meshv1.WatchRequest{Host: "h3", Vpc: "blue", ExportPolicy: "blue-web", PeerVpc: "green"}, codes.PermissionDenied, "green"},
		{"under a policy the peering does not use", conn2, &p4meshv1.WatchRequest{Host: "h1", Vpc: "blue", ExportPolicy: "other", PeerVpc: "red"}, codes.PermissionDenied, "other"},
		{"under a policy, claiming no VPC", conn2, &p4meshv1.WatchRequest{Host: "h1", Vpc: "blue", ExportPolicy: "blue-web"}, codes.PermissionDenied, "names no VPC"},
		{"blue's own view from a host of another controller", conn2, &p4meshv1.WatchRequest{Host: "h1", Vpc: "blue", PeerVpc: "red"}, codes.PermissionDenied, "no endpoint in VPC blue"},
	}
	for _, tc := range denied {
		code, msg := watchRaw(t, tc.conn, destWatch, tc.req).ended(t)
		if code != tc.code || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s: %v %q, want %v naming %q", tc.name, code, msg, tc.code, tc.msg)
		}
	}
	if t.Failed() {
		return
	}

	// A red host pulls blue under the policy of the peering: only what
	// the policy exports (10.2.1.0/24), so blue-out (10.2.2.5) is absent.
	peer := watchRaw(t, conn2, destWatch, &p4meshv1.WatchRequest{Host: "h1", Vpc: "blue", ExportPolicy: "blue-web", PeerVpc: "red"})
	items, _, _ = peer.snapshot(t)
	if got := keys(items); !slices.Equal(got, []string{"10.2.1.5"}) {
		t.Fatalf("blue destinations under blue-web = %v, want only 10.2.1.5", got)
	}
	if d := items["10.2.1.5"].GetDestination(); d.GetEndpoint() != "blue-in" || d.GetVpc() != "blue" {
		t.Errorf("destination 10.2.1.5 = %v", d)
	}
	// Isolation holds for deltas too: a new endpoint outside the policy is
	// never sent; one inside is. Stream order proves the first was not.
	cfg := c2Config(t, c1.addr, c2.addr, true)
	cfg.Endpoints = append(cfg.Endpoints,
		Endpoint{ID: "blue-out2", VPC: "blue", Kind: KindVM, IP: ip("10.2.2.6"), MAC: mustMAC("02:02:00:00:02:06"), Host: "h3", Port: 5},
	)
	if err := c2.srv.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	cfg = cfg.Clone()
	cfg.Endpoints = append(cfg.Endpoints,
		Endpoint{ID: "blue-in2", VPC: "blue", Kind: KindVM, IP: ip("10.2.1.6"), MAC: mustMAC("02:02:00:00:01:06"), Host: "h2", Port: 5},
	)
	if err := c2.srv.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if ev := peer.next(t); ev.GetType() != p4meshv1.Event_PUT || ev.GetKey() != "10.2.1.6" {
		t.Fatalf("after adding 10.2.2.6 (not exported) and 10.2.1.6 (exported), got %v, want PUT 10.2.1.6", ev)
	}
}

// TestConnectivityAuthorizationRevoked checks that authorization holds for
// the life of a stream, not only when it opens: a configuration change
// that takes away what let a host watch a service ends its stream, so it
// receives nothing more.
func TestConnectivityAuthorizationRevoked(t *testing.T) {
	checkNoLeaks(t)
	c1, c2 := twoControllers(t, true)
	conn1, conn2 := dial(t, c1.addr), dial(t, c2.addr)

	own := watchRaw(t, conn1, destWatch, &p4meshv1.WatchRequest{Host: "h1", Vpc: "red"})
	own.snapshot(t)
	other := watchRaw(t, conn1, destWatch, &p4meshv1.WatchRequest{Host: "h2", Vpc: "red"})
	other.snapshot(t)
	peer := watchRaw(t, conn2, destWatch, &p4meshv1.WatchRequest{Host: "h1", Vpc: "blue", ExportPolicy: "blue-web", PeerVpc: "red"})
	peer.snapshot(t)

	// red-vm1, h1's only endpoint, moves to h2: h1 may no longer see red.
	cfg := c1Config(t, c1.addr, c2.addr)
	endpointOf(cfg, "red-vm1").Host = "h2"
	endpointOf(cfg, "red-vm1").Port = 3
	if err := c1.srv.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if code, msg := own.ended(t); code != codes.PermissionDenied || !strings.Contains(msg, "h1") {
		t.Errorf("h1's red stream after its endpoint left: %v %q, want PermissionDenied naming h1", code, msg)
	}
	// h2 still may, and sees nothing change: red's destinations are the
	// same addresses (forwarding is where the move shows).
	cfg = cfg.Clone()
	cfg.Endpoints = append(cfg.Endpoints, Endpoint{ID: "red-vm3", VPC: "red", Kind: KindVM, IP: ip("10.1.0.12"), MAC: mustMAC("02:01:00:00:00:0c"), Host: "h2", Port: 4})
	if err := c1.srv.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if ev := other.next(t); ev.GetType() != p4meshv1.Event_PUT || ev.GetKey() != "10.1.0.12" {
		t.Errorf("h2's red stream: got %v, want PUT 10.1.0.12", ev)
	}

	// blue stops exporting to red: red's hosts may no longer pull blue.
	if err := c2.srv.Apply(c2Config(t, c1.addr, c2.addr, false)); err != nil {
		t.Fatal(err)
	}
	if code, msg := peer.ended(t); code != codes.PermissionDenied || !strings.Contains(msg, "blue") {
		t.Errorf("red host's blue stream after the peering went: %v %q, want PermissionDenied naming blue", code, msg)
	}
}

// TestServiceWithdrawnAndRestored checks that a client following a
// published service across its withdrawal and return (a peering removed
// and configured again) ends up with the restored service's items rather
// than staying on the withdrawn one.
func TestServiceWithdrawnAndRestored(t *testing.T) {
	checkNoLeaks(t)
	c1, c2 := twoControllers(t, true)
	peer := follow(t, dial(t, c2.addr), destWatch, &p4meshv1.WatchRequest{Host: "h1", Vpc: "blue", ExportPolicy: "blue-web", PeerVpc: "red"})
	peer.waitFor(t, "blue-in", func(v *watch.View) bool { return v.Get("10.2.1.5") != nil })

	if err := c2.srv.Apply(c2Config(t, c1.addr, c2.addr, false)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "service withdrawn", func() bool { return c2.srv.Stats().PublishedServices == 1 })
	cfg := c2Config(t, c1.addr, c2.addr, true)
	cfg.Endpoints = append(cfg.Endpoints, Endpoint{ID: "blue-in2", VPC: "blue", Kind: KindVM, IP: ip("10.2.1.6"), MAC: mustMAC("02:02:00:00:01:06"), Host: "h2", Port: 5})
	if err := c2.srv.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	peer.waitFor(t, "the restored service's items", func(v *watch.View) bool {
		return v.Get("10.2.1.5") != nil && v.Get("10.2.1.6") != nil && v.Len() == 2
	})
}

func TestPeeringMultiplexer(t *testing.T) {
	checkNoLeaks(t)
	l1, l2 := listen(t), listen(t)
	a1, a2 := l1.Addr().String(), l2.Addr().String()
	dir := []ControllerEntry{
		{Name: "c1", Address: a1, VPCs: []string{"red", "green", "yellow"}},
		{Name: "c2", Address: a2, VPCs: []string{"blue"}},
	}
	// c1: red, green and yellow each peer with blue.
	cfg1 := c1Config(t, a1, a2)
	cfg1.Directory = dir
	cfg1.VPCs = append(cfg1.VPCs, VPC{Name: "yellow", VNI: 400, Subnets: []netip.Prefix{pfx("10.4.0.0/16")}})
	cfg1.Endpoints = append(cfg1.Endpoints, Endpoint{ID: "yellow-vm1", VPC: "yellow", Kind: KindVM, IP: ip("10.4.0.10"), MAC: mustMAC("02:04:00:00:00:0a"), Host: "h2", Port: 3})
	cfg1.Peerings = []Peering{
		{VPC: "red", PeerVPC: "blue", ExportPolicy: "all"},
		{VPC: "green", PeerVPC: "blue", ExportPolicy: "all"},
		{VPC: "yellow", PeerVPC: "blue", ExportPolicy: "all"},
	}
	// c2: blue exports to all three under one policy.
	cfg2 := c2Config(t, a1, a2, false)
	cfg2.Directory = dir
	for _, p := range []string{"red", "green", "yellow"} {
		cfg2.Peerings = append(cfg2.Peerings, Peering{VPC: "blue", PeerVPC: p, ExportPolicy: "blue-web"})
	}
	c1 := startCtl(t, "c1", l1, t.TempDir(), cfg1)
	c2 := startCtl(t, "c2", l2, t.TempDir(), cfg2)

	eventually(t, "all peerings active", func() bool {
		return c1.srv.Stats().ActivePeerings == 3 && c2.srv.Stats().ActivePeerings == 3
	})
	// One service for (blue, blue-web) however many peers use it, plus
	// blue's own view.
	if got := c2.srv.Stats().PublishedServices; got != 2 {
		t.Errorf("c2 publishes %d services, want 2: (blue, \"\") and (blue, blue-web)", got)
	}
	// c1 exports three VPCs under "all": one service each, and three own views.
	if got := c1.srv.Stats().PublishedServices; got != 6 {
		t.Errorf("c1 publishes %d services, want 6", got)
	}

	// Hosts of two different peers are served by that one service.
	conn2 := dial(t, c2.addr)
	for _, peerVPC := range []string{"red", "green", "yellow"} {
		s := watchRaw(t, conn2, destWatch, &p4meshv1.WatchRequest{Host: "h3", Vpc: "blue", ExportPolicy: "blue-web", PeerVpc: peerVPC})
		if items, _, _ := s.snapshot(t); !slices.Equal(keys(items), []string{"10.2.1.5"}) {
			t.Errorf("peer %s sees %v, want [10.2.1.5]", peerVPC, keys(items))
		}
	}
	if st := c2.srv.Stats(); st.PublishedServices != 2 || st.Subscribers < 3 {
		t.Errorf("c2 Stats with three peer streams = %+v, want 2 services and at least 3 subscribers", st)
	}
}

func TestDeltas(t *testing.T) {
	checkNoLeaks(t)
	c1, c2 := twoControllers(t, true)
	conn1 := dial(t, c1.addr)
	dest := watchRaw(t, conn1, destWatch, &p4meshv1.WatchRequest{Host: "h1", Vpc: "red"})
	_, rev, _ := dest.snapshot(t)

	base := c1Config(t, c1.addr, c2.addr)
	withVM3 := base.Clone()
	withVM3.Endpoints = append(withVM3.Endpoints, Endpoint{ID: "red-vm3", VPC: "red", Kind: KindVM, IP: ip("10.1.0.12"), MAC: mustMAC("02:01:00:00:00:0c"), Host: "h2", Port: 3})
	if err := c1.srv.Apply(withVM3); err != nil {
		t.Fatal(err)
	}
	ev := dest.next(t)
	if ev.GetType() != p4meshv1.Event_PUT || ev.GetKey() != "10.1.0.12" || ev.GetDestination().GetEndpoint() != "red-vm3" || ev.GetRevision() <= rev {
		t.Fatalf("after adding red-vm3: %v, want PUT 10.1.0.12 (red-vm3) at a revision after %d", ev, rev)
	}
	rev = ev.GetRevision()

	// An invalid configuration is refused with the path at fault, and
	// changes nothing: neither the served configuration nor any stream.
	before := c1.srv.Config()
	bad := withVM3.Clone()
	vpcOf(bad, "red").Subnets = append(vpcOf(bad, "red").Subnets, pfx("10.1.5.0/24"))
	bad.Endpoints = append(bad.Endpoints, Endpoint{ID: "red-vm4", VPC: "red", Kind: KindVM, IP: ip("10.1.0.13"), MAC: mustMAC("02:01:00:00:00:0d"), Host: "h2", Port: 4})
	err := c1.srv.Apply(bad)
	if err == nil || !strings.Contains(err.Error(), "vpcs[red].subnets[1]") || !strings.Contains(err.Error(), "overlaps") {
		t.Fatalf("Apply with overlapping subnets = %v, want an error naming vpcs[red].subnets[1]", err)
	}
	if got := c1.srv.Config(); got != before || !got.Equal(withVM3) {
		t.Errorf("a refused Apply changed the served configuration")
	}
	if saved, _, err := c1.store.Load(); err != nil || !saved.Equal(withVM3) {
		t.Errorf("a refused Apply changed the saved configuration (err %v)", err)
	}

	// Deleting red-vm3 is the next event: nothing came in between.
	if err := c1.srv.Apply(base); err != nil {
		t.Fatal(err)
	}
	ev = dest.next(t)
	if ev.GetType() != p4meshv1.Event_DELETE || ev.GetKey() != "10.1.0.12" || ev.GetRevision() <= rev {
		t.Fatalf("after deleting red-vm3: %v, want DELETE 10.1.0.12 at a revision after %d", ev, rev)
	}
	// Re-applying the same configuration sends nothing either.
	if err := c1.srv.Apply(base.Clone()); err != nil {
		t.Fatal(err)
	}
	if err := c1.srv.Apply(withVM3); err != nil {
		t.Fatal(err)
	}
	if ev = dest.next(t); ev.GetType() != p4meshv1.Event_PUT || ev.GetKey() != "10.1.0.12" {
		t.Fatalf("after re-adding red-vm3: %v, want PUT 10.1.0.12", ev)
	}
}

func TestRestart(t *testing.T) {
	checkNoLeaks(t)
	c1, _ := twoControllers(t, true)
	before := c1.srv.Config()

	h1 := watchRaw(t, dial(t, c1.addr), hostWatch, &p4meshv1.WatchRequest{Host: "h1"})
	var items map[string]*p4meshv1.Event
	var rev uint64
	// Read until the peering is active, tracking the view as an OHC would.
	items, rev, _ = h1.snapshot(t)
	for !items["peering/red/blue"].GetPeering().GetActive() {
		ev := h1.next(t)
		switch ev.GetType() {
		case p4meshv1.Event_PUT:
			items[ev.GetKey()] = ev
		case p4meshv1.Event_DELETE:
			delete(items, ev.GetKey())
		default:
			t.Fatalf("unexpected %v", ev)
		}
		rev = ev.GetRevision()
	}
	destBefore := watchRaw(t, dial(t, c1.addr), destWatch, &p4meshv1.WatchRequest{Host: "h1", Vpc: "red"})
	dests, destRev, _ := destBefore.snapshot(t)

	// Stop c1 and start a new one from its data directory alone, on the
	// same address (the directory says where c1 is).
	c1.stop()
	lis, err := net.Listen("tcp", c1.addr)
	if err != nil {
		t.Fatal(err)
	}
	r1 := startCtl(t, "c1 restarted", lis, c1.dir, nil)
	if got := r1.srv.Config(); !got.Equal(before) {
		t.Fatalf("restarted config differs:\n%s", configDiff(t, before, got))
	}
	eventually(t, "restarted c1 sees the peering active", func() bool {
		ps := r1.srv.Peerings()
		return len(ps) == 1 && ps[0].Active
	})

	// A client resuming from its revision of the old process gets RESET
	// and a snapshot with the same items.
	conn := dial(t, r1.addr)
	resumed := watchRaw(t, conn, hostWatch, &p4meshv1.WatchRequest{Host: "h1", ResumeRevision: rev})
	got, _, reset := resumed.snapshot(t)
	if !reset {
		t.Error("resume from the old process's revision: no RESET")
	}
	sameItems(t, "host programming", items, got)

	resumed = watchRaw(t, conn, destWatch, &p4meshv1.WatchRequest{Host: "h1", Vpc: "red", ResumeRevision: destRev})
	got, _, reset = resumed.snapshot(t)
	if !reset {
		t.Error("destinations resumed from the old process's revision: no RESET")
	}
	sameItems(t, "destinations", dests, got)
}

// sameItems compares two snapshots by key and value, not revision.
func sameItems(t *testing.T, what string, want, got map[string]*p4meshv1.Event) {
	t.Helper()
	if !slices.Equal(keys(got), keys(want)) {
		t.Errorf("%s keys after restart = %v, want %v", what, keys(got), keys(want))
		return
	}
	for k, w := range want {
		g := proto.Clone(got[k]).(*p4meshv1.Event)
		g.Revision = w.GetRevision()
		if !proto.Equal(g, w) {
			t.Errorf("%s %s after restart = %v, want %v", what, k, got[k], w)
		}
	}
}

func configDiff(t *testing.T, a, b *Config) string {
	ya, err := a.YAML()
	if err != nil {
		t.Fatal(err)
	}
	yb, err := b.YAML()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("before:\n%s\nafter:\n%s", ya, yb)
}

func TestHostProgrammingRequiresHost(t *testing.T) {
	checkNoLeaks(t)
	c1, _ := twoControllers(t, false)
	code, _ := watchRaw(t, dial(t, c1.addr), hostWatch, &p4meshv1.WatchRequest{}).ended(t)
	if code != codes.InvalidArgument {
		t.Errorf("host programming watch with no host: %v, want InvalidArgument", code)
	}
}

func TestPeerSidesOnlyForDirectoryControllers(t *testing.T) {
	checkNoLeaks(t)
	c1, _ := twoControllers(t, true)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	st, err := p4meshv1.NewPeersClient(dial(t, c1.addr)).WatchPeerSides(ctx, &p4meshv1.WatchRequest{Controller: "intruder"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Errorf("peer sides for a controller outside the directory: %v, want PermissionDenied", err)
	}
}

// TestPeerControllerMoved checks that when the directory moves a peer
// controller to another address, this controller follows it there: the
// peering, waiting on the old (dead) address, becomes active.
func TestPeerControllerMoved(t *testing.T) {
	checkNoLeaks(t)
	dead := listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()
	l1, l2 := listen(t), listen(t)
	a1, a2 := l1.Addr().String(), l2.Addr().String()
	c1 := startCtl(t, "c1", l1, t.TempDir(), c1Config(t, a1, deadAddr))
	startCtl(t, "c2", l2, t.TempDir(), c2Config(t, a1, a2, true))

	h1 := follow(t, dial(t, c1.addr), hostWatch, &p4meshv1.WatchRequest{Host: "h1"})
	h1.waitFor(t, "peering waiting for c2 at the old address", func(v *watch.View) bool {
		p := peeringOf(v, "red", "blue")
		return p != nil && !p.GetActive() && strings.Contains(p.GetReason(), deadAddr)
	})
	if err := c1.srv.Apply(c1Config(t, a1, a2)); err != nil {
		t.Fatal(err)
	}
	h1.waitFor(t, "peering active with c2 at its new address", func(v *watch.View) bool {
		p := peeringOf(v, "red", "blue")
		return p.GetActive() && p.GetPeerController() == a2
	})
}
