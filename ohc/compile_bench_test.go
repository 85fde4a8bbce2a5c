package ohc_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/p4mesh/p4mesh/ohc"
)

// benchView is a host of the convergence benchmark: one VM in red, red
// with n endpoints on n hosts, peered with blue, which has n/5 endpoints.
func benchView(n int) *ohc.View {
	hostIP := netip.MustParseAddr("192.168.0.1")
	hm := net.HardwareAddr{2, 0xfe, 0, 0, 0, 1}
	v := &ohc.View{
		Host: ohc.Host{ID: "h0", IP: hostIP, MAC: hm,
			UnderlayRoutes: []ohc.UnderlayRoute{{Prefix: netip.MustParsePrefix("192.168.0.0/16"), Port: 1, SrcMAC: hm, DstMAC: net.HardwareAddr{2, 0xfd, 0, 0, 0, 0}}}},
		VPCs: map[string]ohc.VPC{
			"red": {Name: "red", VNI: 100, Subnets: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
		},
		Local:    []ohc.LocalEndpoint{{ID: "red-0", VPC: "red", IP: netip.MustParseAddr("10.1.0.10"), MAC: net.HardwareAddr{2, 1, 0, 0, 0, 0}, Port: 2}},
		Peerings: []ohc.Peering{{VPC: "red", PeerVPC: "blue", PeerVNI: 200, Active: true, PeerPrefixes: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}}},
		Remote:   map[string][]ohc.RemoteEndpoint{},
	}
	for i := range n {
		v.Remote["red"] = append(v.Remote["red"], ohc.RemoteEndpoint{IP: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i + 10)}),
			MAC: net.HardwareAddr{2, 1, 0, 0, byte(i >> 8), byte(i)}, HostIP: netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i + 1)}), VPC: "red"})
	}
	for i := range n / 5 {
		v.Remote["blue"] = append(v.Remote["blue"], ohc.RemoteEndpoint{IP: netip.AddrFrom4([4]byte{10, 2, 100, byte(i + 1)}),
			MAC: net.HardwareAddr{2, 3, 0, 0, 0, byte(i)}, HostIP: netip.AddrFrom4([4]byte{192, 168, 0, byte(i%n + 1)}), VPC: "blue"})
	}
	return v
}

// BenchmarkCompile: compiling a host's view of the convergence benchmark
// after one blue endpoint was added, from scratch (Compile) and reusing the
// previous view's entries (Compiler).
func BenchmarkCompile(b *testing.B) {
	s := schema(b)
	for _, n := range []int{10, 100, 1000} {
		v := benchView(n)
		b.Run(fmt.Sprintf("hosts=%d/scratch", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ohc.Compile(s, v); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("hosts=%d/reuse", n), func(b *testing.B) {
			c := ohc.NewCompiler(s)
			if _, _, err := c.Compile(v); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := c.Compile(v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompileRoutes: compiling benchView(1000) (1000 remote red
// endpoints) plus n routes of red, an on-prem feed through two attachments
// on other hosts, every third route over both (ECMP), from scratch and
// reusing the previous compile's entries. Its scale is the issue-10 goal:
// 100k routes programmed into a host switch.
func BenchmarkCompileRoutes(b *testing.B) {
	s := schema(b)
	for _, n := range []int{1_000, 10_000, 100_000} {
		v := benchView(1000)
		att := []netip.Addr{v.Remote["red"][10].IP, v.Remote["red"][20].IP}
		for i := range n {
			r := ohc.Route{VPC: "red", Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(16 + i>>16), byte(i >> 8), byte(i)}), 32).Masked(),
				NextHopIP: att[i%2]}
			if i%3 == 0 {
				r.NextHopIP, r.NextHopIPs = att[0], att
			}
			v.Routes = append(v.Routes, r)
		}
		b.Run(fmt.Sprintf("routes=%d/scratch", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ohc.Compile(s, v); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("routes=%d/reuse", n), func(b *testing.B) {
			c := ohc.NewCompiler(s)
			if _, _, err := c.Compile(v); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := c.Compile(v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
