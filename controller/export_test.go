package controller

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// These tests check what an export policy keeps from a peer, as the peer's
// hosts see it: through the load-balancer and route streams a red host
// opens on c2 for blue under the policy of blue's peering with red. Each
// also reads blue's own view, so that what the peer does not see is known
// to be configured and published where it may be.

func lbWatch(ctx context.Context, conn *grpc.ClientConn, req *p4meshv1.WatchRequest) (grpc.ServerStreamingClient[p4meshv1.Event], error) {
	return p4meshv1.NewConnectivityClient(conn).WatchLoadBalancers(ctx, req)
}

func routeWatch(ctx context.Context, conn *grpc.ClientConn, req *p4meshv1.WatchRequest) (grpc.ServerStreamingClient[p4meshv1.Event], error) {
	return p4meshv1.NewConnectivityClient(conn).WatchRoutes(ctx, req)
}

// peeredWith is twoControllers(t, true) with c2's configuration changed by
// edit; it returns that configuration for the test to change further.
func peeredWith(t *testing.T, edit func(*Config)) (c1, c2 *testCtl, cfg2 *Config) {
	t.Helper()
	l1, l2 := listen(t), listen(t)
	a1, a2 := l1.Addr().String(), l2.Addr().String()
	cfg2 = c2Config(t, a1, a2, true)
	edit(cfg2)
	c1 = startCtl(t, "c1", l1, t.TempDir(), c1Config(t, a1, a2))
	c2 = startCtl(t, "c2", l2, t.TempDir(), cfg2)
	return c1, c2, cfg2
}

// ownView is blue's own view, as h2 (blue-in's host) watches it.
var ownView = &p4meshv1.WatchRequest{Host: "h2", Vpc: "blue"}

// peerView is blue as a red host watches it under the peering's policy.
func peerView(policy string) *p4meshv1.WatchRequest {
	return &p4meshv1.WatchRequest{Host: "h1", Vpc: "blue", ExportPolicy: policy, PeerVpc: "red"}
}

func lb(name, vip, proto string, port uint16, backends ...string) LoadBalancer {
	l := LoadBalancer{Name: name, VPC: "blue", VIP: ip(vip), Protocol: proto, Port: port}
	for _, b := range backends {
		l.Backends = append(l.Backends, LBBackend{Endpoint: b, Weight: 1})
	}
	return l
}

func blueRoute(prefix string) Route {
	return Route{VPC: "blue", Prefix: pfx(prefix), NextHop: "blue-in", Priority: 100}
}

// TestExportPolicyFiltersLoadBalancersByProtocol: under a policy that lets
// peers reach TCP only, a TCP load balancer is published to the peer and a
// UDP one, its VIP and backend exported as well, is not.
func TestExportPolicyFiltersLoadBalancersByProtocol(t *testing.T) {
	checkNoLeaks(t)
	_, c2, cfg := peeredWith(t, func(c *Config) {
		c.ExportPolicies = append(c.ExportPolicies, ExportPolicy{Name: "blue-tcp", Prefixes: []netip.Prefix{pfx("10.2.1.0/24")}, Protocols: []string{"tcp"}})
		c.Peerings[0].ExportPolicy = "blue-tcp"
		c.LoadBalancers = []LoadBalancer{
			lb("web", "10.2.1.100", "tcp", 80, "blue-in"),
			lb("dns", "10.2.1.101", "udp", 53, "blue-in"),
		}
	})
	conn := dial(t, c2.addr)

	own, _, _ := watchRaw(t, conn, lbWatch, ownView).snapshot(t)
	if got := keys(own); !slices.Equal(got, []string{"dns", "web"}) {
		t.Fatalf("blue's own load balancers = %v, want [dns web]", got)
	}
	peer := watchRaw(t, conn, lbWatch, peerView("blue-tcp"))
	items, _, _ := peer.snapshot(t)
	if got := keys(items); !slices.Equal(got, []string{"web"}) {
		t.Fatalf("blue's load balancers under blue-tcp = %v, want only the TCP one, [web]", got)
	}
	if l := items["web"].GetLoadBalancer(); l.GetProtocol() != 6 || l.GetVip() != "10.2.1.100" {
		t.Errorf("web under blue-tcp = %v", l)
	}

	// Deltas too: a UDP load balancer added is never sent, a TCP one is.
	// Stream order proves the first was not.
	cfg = cfg.Clone()
	cfg.LoadBalancers = append(cfg.LoadBalancers, lb("ntp", "10.2.1.102", "udp", 123, "blue-in"))
	if err := c2.srv.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	cfg = cfg.Clone()
	cfg.LoadBalancers = append(cfg.LoadBalancers, lb("ssh", "10.2.1.103", "tcp", 22, "blue-in"))
	if err := c2.srv.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if ev := peer.next(t); ev.GetType() != p4meshv1.Event_PUT || ev.GetKey() != "ssh" {
		t.Fatalf("after adding ntp (UDP) and ssh (TCP), got %v, want PUT ssh", ev)
	}
}

