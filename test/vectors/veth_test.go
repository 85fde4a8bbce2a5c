//go:build linux

package vectors

import (
	"context"
	"fmt"
	"testing"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/dataplane/afpacket"
	"github.com/p4mesh/p4mesh/dataplane/xsk"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/test/topo"
)

// TestVectorsVeth plays every vector against p4mesh-switch with its ports
// bound by AF_PACKET to veth pairs: real frames through the kernel. The
// switch's ends are in one namespace, the runner's in another. It runs
// with each kind of switch port: a socket read frame by frame (afpacket),
// a PACKET_MMAP ring read a block at a time (mmap) and an AF_XDP socket
// (xdp), which sees the frames before the kernel's receive path: the
// tagged-frame vector checks that it gets the 802.1Q tag as sent.
func TestVectorsVeth(t *testing.T) {
	for _, m := range []struct {
		name string
		open func(ns, ifname string) (dataplane.Port, error)
	}{
		{"afpacket", func(ns, ifname string) (dataplane.Port, error) { return afpacket.OpenNetns(ns, ifname) }},
		{"mmap", func(ns, ifname string) (dataplane.Port, error) {
			return afpacket.OpenRingNetns(ns, ifname, afpacket.RingOptions{})
		}},
		{"xdp", func(ns, ifname string) (dataplane.Port, error) { return xsk.OpenNetns(ns, ifname, xsk.Options{}) }},
	} {
		t.Run(m.name, func(t *testing.T) { testVectorsVeth(t, m.open) })
	}
}

func testVectorsVeth(t *testing.T, open func(ns, ifname string) (dataplane.Port, error)) {
	topo.RequireRoot(t)
	swNS := topo.NewNetns(t, "vsw")
	hostNS := topo.NewNetns(t, "vhost")
	ports := map[uint16]dataplane.Port{}
	io := map[uint16]PortIO{}
	for _, n := range []uint16{1, 2, 3, 4} {
		a, b := topo.Veth(t, topo.End{NS: swNS, Name: fmt.Sprintf("p%d", n)}, topo.End{NS: hostNS, Name: fmt.Sprintf("h%d", n)}, topo.VethOptions{})
		sp, err := open(swNS.Name, a.Name)
		if err != nil {
			t.Fatal(err)
		}
		hp, err := afpacket.OpenNetns(hostNS.Name, b.Name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hp.Close() })
		ports[n], io[n] = sp, NewPortIO(hp)
	}
	c := startSwitch(t, ports)
	info, _ := p4.P4Info()
	target := &Target{Client: c, P4Info: info, Ports: io}
	for _, vc := range loadCases(t) {
		t.Run(vc.Name, func(t *testing.T) {
			if err := Run(context.Background(), target, vc); err != nil {
				t.Error(err)
			}
		})
	}
}
