package controller

import (
	"context"
	gomaps "maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/watch"
)

// poolHealth is the pools' health timeout in these tests: short, so that
// members time out quickly; the waits are deadlines, not assertions.
const poolHealth = 400 * time.Millisecond

// poolControllers are the two controllers of twoControllers with pools:
// on c2, blue-gw (gw1, gw2) serves blue, which peers with red of c1; on
// c1, green-gw (gw9) serves green, peered with red there. Both pools go
// direct above 1000 pps and back at 200. c2 has gw3 too, in no pool.
func poolControllers(t *testing.T) (c1, c2 *testCtl) {
	t.Helper()
	l1, l2 := listen(t), listen(t)
	a1, a2 := l1.Addr().String(), l2.Addr().String()
	gwHost := func(id, addr string) Host {
		return Host{ID: id, UnderlayIP: ip(addr), MAC: mustMAC("02:aa:00:00:01:" + strings.Split(addr, ".")[3]), UplinkPort: 1}
	}
	pool := func(name, vpc string, members ...string) GatewayPool {
		return GatewayPool{Name: name, Members: members, VPCs: []string{vpc}, HealthTimeout: poolHealth, Heartbeat: poolHealth / 4,
			PromotePackets: 3, PromoteWindow: time.Second, DirectAbovePPS: 1000, PoolBelowPPS: 200}
	}
	cfg1 := c1Config(t, a1, a2)
	cfg1.Hosts = append(cfg1.Hosts, gwHost("gw9", "192.168.0.19"))
	cfg1.Peerings = append(cfg1.Peerings, Peering{VPC: "red", PeerVPC: "green", ExportPolicy: "all"}, Peering{VPC: "green", PeerVPC: "red", ExportPolicy: "all"})
	cfg1.GatewayPools = []GatewayPool{pool("green-gw", "green", "gw9")}
	cfg2 := c2Config(t, a1, a2, true)
	cfg2.Hosts = append(cfg2.Hosts, gwHost("gw1", "192.168.0.11"), gwHost("gw2", "192.168.0.12"), gwHost("gw3", "192.168.0.13"))
	cfg2.GatewayPools = []GatewayPool{pool("blue-gw", "blue", "gw1", "gw2")}
	fast := func(o *ServerOptions) { o.GatewayLoadPeriod = testLoadPeriod }
	c1 = startCtl(t, "c1", l1, t.TempDir(), cfg1, fast)
	c2 = startCtl(t, "c2", l2, t.TempDir(), cfg2, fast)
	return c1, c2
}

// testLoadPeriod is how often the tests' controllers decide modes.
const testLoadPeriod = 100 * time.Millisecond

// reporter reports for a host, as its OHC does, until stopped.
type reporter struct {
	stop func()
	// mu guards packets, the peer_packets of the next report.
	mu      sync.Mutex
	packets map[string]uint64
}