// TestExportPolicyFiltersRoutesByPrefix: under a policy exporting
// 10.2.1.0/24, a route inside it is published to the peer; routes outside
// it are not, nor one that covers it but is broader (publishing that would
// export the rest of what it covers).
func TestExportPolicyFiltersRoutesByPrefix(t *testing.T) {
	checkNoLeaks(t)
	_, c2, cfg := peeredWith(t, func(c *Config) {
		hidden := blueRoute("10.2.1.64/26")
		hidden.NextHop = "blue-out" // 10.2.2.5, outside what blue-web exports
		c.Routes = []Route{blueRoute("10.2.1.128/25"), blueRoute("10.2.2.0/24"), blueRoute("10.2.0.0/20"), hidden}
	})
	conn := dial(t, c2.addr)

	own, _, _ := watchRaw(t, conn, routeWatch, ownView).snapshot(t)
	if got, want := keys(own), []string{"10.2.0.0/20", "10.2.1.128/25", "10.2.1.64/26", "10.2.2.0/24"}; !slices.Equal(got, want) {
		t.Fatalf("blue's own routes = %v, want %v", got, want)
	}
	peer := watchRaw(t, conn, routeWatch, peerView("blue-web"))
	items, _, _ := peer.snapshot(t)
	if got := keys(items); !slices.Equal(got, []string{"10.2.1.128/25", "10.2.1.64/26"}) {
		t.Fatalf("blue's routes under blue-web = %v, want only the ones inside 10.2.1.0/24", got)
	}
	if r := items["10.2.1.128/25"].GetRoute(); r.GetNextHopIp() != "10.2.1.5" {
		t.Errorf("10.2.1.128/25 under blue-web = %v, want next hop 10.2.1.5", r)
	}
	// Its next hop is blue-out, which the policy hides: the route goes
	// out, the endpoint's address does not.
	if r := items["10.2.1.64/26"].GetRoute(); r.GetNextHopIp() != "" {
		t.Errorf("10.2.1.64/26 under blue-web = %v, want no next hop (blue-out is not exported)", r)
	}
	if r := own["10.2.1.64/26"].GetRoute(); r.GetNextHopIp() != "10.2.2.5" {
		t.Errorf("10.2.1.64/26 in blue's own view = %v, want next hop 10.2.2.5", r)
	}

	cfg = cfg.Clone()
	cfg.Routes = append(cfg.Routes, blueRoute("10.2.3.0/24"))
	if err := c2.srv.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	cfg = cfg.Clone()
	cfg.Routes = append(cfg.Routes, blueRoute("10.2.1.0/26"))
	if err := c2.srv.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if ev := peer.next(t); ev.GetType() != p4meshv1.Event_PUT || ev.GetKey() != "10.2.1.0/26" {
		t.Fatalf("after adding 10.2.3.0/24 (not exported) and 10.2.1.0/26 (exported), got %v, want PUT 10.2.1.0/26", ev)
	}
}

// TestExportPolicyFiltersLoadBalancerBackends: a peer gets only the
// backends the policy exports. A backend's IP, MAC and host are the
// endpoint's as much as a destination's are, and a backend handed to the
// peer is one its hosts would send flows to: so blue-out (10.2.2.5,
// outside blue-web's 10.2.1.0/24) is never published to red, and a load
// balancer with no exported backend is not published at all (the peer
// could reach nothing through it).
func TestExportPolicyFiltersLoadBalancerBackends(t *testing.T) {
	checkNoLeaks(t)
	_, c2, cfg := peeredWith(t, func(c *Config) {
		c.LoadBalancers = []LoadBalancer{
			lb("mixed", "10.2.1.100", "tcp", 80, "blue-in", "blue-out"),
			lb("hidden", "10.2.1.101", "tcp", 81, "blue-out"),
		}
	})
	conn := dial(t, c2.addr)

	own, _, _ := watchRaw(t, conn, lbWatch, ownView).snapshot(t)
	if got := backendIPs(own["mixed"]); !slices.Equal(got, []string{"10.2.1.5", "10.2.2.5"}) {
		t.Fatalf("mixed in blue's own view has backends %v, want both", got)
	}
	if got := backendIPs(own["hidden"]); !slices.Equal(got, []string{"10.2.2.5"}) {
		t.Fatalf("hidden in blue's own view has backends %v, want [10.2.2.5]", got)
	}

	peer := watchRaw(t, conn, lbWatch, peerView("blue-web"))
	items, _, _ := peer.snapshot(t)
	if got := keys(items); !slices.Equal(got, []string{"mixed"}) {
		t.Errorf("blue's load balancers under blue-web = %v, want [mixed]: hidden has no exported backend", got)
	}
	want := &p4meshv1.Backend{Endpoint: "blue-in", Ip: "10.2.1.5", Mac: "02:02:00:00:01:05", HostIp: "192.168.0.2", Weight: 1}
	if got := items["mixed"].GetLoadBalancer().GetBackends(); len(got) != 1 || !proto.Equal(got[0], want) {
		t.Errorf("mixed under blue-web has backends %v, want only %v", got, want)
	}
	if t.Failed() {
		return
	}

	// hidden gains an exported backend: it is published, with that one.
	cfg = cfg.Clone()
	cfg.LoadBalancers[1].Backends = append(cfg.LoadBalancers[1].Backends, LBBackend{Endpoint: "blue-in", Weight: 3})
	if err := c2.srv.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	ev := peer.next(t)
	if ev.GetType() != p4meshv1.Event_PUT || ev.GetKey() != "hidden" || !slices.Equal(backendIPs(ev), []string{"10.2.1.5"}) {
		t.Fatalf("after hidden gained blue-in: %v, want PUT hidden with backend 10.2.1.5 only", ev)
	}
}

