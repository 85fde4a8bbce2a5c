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
