package ohc_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4rt"
	"github.com/p4mesh/p4mesh/store/boltstore"
)

// The agent with real controllers and a real switch, in process over
// loopback: c1 owns red, c2 owns blue, red and blue are peered both ways,
// and host a (the one under test) runs red-1 and blue-1.

// testController is one controller process, which a test can stop and
// start again from what it saved.
type testController struct {
	name, addr, dir string
	srv             *controller.Server
	stop            func()
}

func (c *testController) start(t *testing.T, cfg *controller.Config) {
	t.Helper()
	var lis net.Listener
	var err error
	for range 100 { // a restarted controller's port may take a moment to free
		if lis, err = net.Listen("tcp", c.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	c.addr = lis.Addr().String()
	// The item store, as p4mesh-controller keeps it: its revision is what
	// the watch tables start at, so a restart, or another replica opening
	// the same store, serves the revisions the clients were told.
	b, err := boltstore.Open(filepath.Join(c.dir, "store.db"), boltstore.Options{LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	store, err := controller.OpenItemStore(context.Background(), b)
	if err == nil {
		_, err = store.Startup(cfg, cfg != nil)
	}
	if err != nil {
		b.Close()
		t.Fatalf("%s: %v", c.name, err)
	}
	c.srv, err = controller.NewServer(controller.ServerOptions{Auth: identity.Auth{Insecure: true}, Store: store})
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	g := grpc.NewServer()
	c.srv.Register(g)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); g.Serve(lis) }()
	go func() { defer wg.Done(); c.srv.Run(ctx) }()
	var once sync.Once
	c.stop = func() {
		once.Do(func() {
			cancel()
			g.Stop()
			wg.Wait()
			b.Close()
		})
	}
	t.Cleanup(c.stop)
}

func (c *testController) apply(t *testing.T, change func(*controller.Config)) {
	t.Helper()
	cfg := c.srv.Config().Clone()
	change(cfg)
	if err := c.srv.Apply(cfg); err != nil {
		t.Fatal(err)
	}
}

// logger logs to the test's output: shown when it fails, or with -v.
func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func ctlMAC(s string) controller.MAC {
	m, err := controller.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func endpoint(id, vpc, ipAddr, host string, port uint16, macLast byte) controller.Endpoint {
	vni := map[string]byte{"red": 1, "blue": 2}[vpc]
	return controller.Endpoint{ID: id, VPC: vpc, Kind: controller.KindVM, IP: ip(ipAddr),
		MAC: ctlMAC(fmt.Sprintf("02:00:00:%02x:00:%02x", vni, macLast)), Host: host, Port: port}
}

// startControllers starts c1 (red) and c2 (blue): red-1 and blue-1 on host
// a, red-2 and blue-2 on host b.
func startControllers(t *testing.T) (c1, c2 *testController) {
	t.Helper()
	c1 = &testController{name: "c1", addr: "127.0.0.1:0", dir: t.TempDir()}
	c2 = &testController{name: "c2", addr: "127.0.0.1:0", dir: t.TempDir()}
	// Both listen before either starts: each one's address is in both
	// configurations.
	for _, c := range []*testController{c1, c2} {
		l, err := net.Listen("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.addr = l.Addr().String()
		l.Close()
	}
	cfg1, cfg2 := testConfigs([]controller.ControllerEntry{{Name: "c1", Address: c1.addr, VPCs: []string{"red"}}, {Name: "c2", Address: c2.addr, VPCs: []string{"blue"}}})
	c1.start(t, cfg1)
	c2.start(t, cfg2)
	return c1, c2
}

// testConfigs are c1's and c2's configurations with directory dir: c1
// owns red, c2 blue, red and blue are peered both ways under "all";
// red-1 and blue-1 on host a, red-2 and blue-2 on host b.
func testConfigs(dir []controller.ControllerEntry) (c1, c2 *controller.Config) {
	hosts := []controller.Host{
		{ID: "a", UnderlayIP: ip(hostA), MAC: ctlMAC(hostAMAC), UplinkPort: 10, UnderlayRoutes: []controller.UnderlayRoute{
			{Prefix: pfx("192.168.0.0/16"), Port: 10, SrcMAC: ctlMAC(hostAMAC), DstMAC: ctlMAC(uplinkMAC)}}},
		{ID: "b", UnderlayIP: ip(hostB), MAC: ctlMAC("02:aa:00:00:00:02"), UplinkPort: 10},
	}
	cfg := func(name, vpc string, vni uint32, subnet, peer string, eps ...controller.Endpoint) *controller.Config {
		return &controller.Config{Controller: name, Directory: dir, Hosts: hosts,
			VPCs:           []controller.VPC{{Name: vpc, VNI: vni, Subnets: []netip.Prefix{pfx(subnet)}}},
			ExportPolicies: []controller.ExportPolicy{{Name: "all"}},
			Peerings:       []controller.Peering{{VPC: vpc, PeerVPC: peer, ExportPolicy: "all"}},
			Endpoints:      eps}
	}
	return cfg("c1", "red", 100, "10.1.0.0/16", "blue",
			endpoint("red-1", "red", "10.1.0.10", "a", 1, 1), endpoint("red-2", "red", "10.1.0.11", "b", 1, 2)),
		cfg("c2", "blue", 200, "10.2.0.0/16", "red",
			endpoint("blue-1", "blue", "10.2.0.10", "a", 2, 1), endpoint("blue-2", "blue", "10.2.0.11", "b", 2, 2))
}

// agentOHC is a whole OHC daemon for host a.
type agentOHC struct {
	prog   *ohc.Programmer
	client *p4rt.Client
	agent  *ohc.Agent
	cancel context.CancelFunc
	done   chan struct{}
}

func startAgent(t *testing.T, sw string, grace time.Duration, controllers ...*testController) *agentOHC {
	t.Helper()
	var addrs []string
	for _, c := range controllers {
		addrs = append(addrs, c.addr)
	}
	return startAgentAt(t, sw, grace, addrs...)
}

// startAgentAt starts the OHC of host a with --controller addrs.
func startAgentAt(t *testing.T, sw string, grace time.Duration, addrs ...string) *agentOHC {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	o := &agentOHC{cancel: cancel, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(o.done)
		err := ohc.RunDaemon(ctx, ohc.DaemonOptions{Host: "a", Controllers: addrs, Switch: sw, DeviceID: 1, ElectionID: 1,
			SourceGrace: grace, Logger: logger(t)}, func(p *ohc.Programmer, c *p4rt.Client, a *ohc.Agent) {
			o.prog, o.client, o.agent = p, c, a
			close(ready)
		})
		if err != nil {
			t.Errorf("OHC: %v", err)
		}
	}()
	<-ready
	t.Cleanup(o.stop)
	return o
}

func (o *agentOHC) stop() {
	o.cancel()
	<-o.done
}

// metrics gathers the OHC's metrics, each summed over its labels.
func (o *agentOHC) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(ohc.NewCollector(o.prog, o.client, o.agent))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			out[mf.GetName()] += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return out
}

// readSwitch reads every entry, member and group off the switch at addr
// with plain P4Runtime reads, rendered and sorted.
func readSwitch(t *testing.T, s *p4rt.Schema, addr string) ([]string, error) {
	t.Helper()
	lb, err := s.ActionProfile("lb_selector")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rc, err := p4v1.NewP4RuntimeClient(conn).Read(ctx, &p4v1.ReadRequest{DeviceId: 1, Entities: []*p4v1.Entity{
		{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{}}},
		{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: &p4v1.ActionProfileMember{ActionProfileId: lb.ID()}}},
		{Entity: &p4v1.Entity_ActionProfileGroup{ActionProfileGroup: &p4v1.ActionProfileGroup{ActionProfileId: lb.ID()}}},
	}})
	if err != nil {
		return nil, err
	}
	var out []string
	for {
		resp, err := rc.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		for _, e := range resp.GetEntities() {
			out = append(out, render(t, s, e))
		}
	}
	slices.Sort(out)
	return out, nil
}

// eventually polls the switch until ok holds for its lines.
func eventually(t *testing.T, s *p4rt.Schema, addr, what string, within time.Duration, ok func(lines []string) bool) []string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, err := readSwitch(t, s, addr)
		if err == nil && ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; switch holds (err %v)\n%s", what, within, err, strings.Join(got, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitStats polls the agent's stats until ok holds.
func waitStats(t *testing.T, a *ohc.Agent, what string, within time.Duration, ok func(ohc.AgentStats) bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for st := a.Stats(); !ok(st); st = a.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: agent stats %+v", what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasLine(lines []string, prefix string) bool {
	return slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, prefix) })
}

