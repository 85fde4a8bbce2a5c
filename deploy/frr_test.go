package deploy

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/p4mesh/p4mesh/controller"
)

// frrBase is the rest of a controller's configuration around
// deploy/frr/p4mesh-bgp.yaml: the controller owning VPC red with the
// attachment red-vpn the router sits behind, red peered with blue (whose
// subnet red's router may have) and with green (whose subnet frr.conf
// does not accept: the live test checks FRR drops it).
const frrBase = `controller: c1
directory:
  - {name: c1, address: 127.0.0.1:7001, vpcs: [red, blue, green]}
vpcs:
  - {name: red, vni: 100, subnets: [10.1.0.0/16]}
  - {name: blue, vni: 200, subnets: [10.2.0.0/16]}
  - {name: green, vni: 300, subnets: [10.3.0.0/16]}
hosts:
  - {id: h1, underlay_ip: 192.168.0.1, mac: "02:aa:00:00:00:01", uplink_port: 1}
endpoints:
  - {id: red-vpn, vpc: red, kind: vpn, ip: 10.1.255.1, mac: "02:01:00:00:ff:01",
     host: h1, port: 5, router_mac: "02:fe:01:00:00:01"}
export_policies:
  - name: all
peerings:
  - {vpc: red, peer_vpc: blue, export_policy: all}
  - {vpc: blue, peer_vpc: red, export_policy: all}
  - {vpc: red, peer_vpc: green, export_policy: all}
  - {vpc: green, peer_vpc: red, export_policy: all}
`

