package bgplink

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/p4mesh/p4mesh/bgp"
	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/identity"
)

var ipv4Unicast = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}

// router is a plain GoBGP server standing in for an on-prem router at
// 127.0.0.2, accepting a session from the controller's speaker.
type router struct {
	srv  *server.BgpServer
	port uint16
}

func newRouter(t *testing.T, addr string, as uint32) *router {
	t.Helper()
	r := &router{srv: server.NewBgpServer()}
	go r.srv.Serve()
	var err error
	for range 5 {
		l, lerr := net.Listen("tcp", addr+":0")
		if lerr != nil {
			t.Skipf("cannot listen on %s: %v", addr, lerr)
		}
		r.port = uint16(l.Addr().(*net.TCPAddr).Port)
		l.Close()
		err = r.srv.StartBgp(t.Context(), &api.StartBgpRequest{Global: &api.Global{
			Asn: as, RouterId: addr, ListenPort: int32(r.port), ListenAddresses: []string{addr},
		}})
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.srv.Stop)
	err = r.srv.AddPeer(context.Background(), &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: 64512},
		Transport: &api.Transport{PassiveMode: true},
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 9, KeepaliveInterval: 3, IdleHoldTimeAfterReset: 1}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *router) path(prefix string) *api.Path {
	p := netip.MustParsePrefix(prefix)
	nlri, _ := anypb.New(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	origin, _ := anypb.New(&api.OriginAttribute{Origin: 0})
	nh, _ := anypb.New(&api.NextHopAttribute{NextHop: "127.0.0.2"})
	return &api.Path{Family: ipv4Unicast, Nlri: nlri, Pattrs: []*anypb.Any{origin, nh}}
}

func (r *router) announce(t *testing.T, prefix string) {
	if _, err := r.srv.AddPath(context.Background(), &api.AddPathRequest{Path: r.path(prefix)}); err != nil {
		t.Fatal(err)
	}
}

func (r *router) withdraw(t *testing.T, prefix string) {
	if err := r.srv.DeletePath(context.Background(), &api.DeletePathRequest{Family: ipv4Unicast, Path: r.path(prefix)}); err != nil {
		t.Fatal(err)
	}
}

// received is what the router has from the speaker: prefix → next hop.
func (r *router) received() map[string]string {
	got := map[string]string{}
	_ = r.srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_ADJ_IN, Name: "127.0.0.1", Family: ipv4Unicast}, func(d *api.Destination) {
		for _, p := range d.Paths {
			for _, a := range p.Pattrs {
				var nh api.NextHopAttribute
				if a.UnmarshalTo(&nh) == nil {
					got[d.Prefix] = nh.NextHop
				}
			}
		}
	})
	return got
}

const config = `controller: c1
directory:
  - name: c1
    address: 127.0.0.1:7001
    vpcs: [red, blue]
vpcs:
  - name: red
    vni: 100
    subnets: [10.1.0.0/16]
  - name: blue
    vni: 200
    subnets: [10.2.0.0/16]
hosts:
  - id: h1
    underlay_ip: 192.168.0.1
    mac: 02:aa:00:00:00:01
    uplink_port: 1
endpoints:
  - id: red-vpn
    vpc: red
    kind: vpn
    ip: 10.1.255.1
    mac: 02:01:00:00:ff:01
    host: h1
    port: 3
    router_mac: 02:fe:00:00:00:09
export_policies:
  - name: all
peerings:
  - vpc: red
    peer_vpc: blue
    export_policy: all
  - vpc: blue
    peer_vpc: red
    export_policy: all
bgp:
  local_as: 64512
  router_id: 10.255.0.1
  listen_port: -1
  neighbors:
    - vpc: red
      address: 127.0.0.2
      attachment: red-vpn
      peer_as: 65001
      hold_time: 9
      keepalive: 3
      port: %d
`

// syncBuffer is a log sink tests read while the Link writes.
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

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func bgpRoute(srv *controller.Server, vpc, prefix string) *controller.Candidate {
	for _, c := range srv.RIB(vpc) {
		if c.Origin == controller.OriginBGP && c.Prefix.String() == prefix {
			return &c
		}
	}
	return nil
}

