package controller

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestGatewayDefaults(t *testing.T) {
	c := example(t)
	red, _ := c.VPC("red")
	if gip, gmac := red.Gateway(); gip != ip("10.1.0.1") || gmac != mustMAC("02:00:00:00:00:64") {
		t.Errorf("red gateway = %s %s, want 10.1.0.1 02:00:00:00:00:64", gip, gmac)
	}
	green, _ := c.VPC("green")
	if gip, gmac := green.Gateway(); gip != ip("10.3.0.254") || gmac != mustMAC("02:00:00:00:01:fe") {
		t.Errorf("green gateway = %s %s, want the configured 10.3.0.254 02:00:00:00:01:fe", gip, gmac)
	}
	if got := DefaultGatewayMAC(0xabcdef); got != mustMAC("02:00:00:ab:cd:ef") {
		t.Errorf("DefaultGatewayMAC(0xabcdef) = %s", got)
	}
}

func TestLookups(t *testing.T) {
	c := example(t)
	if e, ok := c.Endpoint("red-vm2"); !ok || e.Host != "h2" || e.IP != ip("10.1.0.11") {
		t.Errorf("Endpoint(red-vm2) = %+v, %v", e, ok)
	}
	if _, ok := c.Endpoint("nope"); ok {
		t.Error("Endpoint(nope) found")
	}
	if h, ok := c.Host("h3"); !ok || h.UnderlayIP != ip("192.168.0.3") {
		t.Errorf("Host(h3) = %+v, %v", h, ok)
	}
	if lb, ok := c.LoadBalancer("red-web"); !ok || lb.Port != 80 || lb.Backends[0].Weight != 1 || lb.Backends[1].Weight != 2 {
		t.Errorf("LoadBalancer(red-web) = %+v, %v (an omitted weight is 1)", lb, ok)
	}
	if _, ok := c.VPC("blue"); ok {
		t.Error("VPC(blue) found: blue is c2's")
	}
	if o, ok := c.Owner("blue"); !ok || o.Name != "c2" || o.Address != "127.0.0.1:7002" {
		t.Errorf("Owner(blue) = %+v, %v", o, ok)
	}
	if p, ok := c.Peering("red", "blue"); !ok || p.ExportPolicy != "all" || p.Preference != 100 {
		t.Errorf("Peering(red, blue) = %+v, %v", p, ok)
	}
	if got := c.PeeringsOf("green"); got != nil {
		t.Errorf("PeeringsOf(green) = %v", got)
	}
	if got, want := c.HostsWithEndpointsIn("red"), []string{"h1", "h2", "h3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("HostsWithEndpointsIn(red) = %v, want %v", got, want)
	}
	if got, want := c.HostsWithEndpointsIn("green"), []string{"h3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("HostsWithEndpointsIn(green) = %v, want %v", got, want)
	}
	if got, want := c.VPCsOfHost("h3"), []string{"green", "red"}; !reflect.DeepEqual(got, want) {
		t.Errorf("VPCsOfHost(h3) = %v, want %v", got, want)
	}
	var ids []string
	for _, e := range c.EndpointsOnHost("h3") {
		ids = append(ids, e.ID)
	}
	if want := []string{"green-vm1", "red-router"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("EndpointsOnHost(h3) = %v, want %v", ids, want)
	}
}

func TestExportedPrefixes(t *testing.T) {
	c := example(t)
	red := vpcOf(c, "red")
	// 100.64.0.0/24 stands for a privately used public range.
	red.Subnets = append(red.Subnets, pfx("10.11.0.0/16"), pfx("100.64.0.0/24"))
	c.ExportPolicies = append(c.ExportPolicies,
		ExportPolicy{Name: "web", Prefixes: []netip.Prefix{pfx("10.1.4.0/24"), pfx("192.168.0.0/16")}},
		ExportPolicy{Name: "wide", Prefixes: []netip.Prefix{pfx("10.0.0.0/8"), pfx("10.1.4.0/24")}},
		ExportPolicy{Name: "private", PrivateOnly: true},
		ExportPolicy{Name: "private-web", PrivateOnly: true, Prefixes: []netip.Prefix{pfx("10.1.4.0/24"), pfx("100.64.0.0/16")}},
	)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		vpc, policy string
		want        []netip.Prefix
	}{
		{"red", "", []netip.Prefix{pfx("10.1.0.0/16"), pfx("10.11.0.0/16"), pfx("100.64.0.0/24")}},
		{"red", "all", []netip.Prefix{pfx("10.1.0.0/16"), pfx("10.11.0.0/16"), pfx("100.64.0.0/24")}},
		{"red", "web", []netip.Prefix{pfx("10.1.4.0/24")}},
		{"red", "wide", []netip.Prefix{pfx("10.1.0.0/16"), pfx("10.11.0.0/16")}},
		{"red", "private", []netip.Prefix{pfx("10.1.0.0/16"), pfx("10.11.0.0/16")}},
		{"red", "private-web", []netip.Prefix{pfx("10.1.4.0/24")}},
		{"green", "web", nil},
		{"red", "nope", nil},
		{"blue", "all", nil},
	} {
		if got := c.ExportedPrefixes(tc.vpc, tc.policy); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ExportedPrefixes(%s, %q) = %v, want %v", tc.vpc, tc.policy, got, tc.want)
		}
	}
	for _, tc := range []struct {
		vpc, policy, ip string
		want            bool
	}{
		{"red", "web", "10.1.4.5", true},
		{"red", "web", "10.1.5.5", false},
		{"red", "all", "100.64.0.9", true},
		{"red", "private", "100.64.0.9", false},
		{"red", "", "10.11.3.3", true},
		{"red", "all", "10.3.0.10", false},
	} {
		if got := c.Exports(tc.vpc, tc.policy, ip(tc.ip)); got != tc.want {
			t.Errorf("Exports(%s, %q, %s) = %v, want %v", tc.vpc, tc.policy, tc.ip, got, tc.want)
		}
	}
	if c.ExportedPrefixes("red", "all")[0] != pfx("10.1.0.0/16") || red.Subnets[0] != pfx("10.1.0.0/16") {
		t.Error("ExportedPrefixes changed the VPC's subnets")
	}
}