// backendIPs returns the sorted backend IPs of a load balancer event.
func backendIPs(ev *p4meshv1.Event) []string {
	var out []string
	for _, b := range ev.GetLoadBalancer().GetBackends() {
		out = append(out, b.GetIp())
	}
	slices.Sort(out)
	return out
}

// TestConnectivityPrivateOnly is the same filtering at the unit, under a
// PrivateOnly policy: a privately used public range of red (100.64.0.0/24)
// stays out of every table a peer is served, load balancer backends
// included, while red's own view has it.
func TestConnectivityPrivateOnly(t *testing.T) {
	c := example(t)
	vpcOf(c, "red").Subnets = append(vpcOf(c, "red").Subnets, pfx("100.64.0.0/24"))
	c.Endpoints = append(c.Endpoints, Endpoint{ID: "red-pub", VPC: "red", Kind: KindVM, IP: ip("100.64.0.5"), MAC: mustMAC("02:01:00:00:64:05"), Host: "h2", Port: 5})
	c.LoadBalancers[0].Backends = append(c.LoadBalancers[0].Backends, LBBackend{Endpoint: "red-pub", Weight: 1})
	c.LoadBalancers = append(c.LoadBalancers, LoadBalancer{Name: "red-pub-web", VPC: "red", VIP: ip("10.1.0.101"), Protocol: "tcp", Port: 80, Backends: []LBBackend{{Endpoint: "red-pub", Weight: 1}}})
	c.Routes = append(c.Routes,
		Route{VPC: "red", Prefix: pfx("10.1.2.0/24"), NextHop: "red-router", Priority: 100},
		Route{VPC: "red", Prefix: pfx("100.64.0.128/25"), NextHop: "red-router", Priority: 100},
	)
	c.ExportPolicies = append(c.ExportPolicies, ExportPolicy{Name: "private", PrivateOnly: true})
	c.Peerings[0].ExportPolicy = "private"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}

	type view struct{ dest, fwd, lbs, routes []string }
	keysOf := func(m map[string]proto.Message) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	for _, tc := range []struct {
		policy  string
		want    view
		backend []string // of red-web
	}{
		{"", view{
			dest:   []string{"10.1.0.10", "10.1.0.11", "10.1.255.1", "100.64.0.5"},
			fwd:    []string{"10.1.0.10", "10.1.0.11", "10.1.255.1", "100.64.0.5"},
			lbs:    []string{"red-pub-web", "red-web"},
			routes: []string{"10.1.2.0/24", "100.64.0.128/25", "172.16.0.0/12"},
		}, []string{"red-vm1", "red-vm2", "red-pub"}},
		{"private", view{
			dest:   []string{"10.1.0.10", "10.1.0.11", "10.1.255.1"},
			fwd:    []string{"10.1.0.10", "10.1.0.11", "10.1.255.1"},
			lbs:    []string{"red-web"},
			routes: []string{"10.1.2.0/24"},
		}, []string{"red-vm1", "red-vm2"}},
	} {
		dest, fwd, lbs, routes := c.connectivity(PublishedService{VPC: "red", Policy: tc.policy})
		got := view{keysOf(dest), keysOf(fwd), keysOf(lbs), keysOf(routes)}
		if !slices.Equal(got.dest, tc.want.dest) || !slices.Equal(got.fwd, tc.want.fwd) ||
			!slices.Equal(got.lbs, tc.want.lbs) || !slices.Equal(got.routes, tc.want.routes) {
			t.Errorf("policy %q publishes %+v, want %+v", tc.policy, got, tc.want)
		}
		var backends []string
		for _, b := range lbs["red-web"].(*p4meshv1.LoadBalancer).GetBackends() {
			backends = append(backends, b.GetEndpoint())
		}
		if !slices.Equal(backends, tc.backend) {
			t.Errorf("policy %q: red-web's backends = %v, want %v", tc.policy, backends, tc.backend)
		}
	}
}
