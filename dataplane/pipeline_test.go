package dataplane

import (
	"encoding/binary"
	"net/netip"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

func TestCRC16IsBMv2s(t *testing.T) {
	// The check value of CRC-16/ARC, BMv2's crc16.
	if got := crc16([]byte("123456789")); got != 0xbb3d {
		t.Errorf("crc16(123456789) = %#04x; want 0xbb3d", got)
	}
	if got := crc16(nil); got != 0 {
		t.Errorf("crc16() = %#04x; want 0", got)
	}
}

func TestCsum16(t *testing.T) {
	// RFC 1071's example header, checksum field zeroed: 0xb861.
	hdr := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if got := csum16(hdr); got != 0xb861 {
		t.Errorf("csum16 = %#04x; want 0xb861", got)
	}
}

// pipelineSwitch is a server with vpc_peering committed and a pipeline on
// its store, programmed by updates built through the schema.
type pipelineSwitch struct {
	srv  *Server
	pipe *Pipeline
	s    *p4rt.Schema
	t    testing.TB
}

func newPipelineSwitch(t testing.TB) *pipelineSwitch {
	t.Helper()
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Options{P4Info: info})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Commit(&p4v1.ForwardingPipelineConfig{P4Info: info}); err != nil {
		t.Fatal(err)
	}
	pipe, err := NewPipeline(srv.Store())
	if err != nil {
		t.Fatal(err)
	}
	s, _ := p4rt.NewSchema(info)
	return &pipelineSwitch{srv: srv, pipe: pipe, s: s, t: t}
}

func (ps *pipelineSwitch) write(typ p4v1.Update_Type, msg any, err error) {
	ps.t.Helper()
	if err != nil {
		ps.t.Fatal(err)
	}
	u, err := p4rt.Update(typ, msg)
	if err != nil {
		ps.t.Fatal(err)
	}
	if _, err := ps.srv.Write(nil, &p4v1.WriteRequest{DeviceId: 1, Updates: []*p4v1.Update{u}}); err != nil {
		ps.t.Fatal(err)
	}
}

func (ps *pipelineSwitch) entry(table string, a p4rt.ActionCall, m ...p4rt.Match) {
	ps.t.Helper()
	te, err := ps.s.TableEntry(p4rt.Entry{Table: table, Match: m, Action: &a})
	ps.write(p4v1.Update_INSERT, te, err)
}

// program sets up host 192.168.0.1 with a red VM on port 1, a peer
// destination on host 192.168.0.2, a tunnel termination for red and a VM
// delivery, the entries of the encap and decap benchmarks.
func (ps *pipelineSwitch) program() {
	U, IP, MAC := func(v uint64) p4rt.Uint { return p4rt.Uint(v) }, p4rt.Addr, p4rt.HW
	def, err := ps.s.DefaultEntry("local_host", p4rt.Call("set_local_host", p4rt.P("host_ip", IP("192.168.0.1")), p4rt.P("host_mac", MAC("02:00:00:00:00:01"))))
	ps.write(p4v1.Update_MODIFY, def, err)
	ps.entry("port_vnet", p4rt.Call("set_vnet", p4rt.P("vni", U(0x100)), p4rt.P("vm_mac", MAC("02:aa:00:00:00:01"))), p4rt.Exact("ingress_port", U(1)))
	ps.entry("vm_source_guard", p4rt.Call("permit"), p4rt.Exact("vni", U(0x100)), p4rt.Exact("ingress_port", U(1)),
		p4rt.Exact("src_ip", IP("10.1.0.1")), p4rt.Exact("src_mac", MAC("02:aa:00:00:00:01")))
	ps.entry("vnet_destination", p4rt.Call("encap_to_host", p4rt.P("dst_vni", U(0x200)), p4rt.P("host_ip", IP("192.168.0.2")), p4rt.P("dmac", MAC("02:bb:00:00:00:05"))),
		p4rt.Exact("vni", U(0x100)), p4rt.Exact("dst_ip", IP("10.2.0.5")))
	ps.entry("underlay_nexthop", p4rt.Call("set_underlay", p4rt.P("port", U(3)), p4rt.P("smac", MAC("02:00:00:00:00:01")), p4rt.P("dmac", MAC("02:00:00:00:ff:ff"))),
		p4rt.Prefix("dst_ip", netip.MustParsePrefix("192.168.0.0/16")))
	ps.entry("tunnel_term", p4rt.Call("decap"), p4rt.Exact("dst_ip", IP("192.168.0.1")), p4rt.Exact("vni", U(0x100)))
	ps.entry("vnet_source_check", p4rt.Call("permit"), p4rt.Exact("vni", U(0x100)), p4rt.Prefix("src_ip", netip.MustParsePrefix("10.2.0.0/16")))
	ps.entry("vnet_destination", p4rt.Call("to_local_vm", p4rt.P("port", U(1)), p4rt.P("dmac", MAC("02:aa:00:00:00:01"))),
		p4rt.Exact("vni", U(0x100)), p4rt.Exact("dst_ip", IP("10.1.0.1")))
}

