package controller

import (
	"math/rand/v2"
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
	if _, ok := again.seq.get("bgp-neighbor/red/10.1.255.2"); !ok {
		t.Errorf("no item for the neighbor: %v", again.seq.rest)
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
		{"per-VPC router id 0.0.0.0", func(c *Config) { c.BGP.VPCs[0].RouterID = netip.IPv4Unspecified() },
			"bgp.vpcs[red].router_id: router id 0.0.0.0 is not a valid BGP identifier"},
		{"per-VPC router id IPv6", func(c *Config) { c.BGP.VPCs[0].RouterID = netip.MustParseAddr("2001:db8::1") },
			"bgp.vpcs[red].router_id: router id 2001:db8::1 is not an IPv4 address"},
		{"speaker's router id 0.0.0.0", func(c *Config) { c.BGP.RouterID = netip.IPv4Unspecified() },
			"bgp.router_id: router id 0.0.0.0 is not a valid BGP identifier"},
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

// With a bgp section, random changes (the incremental test's, and changes
// of the attachment a neighbor names) are accepted or refused by
// ApplyChange exactly as by Apply of the configuration they make, and
// leave the same configuration; only those that touch the attachment go
// the whole way.
func TestApplyChangeMatchesWholeApplyWithBGP(t *testing.T) {
	steps := 300
	if testing.Short() {
		steps = 80
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	base := incrBase()
	att := Endpoint{ID: "att1", VPC: "red", Kind: KindVPN, IP: netip.MustParseAddr("10.1.1.250"), MAC: MAC{2, 1, 0, 0, 0xff, 1},
		Host: "h0", Port: 30, RouterMAC: MAC{2, 0xfe, 0, 0, 0, 9}}
	base.Endpoints = append(base.Endpoints, att)
	base.BGP = &BGP{LocalAS: 64512, RouterID: netip.MustParseAddr("10.255.0.1"), Neighbors: []BGPNeighbor{{
		VPC: "red", Address: netip.MustParseAddr("192.0.2.1"), Attachment: "att1", PeerAS: 65001}}}
	store, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Apply(base); err != nil {
		t.Fatal(err)
	}
	inc := newIncrServer(t, store)
	whole := newIncrServer(t, NoPersistence{Start: base.Clone()})
	g := &changer{r: rand.New(rand.NewPCG(seed, 2)), cfg: whole.Config}
	touched, refusedTouched := 0, 0
	for step := range steps {
		ch := g.change()
		if g.chance(0.3) {
			a := att
			switch g.pick(4) {
			case 0:
				ch.DeleteEndpoints = append(ch.DeleteEndpoints, "att1")
			case 1:
				a.Kind, a.RouterMAC = KindVM, MAC{}
			case 2:
				a.VPC, a.IP = "green", netip.MustParseAddr("10.3.0.250")
			case 3:
				a.Port = uint16(30 + g.pick(3)) // still valid
			}
			if len(ch.DeleteEndpoints) == 0 || ch.DeleteEndpoints[len(ch.DeleteEndpoints)-1] != "att1" {
				ch.Endpoints = append(ch.Endpoints, a)
			}
		}
		bgpChange := ch.touchesBGP(inc.Config())
		gen := inc.gen
		errInc := inc.ApplyChange(ch)
		errWhole := whole.Apply(ch.ApplyTo(whole.Config()))
		if errText(errInc) != errText(errWhole) {
			t.Fatalf("step %d: %s\nApplyChange: %v\nApply:       %v", step, describeChange(ch), errInc, errWhole)
		}
		if !inc.Config().Equal(whole.Config()) {
			t.Fatalf("step %d: %s\nconfigurations differ:\n%s", step, describeChange(ch), configDiff(t, whole.Config(), inc.Config()))
		}
		if !store.Current().Equal(whole.Config()) {
			t.Fatalf("step %d: the store persisted another configuration", step)
		}
		if ch.incremental() && !bgpChange && inc.gen != gen {
			t.Fatalf("step %d: %s: a change that does not touch the attachment was applied whole", step, describeChange(ch))
		}
		if bgpChange {
			touched++
			if errInc != nil {
				refusedTouched++
			}
		}
	}
	t.Logf("%d steps, %d touched the neighbor's attachment (%d refused)", steps, touched, refusedTouched)
	if touched == 0 || refusedTouched == 0 || refusedTouched == touched {
		t.Errorf("the attachment was touched %d times, refused %d: the test does not exercise both outcomes", touched, refusedTouched)
	}
}
