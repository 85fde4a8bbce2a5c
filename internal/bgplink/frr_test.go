//go:build linux

package bgplink

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/internal/frrtest"
)

const frrConfig = `controller: c1
directory:
  - name: c1
    address: 127.0.0.1:7001
    vpcs: [red]
vpcs:
  - name: red
    vni: 100
    subnets: [10.1.0.0/16]
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
bgp:
  local_as: 64512
  router_id: 10.255.0.1
  listen_address: %s
  listen_port: -1
  neighbors:
    - vpc: red
      address: %s
      attachment: red-vpn
      peer_as: 65010
      hold_time: 9
      keepalive: 3
      password: s3cret-md5
      max_prefixes: 3
`

// The MD5 password and max-prefix limit of a neighbor in the YAML
// configuration reach a real FRR through the controller, the Link and the
// speaker: the session comes up only with FRR's "neighbor ... password"
// (TCP MD5 on both sides), the routes within the limit are in red's RIB,
// and one prefix more ends the session, withdraws them and says why in
// the session's state. The limit is 3 for 2 routes: FRR sends red's
// subnet, which the speaker advertises, back to it (AS path 64512), and
// GoBGP counts that route, which it drops as an AS loop, against the
// limit (bgp/doc.go, Limits).
func TestLinkFRRPasswordAndMaxPrefixes(t *testing.T) {
	r := frrtest.New(t, frrtest.Config{Name: "lnk", AS: 65010, RouterID: netip.MustParseAddr("10.255.1.1")})
	r.SetNeighbors(frrtest.Neighbor{Address: r.Local, AS: 64512, Passive: true, Password: "s3cret-md5", HoldTime: 9, Keepalive: 3})
	r.Start()
	cfg, err := controller.ParseConfig(fmt.Appendf(nil, frrConfig, r.Local, r.Addr))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := controller.NewServer(controller.ServerOptions{Store: controller.NoPersistence{Start: cfg}, Auth: identity.Auth{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	l := New(srv, Options{Interval: 100 * time.Millisecond, ConnectRetry: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitFRR := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; state %+v; FRR:\n%s", what, srv.Stats().BGPNeighbors, r.Vtysh("show ip bgp neighbors "+r.Local.String()))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	established := func() bool {
		ns := srv.Stats().BGPNeighbors
		return len(ns) == 1 && ns[0].State == "established" && r.Established(r.Local)
	}
	waitFRR("the MD5-protected session established on both sides", established)
	if out := r.Vtysh("show ip bgp neighbors " + r.Local.String()); !strings.Contains(out, "Peer Authentication Enabled") {
		t.Errorf("FRR's session is not authenticated:\n%s", out)
	}

	r.Announce(netip.MustParsePrefix("192.168.60.0/24"))
	r.Announce(netip.MustParsePrefix("192.168.61.0/24"))
	waitFRR("FRR's two routes in red's RIB", func() bool {
		return bgpRoute(srv, "red", "192.168.60.0/24") != nil && bgpRoute(srv, "red", "192.168.61.0/24") != nil
	})
	r.Announce(netip.MustParsePrefix("192.168.62.0/24"))
	waitFRR("the session ended for the third prefix, its routes withdrawn", func() bool {
		ns := srv.Stats().BGPNeighbors
		return len(ns) == 1 && ns[0].State != "established" && strings.Contains(ns[0].LastError, "max-prefixes") &&
			bgpRoute(srv, "red", "192.168.60.0/24") == nil && bgpRoute(srv, "red", "192.168.61.0/24") == nil
	})
}

// A VPC's router id (bgp.vpcs[].router_id) is what its neighbor, a real
// FRR, sees in the speaker's OPEN, not the speaker's; changing it
// restarts the VPC's session with the new one and the routes are learned
// again; a bad one is refused and changes nothing. (FRR, not a GoBGP in
// the process: a second GoBGP would race with the VPC's new server on
// GoBGP's package variables under -race, see test/e2e's TestBGPFRR.)
func TestLinkFRRRouterIDPerVPC(t *testing.T) {
	r := frrtest.New(t, frrtest.Config{Name: "rid", AS: 65010, RouterID: netip.MustParseAddr("10.255.1.1")})
	r.SetNeighbors(frrtest.Neighbor{Address: r.Local, AS: 64512, Passive: true, Password: "s3cret-md5", HoldTime: 9, Keepalive: 3})
	r.Start()
	text := fmt.Sprintf(frrConfig, r.Local, r.Addr) + "  vpcs:\n    - vpc: red\n      router_id: 10.255.1.100\n"
	cfg, err := controller.ParseConfig([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := controller.NewServer(controller.ServerOptions{Store: controller.NoPersistence{Start: cfg}, Auth: identity.Auth{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	l := New(srv, Options{Interval: 100 * time.Millisecond, ConnectRetry: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	// remoteID is the router id FRR got in the speaker's OPEN, "" while
	// the session is not established.
	remoteID := func() string {
		var m map[string]struct {
			BGPState       string `json:"bgpState"`
			RemoteRouterID string `json:"remoteRouterId"`
		}
		if err := r.JSON("show ip bgp neighbors "+r.Local.String()+" json", &m); err != nil {
			return ""
		}
		if n := m[r.Local.String()]; n.BGPState == "Established" {
			return n.RemoteRouterID
		}
		return ""
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; FRR sees router id %q; state %+v", what, remoteID(), srv.Stats().BGPNeighbors)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	wait("FRR to see red's router id 10.255.1.100", func() bool { return remoteID() == "10.255.1.100" })
	r.Announce(netip.MustParsePrefix("192.168.70.0/24"))
	wait("FRR's route in red's RIB", func() bool { return bgpRoute(srv, "red", "192.168.70.0/24") != nil })

	c := srv.Config().Clone()
	c.BGP.VPCs[0].RouterID = netip.MustParseAddr("10.255.1.101")
	if err := srv.Apply(c); err != nil {
		t.Fatal(err)
	}
	wait("FRR to see red's new router id 10.255.1.101", func() bool { return remoteID() == "10.255.1.101" })
	wait("the route learned again over the new session", func() bool { return bgpRoute(srv, "red", "192.168.70.0/24") != nil })

	for _, bad := range []string{"0.0.0.0", "2001:db8::1"} {
		c := srv.Config().Clone()
		c.BGP.VPCs[0].RouterID = netip.MustParseAddr(bad)
		err := srv.Apply(c)
		if err == nil || !strings.Contains(err.Error(), "bgp.vpcs[red].router_id: router id "+bad) {
			t.Errorf("router id %s: Apply = %v, want an error naming bgp.vpcs[red].router_id", bad, err)
		}
		if id := srv.Config().BGP.RouterIDOf("red"); id != netip.MustParseAddr("10.255.1.101") {
			t.Errorf("a refused router id changed red's to %v", id)
		}
	}
	time.Sleep(300 * time.Millisecond) // a few of the Link's rounds
	if id := remoteID(); id != "10.255.1.101" {
		t.Errorf("after the refused changes FRR sees %q, want 10.255.1.101", id)
	}
}
