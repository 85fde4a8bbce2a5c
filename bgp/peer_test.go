package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/types/known/anypb"
)

// The tests run a real GoBGP server as the on-prem router, on loopback:
// the speaker (127.0.0.1) dials it at 127.0.0.N on a free high port.

const speakerAS = 64512

// testRouters are all the test routers' servers, for fenceTestRouters.
var (
	testRoutersMu sync.Mutex
	testRouters   []*server.BgpServer
)

// fenceTestRouters is the speaker's fenceAll for the test routers: GoBGP
// writes package variables in StartBgp that every server reads, so the
// routers' reads so far must be ordered before a speaker's new server
// starts (a production speaker has no other GoBGP in its process).
func fenceTestRouters() {
	testRoutersMu.Lock()
	rs := slices.Clone(testRouters)
	testRoutersMu.Unlock()
	for _, r := range rs {
		r.GetBgp(context.Background(), &api.GetBgpRequest{})
	}
}

// testPeer is a plain GoBGP server standing in for an on-prem router.
type testPeer struct {
	srv  *server.BgpServer
	addr netip.Addr
	port uint16
	as   uint32
}

func freePort(t testing.TB, addr netip.Addr) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// newTestPeer starts a router at addr with AS as that accepts a session
// from the speaker (passively, as the speaker does not listen).
func newTestPeer(t testing.TB, addr string, as uint32, opts ...func(*api.Peer)) *testPeer {
	t.Helper()
	a := netip.MustParseAddr(addr)
	p := &testPeer{srv: server.NewBgpServer(server.LoggerOption(newGoBGPLogger(discard()))), addr: a, as: as}
	go p.srv.Serve()
	ctx := context.Background()
	var err error
	for range 5 { // the free port may be taken between probe and bind
		p.port = freePort(t, a)
		err = p.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
			Asn: as, RouterId: addr, ListenPort: int32(p.port), ListenAddresses: []string{addr},
		}})
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("start test router %s: %v", addr, err)
	}
	t.Cleanup(p.srv.Stop)
	testRoutersMu.Lock()
	testRouters = append(testRouters, p.srv)
	testRoutersMu.Unlock()
	n := &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: speakerAS},
		Transport: &api.Transport{PassiveMode: true},
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 9, KeepaliveInterval: 3, IdleHoldTimeAfterReset: 1}},
	}
	for _, o := range opts {
		o(n)
	}
	if err := p.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: n}); err != nil {
		t.Fatal(err)
	}
	return p
}

// route describes an announcement by a test router.
type route struct {
	prefix    string
	asPath    []uint32 // before the router's own AS
	med       uint32
	localPref uint32 // only travels over iBGP
}

func (p *testPeer) announce(t testing.TB, rs ...route) {
	t.Helper()
	for _, r := range rs {
		pfx := netip.MustParsePrefix(r.prefix)
		nlri, _ := anypb.New(&api.IPAddressPrefix{Prefix: pfx.Addr().String(), PrefixLen: uint32(pfx.Bits())})
		origin, _ := anypb.New(&api.OriginAttribute{Origin: 0})
		nh, _ := anypb.New(&api.NextHopAttribute{NextHop: p.addr.String()})
		attrs := []*anypb.Any{origin, nh}
		if len(r.asPath) > 0 {
			a, _ := anypb.New(&api.AsPathAttribute{Segments: []*api.AsSegment{{Type: api.AsSegment_AS_SEQUENCE, Numbers: r.asPath}}})
			attrs = append(attrs, a)
		}
		if r.med != 0 {
			a, _ := anypb.New(&api.MultiExitDiscAttribute{Med: r.med})
			attrs = append(attrs, a)
		}
		if r.localPref != 0 {
			a, _ := anypb.New(&api.LocalPrefAttribute{LocalPref: r.localPref})
			attrs = append(attrs, a)
		}
		if _, err := p.srv.AddPath(context.Background(), &api.AddPathRequest{Path: &api.Path{Family: ipv4Unicast, Nlri: nlri, Pattrs: attrs}}); err != nil {
			t.Fatalf("announce %s: %v", r.prefix, err)
		}
	}
}

