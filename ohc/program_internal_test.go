package ohc

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

// TestChangedDiffsLikeWholeSets: diffing only what changed between two
// compiles of one Compiler (as the programmer does) plans exactly the
// writes a diff of the whole sets plans.
func TestChangedDiffsLikeWholeSets(t *testing.T) {
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	s, err := p4rt.NewSchema(info)
	if err != nil {
		t.Fatal(err)
	}
	mac := func(i byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, i} }
	view := func(remotes []byte, hostOf func(byte) byte, macOf func(byte) byte) *View {
		v := &View{
			Host:   Host{ID: "a", IP: netip.MustParseAddr("192.168.0.1"), MAC: mac(1)},
			VPCs:   map[string]VPC{"red": {Name: "red", VNI: 100, Subnets: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}},
			Local:  []LocalEndpoint{{ID: "vm", VPC: "red", IP: netip.MustParseAddr("10.1.0.2"), MAC: mac(2), Port: 1}},
			Remote: map[string][]RemoteEndpoint{},
			LBs: []LoadBalancer{{Name: "web", VPC: "red", VIP: netip.MustParseAddr("10.1.0.100"), Protocol: 6, Port: 80,
				Backends: []Backend{{IP: netip.MustParseAddr("10.1.0.2"), MAC: mac(2), HostIP: netip.MustParseAddr("192.168.0.1")}}}},
		}
		for _, r := range remotes {
			v.Remote["red"] = append(v.Remote["red"], RemoteEndpoint{IP: netip.AddrFrom4([4]byte{10, 1, 1, r}),
				MAC: mac(macOf(r)), HostIP: netip.AddrFrom4([4]byte{192, 168, 0, hostOf(r)})})
		}
		return v
	}
	same := func(r byte) byte { return r }
	views := []*View{
		view([]byte{10, 11, 12, 13}, func(byte) byte { return 2 }, same),
		view([]byte{10, 11, 12, 13}, func(byte) byte { return 2 }, same),
		view([]byte{10, 11, 12, 13, 14}, func(byte) byte { return 2 }, same),
		view([]byte{10, 12, 13, 14}, func(r byte) byte { return r % 3 }, same),
		view([]byte{10, 12, 13, 14}, func(r byte) byte { return r % 3 }, func(r byte) byte { return r + 1 }),
		view(nil, same, same),
		view([]byte{20, 21}, same, same),
	}
	c := NewCompiler(s)
	var known []*p4v1.Entity
	for i, v := range views {
		desired, _, err := c.Compile(v)
		if err != nil {
			t.Fatal(err)
		}
		gone, came := changed(known, desired)
		whole, part := p4rt.Diff(known, desired), p4rt.Diff(gone, came)
		for _, l := range [][2][]*p4v1.Entity{{whole.Inserts, part.Inserts}, {whole.Modifies, part.Modifies}, {whole.Deletes, part.Deletes}} {
			if !slices.Equal(l[0], l[1]) {
				t.Fatalf("view %d: whole-set plan %+v, changed-set plan %+v", i, whole, part)
			}
		}
		known = desired
	}
}