// blueLines are the lines blue's controller explains on host a: blue-1's
// port and its VPC, and blue's endpoints in red's destinations.
func blueLines(lines []string) []string {
	return slices.DeleteFunc(slices.Clone(lines), func(l string) bool {
		return !strings.Contains(l, "vni=200") && !strings.Contains(l, "dst_ip=10.2.") && !strings.Contains(l, "ingress_port=2")
	})
}

// redDest is the prefix of red's destination entry for ip.
func redDest(ip string) string { return "vnet_destination vni=100 dst_ip=" + ip + " " }

// TestAgentProgramsPerSource: with blue's controller down, a restarted OHC
// programs red's news at once, applies red's deletions at once, and keeps
// blue's entries as they were, also past the grace; a restarted switch gets
// red's state at once; blue's controller comes back and its state and news
// land, and what nobody explains is pruned.
func TestAgentProgramsPerSource(t *testing.T) {
	const within = 2 * time.Second
	s := schema(t)
	c1, c2 := startControllers(t)
	ts := startSwitch(t, "127.0.0.1:0")
	o := startAgent(t, ts.addr, 0, c1, c2)
	all := eventually(t, s, ts.addr, "first programming", 10*time.Second, func(l []string) bool {
		return hasLine(l, redDest("10.1.0.11")) && hasLine(l, redDest("10.2.0.11")) && hasLine(l, "port_vnet ingress_port=2 ")
	})
	blue := blueLines(all)
	o.stop()

	// c2 goes down, and while the OHC is down too red-2 leaves and red-3
	// comes.
	c2.stop()
	c1.apply(t, func(c *controller.Config) {
		c.Endpoints = slices.DeleteFunc(c.Endpoints, func(e controller.Endpoint) bool { return e.ID == "red-2" })
		c.Endpoints = append(c.Endpoints, endpoint("red-3", "red", "10.1.0.12", "b", 3, 3))
	})
	const grace = 300 * time.Millisecond
	o = startAgent(t, ts.addr, grace, c1, c2)
	got := eventually(t, s, ts.addr, "red-3 programmed with c2 down", within, func(l []string) bool { return hasLine(l, redDest("10.1.0.12")) })
	if miss := minus(blue, got); len(miss) > 0 {
		t.Errorf("blue's entries not kept with c2 down: missing %q", miss)
	}
	// red-2 is gone from c1, but the OHC cannot tell its entries from
	// c2's until c2 is back: kept.
	if !hasLine(got, redDest("10.1.0.11")) {
		t.Error("red-2's entry, which nothing explains, deleted while c2 is silent")
	}

	// A deletion the OHC sees goes at once.
	c1.apply(t, func(c *controller.Config) {
		c.Endpoints = slices.DeleteFunc(c.Endpoints, func(e controller.Endpoint) bool { return e.ID == "red-3" })
	})
	got = eventually(t, s, ts.addr, "red-3 deleted with c2 down", within, func(l []string) bool { return !hasLine(l, redDest("10.1.0.12")) })

	// Past the grace, c2 is reported, and its entries are still kept.
	waitStats(t, o.agent, "c2 down past the grace", grace+3*time.Second, func(st ohc.AgentStats) bool {
		return st.Unsynced == 2 && st.PastGrace == 2 // c2's host programming and blue/all
	})
	if st := o.prog.Stats(); st.Held == 0 || len(st.Missing) == 0 {
		t.Errorf("c2 down: programmer holds %d entries, missing %q", st.Held, st.Missing)
	}
	m := o.metrics(t)
	if m["p4mesh_ohc_sources_unsynced"] != 2 || m["p4mesh_ohc_sources_unsynced_past_grace"] != 2 || m["p4mesh_ohc_entries_held"] == 0 {
		t.Errorf("c2 down past the grace: metrics unsynced %v, past grace %v, held %v", m["p4mesh_ohc_sources_unsynced"],
			m["p4mesh_ohc_sources_unsynced_past_grace"], m["p4mesh_ohc_entries_held"])
	}
	got, _ = readSwitch(t, s, ts.addr)
	if miss := minus(blue, got); len(miss) > 0 {
		t.Errorf("blue's entries not kept past the grace: missing %q", miss)
	}

	// c2 is back, and changes: its state and news land, and red-2's
	// stale entries (in red's destinations, and in blue's, which c2's
	// host programming pulls from c1) go.
	c2.start(t, nil)
	c2.apply(t, func(c *controller.Config) {
		c.Endpoints = append(c.Endpoints, endpoint("blue-3", "blue", "10.2.0.12", "b", 3, 3))
	})
	blue = slices.DeleteFunc(blue, func(l string) bool { return strings.Contains(l, "dst_ip=10.1.0.11 ") })
	// The OHC's streams to c2 retry with a backoff of up to 5s.
	const reconnect = 10 * time.Second
	eventually(t, s, ts.addr, "c2 back", reconnect, func(l []string) bool {
		return hasLine(l, redDest("10.2.0.12")) && !slices.ContainsFunc(l, func(l string) bool { return strings.Contains(l, "10.1.0.11") }) &&
			len(minus(blue, l)) == 0
	})
	waitStats(t, o.agent, "c2 back", reconnect, func(st ohc.AgentStats) bool { return st.Unsynced == 0 && st.PastGrace == 0 })
	// The programmer's pass over the whole view follows the agent's
	// sync: on a loaded machine, a moment later.
	for deadline := time.Now().Add(reconnect); ; time.Sleep(20 * time.Millisecond) {
		st := o.prog.Stats()
		if st.Held == 0 && len(st.Missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("c2 back: programmer holds %d entries, missing %q", st.Held, st.Missing)
			break
		}
	}

	// c2 down again, the OHC and the switch restart: the empty switch
	// gets its pipeline and red's state at once.
	o.stop()
	c2.stop()
	ts.stop()
	ts = startSwitch(t, ts.addr)
	o = startAgent(t, ts.addr, 0, c1, c2)
	got = eventually(t, s, ts.addr, "restarted switch programmed with c2 down", within, func(l []string) bool {
		return hasLine(l, "port_vnet ingress_port=1 ") && hasLine(l, redDest("10.1.0.10"))
	})
	if b := blueLines(got); len(b) > 0 {
		t.Errorf("restarted switch holds blue's entries with c2 down and the OHC restarted: %q", b)
	}
	c2.start(t, nil)
	eventually(t, s, ts.addr, "c2 back to a restarted switch", reconnect, func(l []string) bool {
		return hasLine(l, "port_vnet ingress_port=2 ") && hasLine(l, redDest("10.2.0.12"))
	})
}

