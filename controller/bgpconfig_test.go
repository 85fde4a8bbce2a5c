package controller

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/p4mesh/p4mesh/identity"
)

// withBGP is the example with red-router an interconnect attachment and a
// bgp section with one neighbor behind it.
func withBGP(t testing.TB) *Config {
	c := example(t)
	e := endpointOf(c, "red-router")
	e.Kind, e.RouterMAC = KindInterconnect, mustMAC("02:fe:00:00:00:09")
	c.BGP = &BGP{
		LocalAS: 64512, RouterID: netip.MustParseAddr("10.255.0.1"), ListenPort: 10179,
		VPCs: []BGPVPC{{VPC: "red", LocalAS: 64513}},
		Neighbors: []BGPNeighbor{{
			VPC: "red", Address: netip.MustParseAddr("10.1.255.2"), Attachment: "red-router", PeerAS: 65001,
			HoldTime: 9, Keepalive: 3, Password: "s3cret", MaxPrefixes: 1000,
			Import:          []BGPPrefixFilter{{Prefix: pfx("10.0.0.0/8"), LE: 24}},
			GracefulRestart: true, Port: 11179,
		}},
	}
	return c
}

func TestBGPConfigRoundTrip(t *testing.T) {
	c := withBGP(t)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	y, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(y), "\nbgp:\n  local_as: 64512\n") {
		t.Errorf("YAML has no bgp section:\n%s", y)
	}
	back, err := ParseConfig(y)
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	if !back.Equal(c) {
		t.Errorf("YAML round trip differs: %s", DiffConfigs(c, back, "before", "after"))
	}
	if got := c.BGP.LocalASOf(c.BGP.Neighbors[0]); got != 64513 {
		t.Errorf("local AS of red's neighbor = %d, want the VPC's 64513", got)
	}

	// The item store keeps it across a restart, one key per item.
	dir := t.TempDir()
	items, b := openItems(t, dir)
	if _, err := items.Startup(c, false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	again, b2 := openItems(t, dir)
	defer b2.Close()
	if got := again.Current(); !got.Equal(c) {
		t.Errorf("after a restart: %s", DiffConfigs(c, got, "before", "after"))
	}
	if _, ok := again.seq["bgp-neighbor/red/10.1.255.2"]; !ok {
		t.Errorf("no item for the neighbor: %v", again.seq)
	}
}

func TestBGPConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"no AS", func(c *Config) { c.BGP.LocalAS = 0 }, "bgp.local_as: local AS is required"},
		{"no router id", func(c *Config) { c.BGP.RouterID = netip.Addr{} }, "bgp.router_id: router id is required"},
		{"per-VPC router id", func(c *Config) { c.BGP.VPCs[0].RouterID = netip.MustParseAddr("10.9.9.9") },
			"bgp.vpcs[red].router_id: router id 10.9.9.9 differs from the speaker's 10.255.0.1: one GoBGP speaker sends one BGP identifier"},
		{"VM attachment", func(c *Config) { c.BGP.Neighbors[0].Attachment = "red-vm1" },
			"bgp.neighbors[red/10.1.255.2].attachment: endpoint red-vm1 is of kind vm; a BGP neighbor needs a vpn or interconnect endpoint"},
		{"unknown attachment", func(c *Config) { c.BGP.Neighbors[0].Attachment = "nope" },
			`bgp.neighbors[red/10.1.255.2].attachment: endpoint "nope" is not defined`},
		{"other VPC", func(c *Config) { c.BGP.Neighbors[0].VPC = "green" },
			"bgp.neighbors[green/10.1.255.2].attachment: endpoint red-router is in VPC red, not green"},
		{"unknown VPC", func(c *Config) { c.BGP.Neighbors[0].VPC = "blue" }, `bgp.neighbors[blue/10.1.255.2].vpc: VPC "blue" is owned by c2`},
		{"same address", func(c *Config) {
			n := c.BGP.Neighbors[0]
			n.VPC = "green"
			c.BGP.Neighbors = append(c.BGP.Neighbors, n)
		}, "bgp.neighbors[green/10.1.255.2].address: 10.1.255.2 is also the address of neighbor red/10.1.255.2"},
		{"peer AS", func(c *Config) { c.BGP.Neighbors[0].PeerAS = 0 }, "bgp.neighbors[red/10.1.255.2].peer_as: peer AS is required"},
		{"keepalive", func(c *Config) { c.BGP.Neighbors[0].Keepalive = 9 }, "keepalive 9s must be shorter than the hold time 9s"},
		{"filter", func(c *Config) { c.BGP.Neighbors[0].Import[0].LE = 4 }, "bgp.neighbors[red/10.1.255.2].import[0]: 10.0.0.0/8 ge 0 le 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := withBGP(t)
			tc.edit(c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

// Deleting or changing the endpoint a neighbor names goes through the whole
// path, and is refused as Apply refuses it.
func TestBGPAttachmentChangeRefused(t *testing.T) {
	srv, err := NewServer(ServerOptions{Store: NoPersistence{Start: example(t)}, Auth: identity.Auth{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	c := withBGP(t)
	if err := srv.Apply(c); err != nil {
		t.Fatal(err)
	}
	ch := &Change{DeleteEndpoints: []string{"red-router"}}
	err = srv.ApplyChange(ch)
	if err == nil || !strings.Contains(err.Error(), `endpoint "red-router" is not defined`) {
		t.Errorf("deleting a neighbor's attachment: %v", err)
	}
	if werr := ch.ApplyTo(c).Validate(); werr == nil {
		t.Error("Apply of the same change validates")
	}
	e := *endpointOf(c, "red-router")
	e.Kind, e.RouterMAC = KindVM, MAC{}
	if err := srv.ApplyChange(&Change{Endpoints: []Endpoint{e}}); err == nil || !strings.Contains(err.Error(), "is of kind vm") {
		t.Errorf("turning a neighbor's attachment into a VM: %v", err)
	}
	if !srv.Config().Equal(c) {
		t.Error("a refused change changed the configuration")
	}
}
