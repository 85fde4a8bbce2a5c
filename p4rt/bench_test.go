package p4rt

import (
	"fmt"
	"net/netip"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
)

// BenchmarkEncodeTableEntry builds one vnet_destination encap entry of the
// real pipeline by name: the cost the OHC pays per entry it compiles.
func BenchmarkEncodeTableEntry(b *testing.B) {
	s := pipelineSchema(b)
	dst := netip.MustParseAddr("10.1.0.0")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		a := Call("encap_to_host", P("dst_vni", Uint(0x1234)), P("host_ip", Addr("192.168.0.2")), P("dmac", HW("02:00:00:00:00:02")))
		_, err := s.TableEntry(Entry{
			Table:  "vnet_destination",
			Match:  []Match{Exact("vni", Uint(0x1234)), Exact("dst_ip", IP(dst))},
			Action: &a,
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReconcileDiff diffs n entries read back from a switch against n
// desired ones where 1% changed: the work of a reconcile after a restart.
func BenchmarkReconcileDiff(b *testing.B) {
	s := pipelineSchema(b)
	for _, n := range []int{10_000, 100_000} {
		current := make([]*p4v1.Entity, n)
		desired := make([]*p4v1.Entity, n)
		for i := range n {
			ip := IP(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
			host := "192.168.0.2"
			if i%100 == 0 {
				host = "192.168.0.3"
			}
			for j, h := range []string{"192.168.0.2", host} {
				a := Call("encap_to_host", P("dst_vni", Uint(7)), P("host_ip", Addr(h)), P("dmac", HW("02:00:00:00:00:02")))
				te, err := s.TableEntry(Entry{Table: "vnet_destination", Match: []Match{Exact("vni", Uint(7)), Exact("dst_ip", ip)}, Action: &a})
				if err != nil {
					b.Fatal(err)
				}
				e, _ := Entity(te)
				if j == 0 {
					current[i] = e
				} else {
					desired[i] = e
				}
			}
		}
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p := Diff(current, desired)
				if len(p.Modifies) != n/100 {
					b.Fatalf("%d modifies; want %d", len(p.Modifies), n/100)
				}
			}
		})
	}
}