// vmFrame is a 64-byte UDP frame from the red VM to the blue one.
func vmFrame() []byte {
	f := make([]byte, 64)
	copy(f, []byte{0x02, 0, 0, 0, 0, 1, 0x02, 0xaa, 0, 0, 0, 1, 0x08, 0x00})
	ip := f[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], 50)
	copy(ip[12:], []byte{10, 1, 0, 1, 10, 2, 0, 5})
	binary.BigEndian.PutUint16(f[34:], 4000)
	binary.BigEndian.PutUint16(f[36:], 53)
	binary.BigEndian.PutUint16(f[38:], 30)
	return f
}

// tunnelFrame is what host 192.168.0.2 sends for blue's VM to red's.
func tunnelFrame() []byte {
	inner := vmFrame()
	copy(inner[26:34], []byte{10, 2, 0, 5, 10, 1, 0, 1})
	f := make([]byte, 50, 50+len(inner))
	copy(f, []byte{0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0xff, 0xff, 0x08, 0x00})
	ip := f[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(36+len(inner)))
	copy(ip[12:], []byte{192, 168, 0, 2, 192, 168, 0, 1})
	binary.BigEndian.PutUint16(f[34:], 50000)
	binary.BigEndian.PutUint16(f[36:], 4789)
	binary.BigEndian.PutUint16(f[38:], uint16(16+len(inner)))
	f[42], f[46], f[47], f[48] = 0x08, 0, 0x01, 0x00
	return append(f, inner...)
}

func TestPipelineEncapDecapNoAlloc(t *testing.T) {
	ps := newPipelineSwitch(t)
	ps.program()
	out := make([]byte, 2048)
	cases := []struct {
		name       string
		port       uint16
		pkt        []byte
		wantPort   uint16
		wantLength int
	}{
		{"encap", 1, vmFrame(), 3, 64 + 50},
		{"decap", 3, tunnelFrame(), 1, 64},
	}
	for _, tc := range cases {
		egress, n, ok := ps.pipe.Process(tc.port, tc.pkt, out)
		if !ok || egress != tc.wantPort || n != tc.wantLength {
			t.Fatalf("%s: Process = port %d, %d bytes, ok %v; want port %d, %d bytes", tc.name, egress, n, ok, tc.wantPort, tc.wantLength)
		}
		allocs := testing.AllocsPerRun(1000, func() { ps.pipe.Process(tc.port, tc.pkt, out) })
		if allocs != 0 {
			t.Errorf("%s: %v allocations per packet; want 0", tc.name, allocs)
		}
	}
}

func benchmarkPipeline(b *testing.B, port uint16, pkt []byte) {
	ps := newPipelineSwitch(b)
	ps.program()
	out := make([]byte, 2048)
	if _, _, ok := ps.pipe.Process(port, pkt, out); !ok {
		b.Fatal("packet dropped")
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		ps.pipe.Process(port, pkt, out)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

// BenchmarkPipelineEncap is the peered-VPC path: VM frame in, VXLAN out.
func BenchmarkPipelineEncap(b *testing.B) { benchmarkPipeline(b, 1, vmFrame()) }

// BenchmarkPipelineDecap is the tunnel path: VXLAN in, VM frame out.
func BenchmarkPipelineDecap(b *testing.B) { benchmarkPipeline(b, 3, tunnelFrame()) }

// FuzzPipeline feeds arbitrary frames on every kind of port to a programmed
// pipeline: it must never panic, and what leaves must fit the out buffer.
func FuzzPipeline(f *testing.F) {
	f.Add(uint16(1), vmFrame())
	f.Add(uint16(3), tunnelFrame())
	f.Add(uint16(255), []byte{0x01, 0x00, 1, 2, 3})
	f.Add(uint16(1), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0xaa, 0, 0, 0, 1, 0x08, 0x06})
	ps := newPipelineSwitch(f)
	ps.program()
	f.Fuzz(func(t *testing.T, port uint16, pkt []byte) {
		out := make([]byte, len(pkt)+Overhead)
		_, n, ok := ps.pipe.Process(port&0x1ff, pkt, out)
		if ok && (n < 0 || n > len(out)) {
			t.Fatalf("wrote %d bytes into %d", n, len(out))
		}
	})
}
