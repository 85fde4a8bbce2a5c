package gnmi

import (
	"net/netip"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/controller"
)

// withBGP is red-blue with red-router an interconnect attachment and a
// bgp section using every field.
func withBGP(t *testing.T) *controller.Config {
	c := load(t, redBlue)
	for i := range c.Endpoints {
		if c.Endpoints[i].ID == "red-router" {
			c.Endpoints[i].Kind = controller.KindInterconnect
			c.Endpoints[i].RouterMAC, _ = controller.ParseMAC("02:fe:00:00:00:09")
		}
	}
	c.BGP = &controller.BGP{
		LocalAS: 64512, RouterID: netip.MustParseAddr("10.255.0.1"), ListenAddress: netip.MustParseAddr("127.0.0.1"), ListenPort: -1,
		VPCs: []controller.BGPVPC{{VPC: "red", LocalAS: 64513, RouterID: netip.MustParseAddr("10.255.0.1")}},
		Neighbors: []controller.BGPNeighbor{{
			VPC: "red", Address: netip.MustParseAddr("10.1.255.2"), Attachment: "red-router", PeerAS: 65001, LocalAS: 64514,
			HoldTime: 9, Keepalive: 3, Password: "s3cret", MaxPrefixes: 100, GracefulRestart: true, Port: 1179,
			Import: []controller.BGPPrefixFilter{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), LE: 24}, {Prefix: netip.MustParsePrefix("192.0.2.0/24")}},
		}},
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// The bgp section goes through the model and its JSON (p4meshctl get /,
// set) unchanged.
func TestBGPRoundTrip(t *testing.T) {
	c := withBGP(t)
	d := fromConfig(t, c)
	b, err := MarshalIETF(d)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := UnmarshalIETF(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(d2); err != nil {
		t.Fatal(err)
	}
	back, err := ToConfig(d2)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(c) {
		t.Errorf("round trip differs: %s", controller.DiffConfigs(c, back, "before", "after"))
	}
}

func TestBGPNeighborState(t *testing.T) {
	c := withBGP(t)
	d := fromConfig(t, c)
	since := time.Now().Add(-42 * time.Second)
	WithState(d, nil, controller.Stats{BGPNeighbors: []controller.BGPNeighborStatus{{
		VPC: "red", Address: netip.MustParseAddr("10.1.255.2"), Attachment: "red-router", State: "established",
		Since: since, Received: 5, Accepted: 4, LastError: "hold timer expired",
	}}})
	s := d.P4Mesh.Bgp.Neighbors.GetNeighbor("red", "10.1.255.2").GetState()
	if s.GetSessionState() != "established" || s.GetReceived() != 5 || s.GetAccepted() != 4 || s.GetLastError() != "hold timer expired" ||
		s.GetUptime() < 42 || s.GetEstablishedSince() != uint64(since.UnixNano()) || s.GetPeerAs() != 65001 || s.GetAttachment() != "red-router" {
		t.Errorf("neighbor state = %+v", s)
	}
	if g := d.P4Mesh.Bgp.GetState(); g.GetLocalAs() != 64512 || g.GetRouterId() != "10.255.0.1" {
		t.Errorf("speaker state = %+v", g)
	}
}
