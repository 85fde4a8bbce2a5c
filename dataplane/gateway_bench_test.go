package dataplane

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/p4rt"
)

// gatewaySwitch is a pipeline programmed as the OHC programs a gateway of
// blue's pool (VNI 0x200), host 192.168.1.1: tunnels with blue's VNI
// terminate here, red's export (10.1.0.0/16) is admitted, and n endpoints
// of blue (10.2.0.0/15 upwards) have a destination on one of 250 hosts.
// It returns their addresses.
func gatewaySwitch(tb testing.TB, n int) (*pipelineSwitch, [][4]byte) {
	ps := newPipelineSwitch(tb)
	U, IP, MAC := func(v uint64) p4rt.Uint { return p4rt.Uint(v) }, p4rt.Addr, p4rt.HW
	def, err := ps.s.DefaultEntry("local_host", p4rt.Call("set_local_host", p4rt.P("host_ip", IP("192.168.1.1")), p4rt.P("host_mac", MAC("02:00:00:00:01:01"))))
	ps.write(p4v1.Update_MODIFY, def, err)
	ps.entry("tunnel_term", p4rt.Call("decap"), p4rt.Exact("dst_ip", IP("192.168.1.1")), p4rt.Exact("vni", U(0x200)))
	ps.entry("vnet_source_check", p4rt.Call("permit"), p4rt.Exact("vni", U(0x200)), p4rt.Prefix("src_ip", netip.MustParsePrefix("10.1.0.0/16")))
	ps.entry("underlay_nexthop", p4rt.Call("set_underlay", p4rt.P("port", U(3)), p4rt.P("smac", MAC("02:00:00:00:01:01")), p4rt.P("dmac", MAC("02:00:00:00:ff:ff"))),
		p4rt.Prefix("dst_ip", netip.MustParsePrefix("192.168.0.0/16")))
	dsts := make([][4]byte, n)
	var w *p4v1.WriteRequest
	flush := func() {
		if w != nil && len(w.Updates) > 0 {
			if _, err := ps.srv.Write(nil, w); err != nil {
				tb.Fatal(err)
			}
		}
		w = &p4v1.WriteRequest{DeviceId: 1}
	}
	flush()
	for i := range n {
		binary.BigEndian.PutUint32(dsts[i][:], 10<<24|2<<16+uint32(i)+1)
		te, err := ps.s.TableEntry(p4rt.Entry{Table: "vnet_destination",
			Match: []p4rt.Match{p4rt.Exact("vni", U(0x200)), p4rt.Exact("dst_ip", p4rt.IP(netip.AddrFrom4(dsts[i])))},
			Action: &p4rt.ActionCall{Name: "encap_to_host", Params: []p4rt.Param{p4rt.P("dst_vni", U(0x200)),
				p4rt.P("host_ip", U(0xc0a80000|uint64(i%250+2))), p4rt.P("dmac", U(0x02bb00000000|uint64(i)))}}})
		if err != nil {
			tb.Fatal(err)
		}
		u, err := p4rt.Update(p4v1.Update_INSERT, te)
		if err != nil {
			tb.Fatal(err)
		}
		w.Updates = append(w.Updates, u)
		if len(w.Updates) == 1000 {
			flush()
		}
	}
	flush()
	if got := ps.pipe.vnetDestination.Len(); got != n {
		tb.Fatalf("vnet_destination holds %d entries, want %d", got, n)
	}
	return ps, dsts
}

// gatewayFrame is what a host of red (192.168.0.9) sends through the pool
// for red's VM 10.1.0.1 to blue's dst: VXLAN to the gateway with blue's
// VNI, the inner destination MAC zero (the gateway sets it).
func gatewayFrame(dst [4]byte, sport uint16) []byte {
	f := tunnelFrame()
	copy(f[26:34], []byte{192, 168, 0, 9, 192, 168, 1, 1})
	f[47], f[48] = 0x02, 0x00
	inner := f[50:]
	copy(inner[0:6], make([]byte, 6))
	copy(inner[26:34], []byte{10, 1, 0, 1, dst[0], dst[1], dst[2], dst[3]})
	inner[14+8] = 63
	binary.BigEndian.PutUint16(inner[34:], sport)
	return f
}

// TestGatewayPath: the frame the benchmark below times takes the gateway
// path: it leaves the uplink re-encapsulated from the gateway to the
// destination's host with blue's VNI, its MAC, and the TTL decremented.
func TestGatewayPath(t *testing.T) {
	ps, dsts := gatewaySwitch(t, 300)
	out := make([]byte, 2048)
	for _, i := range []int{0, 299} {
		port, n, ok := ps.pipe.Process(3, gatewayFrame(dsts[i], 4000), out)
		if !ok || port != 3 {
			t.Fatalf("destination %d: port %d, ok %v; want re-encapsulated out of port 3", i, port, ok)
		}
		o := out[:n]
		if src, dst := netip.AddrFrom4([4]byte(o[26:30])), netip.AddrFrom4([4]byte(o[30:34])); src != netip.MustParseAddr("192.168.1.1") ||
			dst != netip.AddrFrom4([4]byte{192, 168, 0, byte(i%250 + 2)}) {
			t.Errorf("destination %d: tunnel %v -> %v", i, src, dst)
		}
		if vni := uint32(o[46])<<16 | uint32(o[47])<<8 | uint32(o[48]); vni != 0x200 {
			t.Errorf("destination %d: VNI %#x, want 0x200", i, vni)
		}
		inner := o[50:]
		if m := uint64(binary.BigEndian.Uint16(inner[0:]))<<32 | uint64(binary.BigEndian.Uint32(inner[2:])); m != 0x02bb00000000|uint64(i) {
			t.Errorf("destination %d: inner MAC %012x", i, m)
		}
		if inner[14+8] != 62 {
			t.Errorf("destination %d: TTL %d, want 62", i, inner[14+8])
		}
	}
	if _, _, ok := ps.pipe.Process(3, gatewayFrame([4]byte{10, 2, 200, 1}, 4000), out); ok {
		t.Error("a destination the gateway does not have was forwarded")
	}
}

// BenchmarkGatewayForward is the gateway path of one core: a tunnelled
// 114-byte frame (a 64-byte tenant frame in VXLAN) decapsulated, admitted,
// looked up in vnet_destination among n destinations and re-encapsulated
// to the destination's host. 1024 flows to random destinations, so the
// lookups do not all hit one cache line. n stops at vnet_destination's
// size in vpc_peering.p4 (65536): a 100k-endpoint VPC does not fit one
// gateway's table.
func BenchmarkGatewayForward(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 65_536} {
		b.Run(fmt.Sprintf("destinations=%d", n), func(b *testing.B) {
			ps, dsts := gatewaySwitch(b, n)
			r := rand.New(rand.NewPCG(13, uint64(n)))
			frames := make([][]byte, 1024)
			for i := range frames {
				frames[i] = gatewayFrame(dsts[r.IntN(n)], uint16(4000+i))
			}
			out := make([]byte, 2048)
			if port, _, ok := ps.pipe.Process(3, frames[0], out); !ok || port != 3 {
				b.Fatalf("port %d, ok %v: not forwarded", port, ok)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(frames[0])))
			for i := 0; b.Loop(); i++ {
				ps.pipe.Process(3, frames[i&1023], out)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
		})
	}
}