// report starts reporting for host every period.
func report(t *testing.T, conn *grpc.ClientConn, host string, period time.Duration) *reporter {
	t.Helper()
	r := &reporter{packets: map[string]uint64{}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := p4meshv1.NewHostProgrammingClient(conn)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			r.mu.Lock()
			req := &p4meshv1.HostReport{Host: host, PeerPackets: gomaps.Clone(r.packets)}
			r.mu.Unlock()
			if _, err := c.Report(ctx, req); err != nil && ctx.Err() == nil {
				t.Errorf("report of %s: %v", host, err)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	r.stop = sync.OnceFunc(func() {
		cancel()
		<-done
	})
	t.Cleanup(r.stop)
	return r
}

// add counts n more packets of pair for the next reports.
func (r *reporter) add(pair string, n uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.packets[pair] += n
}

// members are the live members of a peering's pool, by host.
func members(p *p4meshv1.Peering) []string {
	var out []string
	for _, m := range p.GetGatewayPool().GetMembers() {
		out = append(out, m.GetHost()+"="+m.GetUnderlayIp())
	}
	return out
}

// A gateway host gets its duty with the VPC it serves and that VPC's
// peerings, and may watch the VPC's own connectivity; a host in no pool
// gets none of it and may not.
func TestGatewayDuty(t *testing.T) {
	checkNoLeaks(t)
	c1, c2 := poolControllers(t)
	_ = c1
	conn := dial(t, c2.addr)

	gw := follow(t, conn, hostWatch, &p4meshv1.WatchRequest{Host: "gw1"})
	gw.waitFor(t, "gw1's duty, blue and blue's active peering with red's prefixes", func(v *watch.View) bool {
		d := v.Get("gateway-duty/blue-gw/blue").GetGatewayDuty()
		p := peeringOf(v, "blue", "red")
		return d != nil && d.GetVni() == 200 && d.GetHeartbeatMs() == uint32(poolHealth/4/time.Millisecond) &&
			v.Get("vpc/blue").GetVpc().GetVni() == 200 && v.Get("host").GetHost().GetId() == "gw1" &&
			p.GetActive() && slices.Equal(p.GetPeerPrefixes(), []string{"10.1.0.0/16"})
	})
	if n := len(gw.view.Items()); n != 4 {
		t.Errorf("gw1's view has %d items, want host, duty, vpc and peering:\n%s", n, dumpView(gw.view.Items()))
	}

	other := follow(t, conn, hostWatch, &p4meshv1.WatchRequest{Host: "gw3"})
	other.waitFor(t, "gw3's host", func(v *watch.View) bool { return v.Get("host") != nil })
	if n := len(other.view.Items()); n != 1 {
		t.Errorf("gw3, in no pool, has:\n%s", dumpView(other.view.Items()))
	}

	dest := follow(t, conn, destWatch, &p4meshv1.WatchRequest{Host: "gw1", Vpc: "blue"})
	dest.waitFor(t, "every destination of blue for gw1", func(v *watch.View) bool {
		return v.Get("10.2.1.5") != nil && v.Get("10.2.2.5") != nil
	})
	refused := watchRaw(t, conn, destWatch, &p4meshv1.WatchRequest{Host: "gw3", Vpc: "blue"})
	if code, msg := refused.ended(t); code != codes.PermissionDenied || !strings.Contains(msg, "no endpoint in VPC blue") {
		t.Errorf("gw3 watching blue: %v %q; want PermissionDenied", code, msg)
	}
	// red's side changing on c1 reaches the gateway's copy of blue's
	// peering with red, as it reaches blue's hosts.
	red := c1.srv.Config().Clone()
	vpcOf(red, "red").Subnets = append(vpcOf(red, "red").Subnets, pfx("10.5.0.0/16"))
	if err := c1.srv.Apply(red); err != nil {
		t.Fatal(err)
	}
	gw.waitFor(t, "red's new subnet in gw1's peering", func(v *watch.View) bool {
		return slices.Contains(peeringOf(v, "blue", "red").GetPeerPrefixes(), "10.5.0.0/16")
	})

	// An endpoint of blue coming to gw1 and leaving again leaves its
	// gateway's items in place.
	ep := Endpoint{ID: "blue-gw1", VPC: "blue", Kind: KindVM, IP: ip("10.2.3.5"), MAC: mustMAC("02:02:00:00:03:05"), Host: "gw1", Port: 5}
	if err := c2.srv.ApplyChange(&Change{Endpoints: []Endpoint{ep}}); err != nil {
		t.Fatal(err)
	}
	gw.waitFor(t, "blue's endpoint on gw1", func(v *watch.View) bool { return v.Get("endpoint/blue-gw1") != nil })
	if err := c2.srv.ApplyChange(&Change{DeleteEndpoints: []string{ep.ID}}); err != nil {
		t.Fatal(err)
	}
	gw.waitFor(t, "blue's endpoint gone from gw1", func(v *watch.View) bool { return v.Get("endpoint/blue-gw1") == nil })
	if v := &gw.view; v.Get("vpc/blue") == nil || peeringOf(v, "blue", "red") == nil || v.Get("gateway-duty/blue-gw/blue") == nil {
		t.Errorf("gw1 lost blue's items with its last endpoint there:\n%s", dumpView(v.Items()))
	}

	// Taking gw1 out of the pool takes its duty and its right away.
	open := watchRaw(t, conn, destWatch, &p4meshv1.WatchRequest{Host: "gw1", Vpc: "blue"})
	if items, _, _ := open.snapshot(t); len(items) != 2 {
		t.Fatalf("gw1's destinations of blue: %v", keys(items))
	}
	cfg := c2.srv.Config().Clone()
	cfg.GatewayPools[0].Members = []string{"gw2"}
	if err := c2.srv.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	gw.waitFor(t, "gw1 without duty", func(v *watch.View) bool {
		return v.Get("gateway-duty/blue-gw/blue") == nil && v.Get("vpc/blue") == nil && v.Get("host") != nil
	})
	if code, msg := open.ended(t); code != codes.PermissionDenied {
		t.Errorf("gw1's watch of blue after it left the pool: %v %q; want PermissionDenied", code, msg)
	}
}

// Hosts of a VPC peered with a pool's VPC get the pool with its live
// members only, through the peer controller (PeerSide) and from their own:
// a member is live from its first report until the health timeout passes
// without one.
func TestGatewayPoolMembersFollowHealth(t *testing.T) {
	checkNoLeaks(t)
	c1, c2 := poolControllers(t)
	conn1, conn2 := dial(t, c1.addr), dial(t, c2.addr)
	h1 := follow(t, conn1, hostWatch, &p4meshv1.WatchRequest{Host: "h1"})
	pool := func(what, peer string, want ...string) {
		t.Helper()
		h1.waitFor(t, what, func(v *watch.View) bool {
			p := peeringOf(v, "red", peer)
			// A pool with no live member sends nothing: direct.
			mode := "pool"
			if len(want) == 0 {
				mode = "direct"
				if !strings.Contains(p.GetModeReason(), "has no live member: direct") {
					return false
				}
			}
			return p.GetGatewayPool() != nil && p.GetMode() == mode && slices.Equal(members(p), want)
		})
	}

	// Members configured when the controller started count as live for
	// a health timeout (a restart must not empty every group); gw2 never
	// reports, so it goes; gw1 reports, so it stays.
	gw1 := report(t, conn2, "gw1", poolHealth/4)
	pool("blue-gw with gw1 only", "blue", "gw1=192.168.0.11")
	p := peeringOf(&h1.view, "red", "blue").GetGatewayPool()
	if p.GetName() != "blue-gw" || p.GetVpc() != "blue" || p.GetVni() != 200 || p.GetPromotePackets() != 3 || p.GetPromoteWindowMs() != 1000 ||
		p.GetDirectAbovePps() != 1000 || p.GetPoolBelowPps() != 200 {
		t.Errorf("pool as h1 gets it: %v", p)
	}
	if !strings.Contains(peeringOf(&h1.view, "red", "blue").GetModeReason(), "gateway pool blue-gw serves blue") {
		t.Errorf("mode reason: %q", peeringOf(&h1.view, "red", "blue").GetModeReason())
	}
	// A local pool: gw9 has not reported, and goes once the start's
	// grace is over; it comes back at its first report.
	pool("green-gw with no member", "green")
	gw9 := report(t, conn1, "gw9", poolHealth/4)
	pool("green-gw with gw9", "green", "gw9=192.168.0.19")
	gw9.stop()

	gw1.stop()
	pool("blue-gw with no member after gw1 stopped", "blue")
	gw2 := report(t, conn2, "gw2", poolHealth/4)
	report(t, conn2, "gw1", poolHealth/4)
	pool("blue-gw with both back", "blue", "gw1=192.168.0.11", "gw2=192.168.0.12")
	gw2.stop()
	pool("blue-gw without gw2", "blue", "gw1=192.168.0.11")

	// gNMI's state: the pools' live members, the peerings' modes.
	for _, st := range c2.srv.Stats().GatewayPools {
		if st.Name != "blue-gw" || !slices.Equal(st.Live, []string{"gw1"}) {
			t.Errorf("c2's pool state: %+v", st)
		}
	}
	for _, ps := range c1.srv.Peerings() {
		switch ps.PeerVPC {
		case "blue":
			if ps.Mode != "pool" || ps.GatewayPool != "blue-gw" || ps.DirectAbovePPS != 1000 || ps.PoolBelowPPS != 200 {
				t.Errorf("c1's state of %s->%s: %+v", ps.VPC, ps.PeerVPC, ps)
			}
		case "green": // gw9 stopped reporting
			if ps.Mode != "direct" || ps.GatewayPool != "green-gw" || !strings.Contains(ps.ModeReason, "no live member") {
				t.Errorf("c1's state of %s->%s: %+v", ps.VPC, ps.PeerVPC, ps)
			}
		default:
			if ps.Mode != "direct" || !strings.Contains(ps.ModeReason, "no gateway pool serves") {
				t.Errorf("c1's state of %s->%s: %+v", ps.VPC, ps.PeerVPC, ps)
			}
		}
	}
	// Peerings whose peer no pool serves are as they were before pools.
	if p := peeringOf(&h1.view, "green", "red"); p != nil {
		t.Errorf("h1 has green's peering: %v", p)
	}
	h3 := follow(t, conn1, hostWatch, &p4meshv1.WatchRequest{Host: "h3"})
	h3.waitFor(t, "green's peering with red on h3", func(v *watch.View) bool { return peeringOf(v, "green", "red").GetActive() })
	if p := peeringOf(&h3.view, "green", "red"); p.GetMode() != "" || p.GetGatewayPool() != nil {
		t.Errorf("green->red, red served by no pool: %v", p)
	}
}

// The controller of the sending VPC switches a peering to direct when its
// hosts' reported load goes above direct_above_pps, keeps it direct
// between the thresholds, and back to pool at or below pool_below_pps.
func TestGatewayLoadTrigger(t *testing.T) {
	checkNoLeaks(t)
	c1, c2 := poolControllers(t)
	conn1, conn2 := dial(t, c1.addr), dial(t, c2.addr)
	report(t, conn2, "gw1", poolHealth/4)
	h1 := follow(t, conn1, hostWatch, &p4meshv1.WatchRequest{Host: "h1"})
	mode := func(what, want string, reason ...string) {
		t.Helper()
		h1.waitFor(t, what, func(v *watch.View) bool {
			p := peeringOf(v, "red", "blue")
			if p.GetMode() != want {
				return false
			}
			for _, r := range reason {
				if !strings.Contains(p.GetModeReason(), r) {
					return false
				}
			}
			return true
		})
	}
	mode("red->blue through the pool", "pool")

	// Two hosts of red send; counts go up by what each sends per report.
	const period = 100 * time.Millisecond
	h1r, h2r := report(t, conn1, "h1", period), report(t, conn1, "h2", period)
	send := func(ctx context.Context, perReport uint64) {
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				h1r.add("red/blue", perReport)
				h2r.add("red/blue", perReport)
			}
		}
	}
	phase := func(perReport uint64) func() {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			send(ctx, perReport)
		}()
		return func() { cancel(); <-done }
	}
	stop := phase(1000) // ~10,000 pps per host
	mode("red->blue direct under load", "direct", "pps from red to blue above 1000: direct")
	stop()

	// ~500 pps in all: between the thresholds, the pair stays direct.
	stop = phase(25)
	eventually(t, "a load between the thresholds measured", func() bool {
		for _, ps := range c1.srv.Peerings() {
			if ps.PeerVPC == "blue" {
				return ps.PPS > 200 && ps.PPS <= 1000 && ps.Mode == "direct"
			}
		}
		return false
	})
	time.Sleep(3 * testLoadPeriod)
	if p := peeringOf(&h1.view, "red", "blue"); p.GetMode() != "direct" {
		t.Errorf("between the thresholds red->blue went %q: %s", p.GetMode(), p.GetModeReason())
	}
	stop()

	// Nothing sent: back to the pool.
	mode("red->blue back to the pool", "pool", "at or below 200: pool")
	// An OHC restart resets its counter: no spike of load from it.
	h1r.mu.Lock()
	h1r.packets["red/blue"] = 3
	h1r.mu.Unlock()
	time.Sleep(3 * testLoadPeriod)
	if p := peeringOf(&h1.view, "red", "blue"); p.GetMode() != "pool" {
		t.Errorf("a counter reset made red->blue %q: %s", p.GetMode(), p.GetModeReason())
	}
}