func (p *testPeer) withdraw(t testing.TB, prefixes ...string) {
	t.Helper()
	for _, s := range prefixes {
		pfx := netip.MustParsePrefix(s)
		nlri, _ := anypb.New(&api.IPAddressPrefix{Prefix: pfx.Addr().String(), PrefixLen: uint32(pfx.Bits())})
		origin, _ := anypb.New(&api.OriginAttribute{Origin: 0})
		nh, _ := anypb.New(&api.NextHopAttribute{NextHop: p.addr.String()})
		err := p.srv.DeletePath(context.Background(), &api.DeletePathRequest{Family: ipv4Unicast, Path: &api.Path{Family: ipv4Unicast, Nlri: nlri, Pattrs: []*anypb.Any{origin, nh}}})
		if err != nil {
			t.Fatalf("withdraw %s: %v", s, err)
		}
	}
}

// received is what the router has from the speaker: prefix -> next hop.
func (p *testPeer) received(t testing.TB) map[netip.Prefix]netip.Addr {
	t.Helper()
	got := make(map[netip.Prefix]netip.Addr)
	err := p.srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_ADJ_IN, Name: "127.0.0.1", Family: ipv4Unicast}, func(d *api.Destination) {
		for _, path := range d.Paths {
			var pfx api.IPAddressPrefix
			if err := path.Nlri.UnmarshalTo(&pfx); err != nil {
				t.Errorf("decode %v: %v", path, err)
				continue
			}
			var nh netip.Addr
			for _, a := range path.Pattrs {
				var v api.NextHopAttribute
				if a.MessageIs(&v) && a.UnmarshalTo(&v) == nil {
					nh, _ = netip.ParseAddr(v.NextHop)
				}
			}
			got[netip.MustParsePrefix(fmt.Sprintf("%s/%d", pfx.Prefix, pfx.PrefixLen))] = nh
		}
	})
	if err != nil && len(got) == 0 {
		return got // no session yet
	}
	return got
}

// neighbor is the speaker's configuration for this router.
func (p *testPeer) neighbor(name, vpc string, vni uint32, nextHop string) Neighbor {
	return Neighbor{
		Name: name, VPC: vpc, VNI: vni, Address: p.addr, Port: p.port, PeerAS: p.as,
		HoldTime: 9 * time.Second, ConnectRetry: time.Second, NextHop: netip.MustParseAddr(nextHop),
	}
}

// learned collects what the speaker delivers, as its consumer would.
type learned struct {
	mu        sync.Mutex
	routes    map[routeKey]Route
	withdrawn map[netip.Prefix]int // withdrawals of routes it had
	batches   int
}

type routeKey struct {
	vpc, neighbor string
	prefix        netip.Prefix
}

func (l *learned) deliver(us []Update) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.batches++
	for _, u := range us {
		k := routeKey{u.Route.VPC, u.Route.Neighbor, u.Route.Prefix}
		if u.Withdraw {
			if _, ok := l.routes[k]; ok {
				l.withdrawn[k.prefix]++
			}
			delete(l.routes, k)
		} else {
			l.routes[k] = u.Route
		}
	}
}

func (l *learned) withdrawals(p string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.withdrawn[netip.MustParsePrefix(p)]
}

// inVPC returns the routes of vpc by prefix, with the neighbor's name.
func (l *learned) inVPC(vpc string) map[string]Route {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]Route)
	for k, r := range l.routes {
		if k.vpc == vpc {
			out[k.prefix.String()] = r
		}
	}
	return out
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testLogger logs GoBGP and the speaker to stderr when BGP_TEST_LOG is set;
// not to t.Log, which GoBGP's goroutines would outlive.
func testLogger(testing.TB) *slog.Logger {
	if os.Getenv("BGP_TEST_LOG") == "" {
		return discard()
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startSpeaker starts a speaker that does not listen, delivering to the
// returned collector.
func startSpeaker(t testing.TB) (*Speaker, *learned) {
	t.Helper()
	l := &learned{routes: make(map[routeKey]Route), withdrawn: make(map[netip.Prefix]int)}
	s, err := New(Config{RouterID: netip.MustParseAddr("10.255.0.1"), LocalAS: speakerAS, ListenPort: -1, Deliver: l.deliver}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s.testHookStartVPC = fenceTestRouters
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s, l
}

// eventually polls cond until it holds, failing with what it last saw.
func eventually(t testing.TB, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s; saw %s", within, what, saw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func state(t testing.TB, s *Speaker, name string) NeighborState {
	t.Helper()
	ns, err := s.Neighbors(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if n.Name == name {
			return n
		}
	}
	return NeighborState{}
}

func waitEstablished(t testing.TB, s *Speaker, names ...string) {
	t.Helper()
	for _, name := range names {
		eventually(t, 20*time.Second, name+" established", func() (bool, string) {
			st := state(t, s, name)
			return st.State == "established", fmt.Sprintf("%+v", st)
		})
	}
}