// A Link runs the speaker the configuration describes: the router's
// routes reach the RIB, the VPC's subnets and its peer's exported subnets
// reach the router with the attachment's IP as next hop, the session is
// reported, and stopping the Link withdraws what was learned.
func TestLinkEndToEnd(t *testing.T) {
	r := newRouter(t, "127.0.0.2", 65001)
	cfg, err := controller.ParseConfig([]byte(fmt.Sprintf(config, r.port)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := controller.NewServer(controller.ServerOptions{Store: controller.NoPersistence{Start: cfg}, Auth: identity.Auth{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	l := New(srv, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Interval: 100 * time.Millisecond, ConnectRetry: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-done
		}
	}()

	// Two GoBGP servers in one process share globals StartBgp writes:
	// the router announces only once the speaker has started.
	eventually(t, "the session in the controller's state", func() bool {
		ns := srv.Stats().BGPNeighbors
		return len(ns) == 1 && ns[0].State == "established"
	})
	r.announce(t, "192.0.2.0/24")
	eventually(t, "the router's route in red's RIB", func() bool {
		c := bgpRoute(srv, "red", "192.0.2.0/24")
		return c != nil && c.Chosen && c.Source == "red-vpn"
	})
	if c := bgpRoute(srv, "blue", "192.0.2.0/24"); c != nil && c.Origin == controller.OriginBGP {
		t.Errorf("red's route learned in blue: %+v", c)
	}
	eventually(t, "red's and blue's exported subnets at the router", func() bool {
		got := r.received()
		return got["10.1.0.0/16"] == "10.1.255.1" && got["10.2.0.0/16"] == "10.1.255.1"
	})
	eventually(t, "the session in the controller's state", func() bool {
		ns := srv.Stats().BGPNeighbors
		return len(ns) == 1 && ns[0].State == "established" && ns[0].Attachment == "red-vpn" && ns[0].Accepted == 1
	})
	if !strings.Contains(logs.String(), "BGP: session up") {
		t.Errorf("no log line for the session going up:\n%s", logs.String())
	}

	r.withdraw(t, "192.0.2.0/24")
	eventually(t, "the withdrawal in red's RIB", func() bool { return bgpRoute(srv, "red", "192.0.2.0/24") == nil })

	// Without the peering's other side, blue's subnet is not advertised.
	c := srv.Config().Clone()
	c.Peerings = c.Peerings[:1]
	if err := srv.Apply(c); err != nil {
		t.Fatal(err)
	}
	eventually(t, "blue's subnet gone from the router", func() bool {
		got := r.received()
		_, blue := got["10.2.0.0/16"]
		return !blue && got["10.1.0.0/16"] == "10.1.255.1"
	})

	r.announce(t, "198.51.100.0/24")
	eventually(t, "the second route", func() bool { return bgpRoute(srv, "red", "198.51.100.0/24") != nil })
	cancel()
	stopped = true
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c := bgpRoute(srv, "red", "198.51.100.0/24"); c != nil {
		t.Errorf("a learned route stayed after the Link stopped: %+v", c)
	}
	if ns := srv.Stats().BGPNeighbors; len(ns) != 0 {
		t.Errorf("sessions still reported after stop: %+v", ns)
	}
}

// Within one drain of the queue the last update of a route wins, whatever
// the order of adds and withdrawals, and a dropAll withdraws everything.
func TestApplyOrder(t *testing.T) {
	// Whatever the route manager is handed at a time: everything, or
	// every one or two routes.
	for _, n := range []int{flushSize, 1, 2} {
		t.Run(fmt.Sprintf("flush=%d", n), func(t *testing.T) {
			defer func(old int) { flushSize = old }(flushSize)
			flushSize = n
			testApplyOrder(t)
		})
	}
}

func testApplyOrder(t *testing.T) {
	cfg, err := controller.ParseConfig([]byte(fmt.Sprintf(config, 179)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := controller.NewServer(controller.ServerOptions{Store: controller.NoPersistence{Start: cfg}, Auth: identity.Auth{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	l := New(srv, Options{})
	route := func(p string, withdraw bool) bgp.Update {
		return bgp.Update{Withdraw: withdraw, Route: bgp.Route{VPC: "red", Neighbor: "red-vpn", Prefix: netip.MustParsePrefix(p), NextHop: netip.MustParseAddr("127.0.0.2")}}
	}
	l.apply([]entry{
		{us: []bgp.Update{route("192.0.2.0/24", false), route("198.51.100.0/24", false)}},
		{us: []bgp.Update{route("192.0.2.0/24", true), route("203.0.113.0/24", true), route("203.0.113.0/24", false)}},
		{us: []bgp.Update{route("198.51.100.0/24", true), route("198.51.100.0/24", false), route("198.51.100.0/24", false)}},
	})
	for p, want := range map[string]bool{"192.0.2.0/24": false, "198.51.100.0/24": true, "203.0.113.0/24": true} {
		if got := bgpRoute(srv, "red", p) != nil; got != want {
			t.Errorf("%s in red's RIB: %v, want %v", p, got, want)
		}
	}
	// The next drain reuses the batches' memory: nothing of the last one
	// may be handed over again (192.0.2.0/24 was added, then withdrawn).
	l.apply([]entry{{us: []bgp.Update{route("198.51.100.0/24", true)}}})
	for p, want := range map[string]bool{"192.0.2.0/24": false, "198.51.100.0/24": false, "203.0.113.0/24": true} {
		if got := bgpRoute(srv, "red", p) != nil; got != want {
			t.Errorf("after a second drain, %s in red's RIB: %v, want %v", p, got, want)
		}
	}
	l.apply([]entry{{us: []bgp.Update{route("192.0.2.0/24", false)}}, {dropAll: true}})
	for _, p := range []string{"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"} {
		if bgpRoute(srv, "red", p) != nil {
			t.Errorf("%s in red's RIB after dropAll", p)
		}
	}
}