// A peering the load trigger made direct is direct again from the first
// view after a controller restart, and stays direct while the hosts'
// load is measured again: a restart must not move a loaded peering
// through its gateways for the seconds a rate takes (nor rewrite every
// host's entries twice). Back at its pool, the mode is forgotten.
func TestGatewayLoadModeSurvivesRestart(t *testing.T) {
	checkNoLeaks(t)
	l1, l2 := listen(t), listen(t)
	a1, a2 := l1.Addr().String(), l2.Addr().String()
	l2.Close() // c2 is not needed: red -> green is c1's alone
	cfg := c1Config(t, a1, a2)
	cfg.Hosts = append(cfg.Hosts, Host{ID: "gw9", UnderlayIP: ip("192.168.0.19"), MAC: mustMAC("02:aa:00:00:01:19"), UplinkPort: 1})
	cfg.Peerings = append(cfg.Peerings, Peering{VPC: "red", PeerVPC: "green", ExportPolicy: "all"}, Peering{VPC: "green", PeerVPC: "red", ExportPolicy: "all"})
	cfg.GatewayPools = []GatewayPool{{Name: "green-gw", Members: []string{"gw9"}, VPCs: []string{"green"}, HealthTimeout: poolHealth, Heartbeat: poolHealth / 4,
		PromotePackets: 3, PromoteWindow: time.Second, DirectAbovePPS: 1000, PoolBelowPPS: 200}}
	dir := t.TempDir()
	// A rate takes a window (1s) of 100ms reports: the warm-up outlasts it.
	const warmup = 2 * time.Second
	start := func(lis net.Listener, items *ItemStore) *testCtl {
		return startCtl(t, "c1", lis, t.TempDir(), cfg, func(o *ServerOptions) {
			o.Store, o.GatewayLoadPeriod, o.GatewayLoadWarmup = items, testLoadPeriod, warmup
		})
	}
	items, b := openItems(t, dir)
	if _, err := items.Startup(cfg, true); err != nil {
		t.Fatal(err)
	}
	c1 := start(l1, items)

	// Hosts of red send ~10,000 pps each to green; the counts go on
	// across the restart, as an OHC's do.
	var mu sync.Mutex
	sent := map[string]uint64{}
	perTick := uint64(1000)
	reporting := func(conn *grpc.ClientConn) func() {
		var rs []*reporter
		for _, h := range []string{"h1", "h2"} {
			rs = append(rs, report(t, conn, h, 100*time.Millisecond))
		}
		gw := report(t, conn, "gw9", poolHealth/4)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				mu.Lock()
				for i, h := range []string{"h1", "h2"} {
					sent[h] += perTick
					rs[i].mu.Lock()
					rs[i].packets["red/green"] = sent[h]
					rs[i].mu.Unlock()
				}
				mu.Unlock()
			}
		}()
		return func() {
			cancel()
			<-done
			for _, r := range rs {
				r.stop()
			}
			gw.stop()
		}
	}
	conn := dial(t, c1.addr)
	stopLoad := reporting(conn)
	h1 := follow(t, conn, hostWatch, &p4meshv1.WatchRequest{Host: "h1"})
	h1.waitFor(t, "red->green direct under load", func(v *watch.View) bool {
		return peeringOf(v, "red", "green").GetMode() == "direct"
	})
	if got := items.PoolModes(); got[PeeringKey{VPC: "red", PeerVPC: "green"}].Direct != true {
		t.Fatalf("the direct mode was not stored: %v", got)
	}

	stopLoad()
	c1.stop()
	b.Close()
	items, b = openItems(t, dir)
	defer b.Close()
	lis, err := net.Listen("tcp", a1)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	c1 = start(lis, items)
	conn = dial(t, c1.addr)
	stopLoad = reporting(conn)
	h1 = follow(t, conn, hostWatch, &p4meshv1.WatchRequest{Host: "h1"})
	h1.waitFor(t, "red->green after the restart", func(v *watch.View) bool {
		return peeringOf(v, "red", "green") != nil
	})
	// Through the warm-up and a window past it, every view says direct.
	for time.Since(began) < warmup+time.Second {
		if p := peeringOf(&h1.view, "red", "green"); p.GetMode() != "direct" {
			t.Fatalf("%v after the restart red->green is %q: %s", time.Since(began).Round(time.Millisecond), p.GetMode(), p.GetModeReason())
		}
		time.Sleep(10 * time.Millisecond)
	}

	mu.Lock()
	perTick = 0
	mu.Unlock()
	h1.waitFor(t, "red->green back to the pool when idle", func(v *watch.View) bool {
		return peeringOf(v, "red", "green").GetMode() == "pool"
	})
	eventually(t, "the mode forgotten", func() bool { return len(items.PoolModes()) == 0 })
	stopLoad()
}