func TestExportsProtocol(t *testing.T) {
	c := example(t)
	c.ExportPolicies = append(c.ExportPolicies, ExportPolicy{Name: "tcp", Protocols: []string{"tcp", "icmp"}})
	for _, tc := range []struct {
		policy string
		proto  uint8
		want   bool
	}{
		{"", 17, true}, {"all", 17, true}, {"tcp", 6, true}, {"tcp", 1, true}, {"tcp", 17, false}, {"nope", 6, false},
	} {
		if got := c.ExportsProtocol(tc.policy, tc.proto); got != tc.want {
			t.Errorf("ExportsProtocol(%q, %d) = %v, want %v", tc.policy, tc.proto, got, tc.want)
		}
	}
}

// TestPublishedServicesMultiplex: three VPCs peered with red under one
// policy share one service; a second policy adds one.
func TestPublishedServicesMultiplex(t *testing.T) {
	c := example(t)
	c.Directory[1].VPCs = append(c.Directory[1].VPCs, "blue2", "blue3")
	c.ExportPolicies = append(c.ExportPolicies, ExportPolicy{Name: "web", Protocols: []string{"tcp"}})
	c.Peerings = append(c.Peerings,
		Peering{VPC: "red", PeerVPC: "blue2", ExportPolicy: "all"},
		Peering{VPC: "red", PeerVPC: "blue3", ExportPolicy: "all"},
		Peering{VPC: "green", PeerVPC: "blue", ExportPolicy: "web"},
		Peering{VPC: "green", PeerVPC: "blue2", ExportPolicy: "web"},
	)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := []PublishedService{{"green", ""}, {"green", "web"}, {"red", ""}, {"red", "all"}}
	if got := c.PublishedServices(); !reflect.DeepEqual(got, want) {
		t.Errorf("PublishedServices() = %v, want %v", got, want)
	}
}

func TestAuthorized(t *testing.T) {
	c := example(t)
	c.Directory[1].VPCs = append(c.Directory[1].VPCs, "blue2")
	c.ExportPolicies = append(c.ExportPolicies, ExportPolicy{Name: "web"})
	c.Peerings = append(c.Peerings, Peering{VPC: "red", PeerVPC: "blue2", ExportPolicy: "web"})
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		hostVPCs []string
		vpc      string
		policy   string
		want     bool
		reason   string
	}{
		{"own VPC, endpoint in it", c.VPCsOfHost("h3"), "green", "", true, ""},
		{"own VPC, no endpoint in it", c.VPCsOfHost("h1"), "green", "", false, "the host has no endpoint in VPC green"},
		{"peer VPC under its policy", []string{"blue"}, "red", "all", true, ""},
		{"peer VPC under another peer's policy", []string{"blue"}, "red", "web", false, `VPC red exports nothing under policy "web" to [blue]`},
		{"second peer under its policy", []string{"blue2"}, "red", "web", true, ""},
		{"peer VPC asks for the own view", []string{"blue"}, "red", "", false, "the host has no endpoint in VPC red"},
		{"VPC not peered", []string{"blue"}, "green", "all", false, `VPC green exports nothing under policy "all" to [blue]`},
		{"no claim", nil, "red", "all", false, "the host names no VPC peered with red"},
		{"VPC not owned here", []string{"red"}, "blue", "all", false, `VPC "blue" is not owned by controller c1`},
	} {
		ok, reason := Authorized(tc.hostVPCs, tc.vpc, tc.policy, c)
		if ok != tc.want || reason != tc.reason {
			t.Errorf("%s: Authorized(%v, %s, %q) = %v %q, want %v %q", tc.name, tc.hostVPCs, tc.vpc, tc.policy, ok, reason, tc.want, tc.reason)
		}
	}
}