// frrFiles reads deploy/frr's two files.
func frrFiles(t *testing.T) (frrConf, bgpYAML string) {
	t.Helper()
	a, err := os.ReadFile(filepath.Join("frr", "frr.conf"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("frr", "p4mesh-bgp.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(a), string(b)
}

// loadFRRConfig parses the base plus the bgp snippet with the
// controller's loader and validates it as the controller does.
func loadFRRConfig(t *testing.T, bgpYAML string) *controller.Config {
	t.Helper()
	c, err := controller.ParseConfig([]byte(frrBase + bgpYAML))
	if err != nil {
		t.Fatalf("deploy/frr/p4mesh-bgp.yaml with a minimal configuration: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("deploy/frr/p4mesh-bgp.yaml does not validate: %v", err)
	}
	if c.BGP == nil || len(c.BGP.Neighbors) != 1 {
		t.Fatalf("want a bgp section with one neighbor, got %+v", c.BGP)
	}
	return c
}

// frrRouter is what frr.conf says, in the terms p4mesh's side uses.
type frrRouter struct {
	as                  uint32
	routerID            netip.Addr
	neighbor            netip.Addr
	remoteAS            uint32
	password            string
	keepalive, hold     int
	passive, gr, ebgpRP bool
	prefixLists         map[string][]frrPrefixRule
	networks            []netip.Prefix
	routeMapIn          string // the prefix list the inbound route-map matches
	routeMapOut         string
}

type frrPrefixRule struct {
	permit bool
	prefix netip.Prefix
	ge, le int
}

// matches is FRR's prefix-list rule semantics.
func (r frrPrefixRule) matches(p netip.Prefix) bool {
	if !r.prefix.Contains(p.Addr()) || p.Bits() < r.prefix.Bits() {
		return false
	}
	ge, le := r.ge, r.le
	if ge == 0 && le == 0 {
		return p.Bits() == r.prefix.Bits()
	}
	if ge == 0 {
		ge = r.prefix.Bits()
	}
	if le == 0 {
		le = 32
	}
	return p.Bits() >= ge && p.Bits() <= le
}

// permits is a prefix list's verdict: the first matching rule, else deny.
func (f *frrRouter) permits(list string, p netip.Prefix) bool {
	for _, r := range f.prefixLists[list] {
		if r.matches(p) {
			return r.permit
		}
	}
	return false
}

// parseFRR reads the subset of FRR's syntax frr.conf uses, and fails on
// any router bgp line it does not know, so the test cannot miss one.
func parseFRR(t *testing.T, conf string) *frrRouter {
	t.Helper()
	f := &frrRouter{prefixLists: map[string][]frrPrefixRule{}}
	routeMaps := map[string]string{} // route-map name → prefix list
	var curMap string
	inBGP := false
	for i, line := range strings.Split(conf, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "!") {
			continue
		}
		w := strings.Fields(line)
		bad := func(err error) { t.Fatalf("frr.conf:%d: %q: %v", i+1, line, err) }
		switch {
		case w[0] == "router" && w[1] == "bgp":
			inBGP = true
			f.as = atoi(t, w[2])
		case w[0] == "ip" && w[1] == "prefix-list":
			// ip prefix-list NAME seq N permit|deny PREFIX [ge N] [le N]
			r := frrPrefixRule{permit: w[5] == "permit"}
			var err error
			if r.prefix, err = netip.ParsePrefix(w[6]); err != nil {
				bad(err)
			}
			for j := 7; j+1 < len(w); j += 2 {
				switch w[j] {
				case "ge":
					r.ge = int(atoi(t, w[j+1]))
				case "le":
					r.le = int(atoi(t, w[j+1]))
				}
			}
			f.prefixLists[w[2]] = append(f.prefixLists[w[2]], r)
		case w[0] == "route-map":
			if w[2] != "permit" {
				bad(fmt.Errorf("only permit entries are understood here"))
			}
			curMap = w[1]
		case w[0] == "match" && w[1] == "ip" && w[2] == "address" && w[3] == "prefix-list":
			routeMaps[curMap] = w[4]
		case !inBGP:
		case w[0] == "bgp" && w[1] == "router-id":
			f.routerID = netip.MustParseAddr(w[2])
		case line == "bgp ebgp-requires-policy":
			f.ebgpRP = true
		case line == "bgp graceful-restart":
			f.gr = true
		case w[0] == "network":
			f.networks = append(f.networks, netip.MustParsePrefix(w[1]))
		case w[0] == "neighbor":
			a, err := netip.ParseAddr(w[1])
			if err != nil {
				bad(err)
			}
			if f.neighbor.IsValid() && f.neighbor != a {
				bad(fmt.Errorf("a second neighbor; the test knows one"))
			}
			f.neighbor = a
			switch w[2] {
			case "remote-as":
				f.remoteAS = atoi(t, w[3])
			case "password":
				f.password = w[3]
			case "timers":
				f.keepalive, f.hold = int(atoi(t, w[3])), int(atoi(t, w[4]))
			case "passive":
				f.passive = true
			case "route-map":
				if w[4] == "in" {
					f.routeMapIn = routeMaps[w[3]]
				} else {
					f.routeMapOut = routeMaps[w[3]]
				}
			case "description", "maximum-prefix":
			default:
				bad(fmt.Errorf("neighbor option the test does not check"))
			}
		case strings.HasPrefix(line, "no bgp network import-check"), strings.HasPrefix(line, "bgp graceful-restart "),
			strings.HasPrefix(line, "address-family"), line == "exit-address-family", line == "exit":
		default:
			bad(fmt.Errorf("a router bgp line the test does not check"))
		}
	}
	return f
}

func atoi(t *testing.T, s string) uint32 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}

// TestFRRExampleMatches: deploy/frr/p4mesh-bgp.yaml loads through the
// controller's parser and validation, and frr.conf is its other side:
// addresses, AS numbers, password, timers and graceful restart agree, the
// router accepts the connection (passive: it waits; never the other way
// round), and the route-maps accept the VPC's and its peer's subnets and
// announce only what p4mesh's import filter takes.
func TestFRRExampleMatches(t *testing.T) {
	conf, snippet := frrFiles(t)
	c := loadFRRConfig(t, snippet)
	n := c.BGP.Neighbors[0]
	f := parseFRR(t, conf)

	check := func(what string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: frr.conf has %v, p4mesh-bgp.yaml %v", what, got, want)
		}
	}
	check("router bgp / peer_as", f.as, n.PeerAS)
	check("neighbor remote-as / local AS", f.remoteAS, c.BGP.LocalASOf(n))
	check("neighbor address / listen_address (the speaker dials from it)", f.neighbor, c.BGP.ListenAddress)
	check("router-id / the neighbor's address", f.routerID, n.Address)
	check("password", f.password, n.Password)
	check("timers keepalive", f.keepalive, n.Keepalive)
	check("timers hold", f.hold, n.HoldTime)
	check("graceful restart", f.gr, n.GracefulRestart)
	if c.BGP.ListenPort > 0 {
		t.Errorf("p4mesh-bgp.yaml sets listen_port %d: the speaker never listens", c.BGP.ListenPort)
	}
	if !f.passive {
		t.Log("frr.conf is not passive: fine, it accepts the speaker's connection either way")
	}
	if !f.ebgpRP || f.routeMapIn == "" || f.routeMapOut == "" {
		t.Errorf("want explicit route-maps both ways with ebgp-requires-policy on: in %q, out %q, requires-policy %v", f.routeMapIn, f.routeMapOut, f.ebgpRP)
	}

	att, ok := c.Endpoint(n.Attachment)
	if !ok {
		t.Fatalf("attachment %s missing", n.Attachment)
	}
	red, _ := c.VPC(att.VPC)
	blue, _ := c.VPC("blue")
	green, _ := c.VPC("green")
	for _, p := range append(red.Subnets, blue.Subnets...) {
		if !f.permits(f.routeMapIn, p) {
			t.Errorf("frr.conf's inbound route-map drops %s, a subnet of red or of its peer blue", p)
		}
	}
	for _, p := range green.Subnets {
		if f.permits(f.routeMapIn, p) {
			t.Errorf("frr.conf's inbound route-map accepts %s (green): least privilege is red and blue only", p)
		}
	}
	if len(f.networks) == 0 {
		t.Error("frr.conf announces nothing")
	}
	for _, p := range f.networks {
		if !f.permits(f.routeMapOut, p) {
			t.Errorf("frr.conf announces %s but its outbound route-map drops it", p)
		}
		accepted := len(n.Import) == 0
		for _, im := range n.Import {
			ge, le := int(im.GE), int(im.LE)
			if ge == 0 {
				ge = im.Prefix.Bits()
			}
			if le == 0 {
				le = ge
			}
			accepted = accepted || (im.Prefix.Contains(p.Addr()) && p.Bits() >= ge && p.Bits() <= le)
		}
		if !accepted {
			t.Errorf("frr.conf announces %s, which p4mesh-bgp.yaml's import filter drops", p)
		}
	}
}