// TestAgentRouteChangeIncremental: with real controllers over gRPC and a
// switch, a route of red learned, re-pointed and withdrawn at c1 reaches
// the switch (vnet_route), each change compiled incrementally: no whole
// compile from the first route on.
func TestAgentRouteChangeIncremental(t *testing.T) {
	const within = 5 * time.Second
	s := schema(t)
	c1, c2 := startControllers(t)
	c1.apply(t, func(c *controller.Config) {
		c.Routes = append(c.Routes, controller.Route{VPC: "red", Prefix: pfx("172.16.0.0/24"), NextHop: "red-2"})
	})
	ts := startSwitch(t, "127.0.0.1:0")
	o := startAgent(t, ts.addr, 0, c1, c2)
	eventually(t, s, ts.addr, "first programming", 10*time.Second, func(l []string) bool {
		return hasLine(l, "vnet_route vni=100 dst_ip=172.16.0.0/24 ") && hasLine(l, redDest("10.2.0.11"))
	})
	route := func(l []string, p string) string {
		for _, x := range l {
			if strings.HasPrefix(x, "vnet_route vni=100 dst_ip="+p+" ") {
				return x
			}
		}
		return ""
	}
	steps := []struct {
		what string
		edit func(c *controller.Config)
		ok   func(l []string) bool
	}{
		{"learned", func(c *controller.Config) {
			c.Routes = append(c.Routes, controller.Route{VPC: "red", Prefix: pfx("172.16.1.0/24"), NextHop: "red-2"})
		}, func(l []string) bool { return strings.Contains(route(l, "172.16.1.0/24"), "host_ip="+hostB) }},
		{"re-pointed to drop", func(c *controller.Config) {
			for i := range c.Routes {
				if c.Routes[i].Prefix == pfx("172.16.1.0/24") {
					c.Routes[i].NextHop = ""
				}
			}
		}, func(l []string) bool { return strings.Contains(route(l, "172.16.1.0/24"), "drop()") }},
		{"withdrawn", func(c *controller.Config) {
			c.Routes = slices.DeleteFunc(c.Routes, func(r controller.Route) bool { return r.Prefix == pfx("172.16.1.0/24") })
		}, func(l []string) bool { return route(l, "172.16.1.0/24") == "" && route(l, "172.16.0.0/24") != "" }},
	}
	for _, st := range steps {
		before := o.prog.Stats()
		c1.apply(t, st.edit)
		eventually(t, s, ts.addr, st.what, within, st.ok)
		after := o.prog.Stats()
		if after.Compiles != before.Compiles || after.IncrementalCompiles == before.IncrementalCompiles {
			t.Errorf("route %s: %d whole and %d incremental compiles, want none whole", st.what,
				after.Compiles-before.Compiles, after.IncrementalCompiles-before.IncrementalCompiles)
		}
	}
}
