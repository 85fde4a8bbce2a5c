package ohc_test

import (
	"bytes"
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4rt"
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

// changeViews are two views of one host that differ by one remote
// endpoint: red (local, one VM here) with n remote endpoints on n/100
// hosts, peered with blue (n/10 endpoints, half of them exported), and
// one more red endpoint in the second view. Lists are sorted as the agent
// sorts them.
func changeViews(n int) (without, with *ohc.View, added ohc.RemoteKey) {
	hostIP := netip.MustParseAddr("192.168.0.1")
	hm := net.HardwareAddr{2, 0xfe, 0, 0, 0, 1}
	addr := func(base uint32, i int) netip.Addr {
		x := base + uint32(i)
		return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
	}
	remote := func(vpc string, base uint32, i int) ohc.RemoteEndpoint {
		h := i % max(n/100, 1)
		return ohc.RemoteEndpoint{IP: addr(base, i), MAC: net.HardwareAddr{2, 1, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)},
			HostIP: netip.AddrFrom4([4]byte{192, 169, byte(h >> 8), byte(h)}), VPC: vpc}
	}
	const red, blue = 10<<24 | 1<<16, 11<<24 | 1<<16
	without = &ohc.View{
		Host: ohc.Host{ID: "h0", IP: hostIP, MAC: hm,
			UnderlayRoutes: []ohc.UnderlayRoute{{Prefix: netip.MustParsePrefix("192.168.0.0/15"), Port: 1, SrcMAC: hm, DstMAC: net.HardwareAddr{2, 0xfd, 0, 0, 0, 0}}}},
		VPCs: map[string]ohc.VPC{
			"red": {Name: "red", VNI: 100, Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		},
		Local: []ohc.LocalEndpoint{{ID: "red-0", VPC: "red", IP: netip.MustParseAddr("10.0.0.10"), MAC: net.HardwareAddr{2, 1, 0, 0, 0, 0}, Port: 2}},
		Peerings: []ohc.Peering{{VPC: "red", PeerVPC: "blue", PeerVNI: 200, Active: true,
			PeerPrefixes: []netip.Prefix{netip.PrefixFrom(addr(blue, 0), 16).Masked()}}},
		Remote: map[string][]ohc.RemoteEndpoint{},
	}
	for i := range n {
		without.Remote["red"] = append(without.Remote["red"], remote("red", red, i))
	}
	for i := range n / 10 {
		// Every other one outside the exported /16.
		without.Remote["blue"] = append(without.Remote["blue"], remote("blue", blue, i*(1+i%2)<<8))
	}
	sortRemote(without.Remote["blue"])
	e := remote("red", red, n) // the new endpoint, last in address order
	with = &ohc.View{}
	*with = *without
	with.Remote = map[string][]ohc.RemoteEndpoint{"red": append(slices.Clip(without.Remote["red"]), e), "blue": without.Remote["blue"]}
	return without, with, ohc.RemoteKey{VPC: "red", IP: e.IP}
}

func sortRemote(es []ohc.RemoteEndpoint) {
	slices.SortFunc(es, func(a, b ohc.RemoteEndpoint) int {
		return cmp.Or(a.IP.Compare(b.IP), a.HostIP.Compare(b.HostIP), bytes.Compare(a.MAC, b.MAC))
	})
}

// BenchmarkCompileChange: what the OHC's compile costs per endpoint
// change at 10k, 100k and 1M remote endpoints: one red endpoint added,
// then removed, and so on. "whole" compiles the whole view each time,
// reusing the previous compile's entries (the programmer before the
// incremental compile: Compiler.Compile, plus the diff of the desired
// sets, here the Delta); "incremental" is CompileChange told the address.
// entities/op is what the compile hands the programmer to write (Gone
// plus Came); the programmer's reconcile writes the difference.
func BenchmarkCompileChange(b *testing.B) {
	s := schema(b)
	sizes := []int{10_000, 100_000, 1_000_000}
	for _, n := range sizes {
		without, with, k := changeViews(n)
		// The same endpoint, started on this host: a local endpoint and
		// its record, on this host, in the mesh.
		withLocal := &ohc.View{}
		*withLocal = *without
		le := ohc.LocalEndpoint{ID: "red-new", VPC: "red", IP: k.IP, MAC: net.HardwareAddr{2, 1, 0xff, 0, 0, 1}, Port: 3}
		withLocal.Local = append(slices.Clip(without.Local), le)
		withLocal.Remote = map[string][]ohc.RemoteEndpoint{"red": append(slices.Clip(without.Remote["red"]),
			ohc.RemoteEndpoint{IP: le.IP, MAC: le.MAC, HostIP: without.Host.IP, VPC: "red"}), "blue": without.Remote["blue"]}
		for _, c := range []struct {
			what  string
			with  *ohc.View
			local []ohc.RemoteKey
		}{{"remote", with, nil}, {"local", withLocal, []ohc.RemoteKey{k}}} {
			for _, mode := range []string{"whole", "incremental"} {
				b.Run(fmt.Sprintf("%s=%d/%s", c.what, n, mode), func(b *testing.B) {
					benchChange(b, s, without, c.with, ohc.ViewChange{Remote: []ohc.RemoteKey{k}, Local: c.local, Other: mode == "whole"}, mode)
				})
			}
		}
	}
}

// benchChange compiles with and without in turn, told ch.
func benchChange(b *testing.B, s *p4rt.Schema, without, with *ohc.View, ch ohc.ViewChange, mode string) {
	c := ohc.NewCompiler(s)
	if _, err := c.CompileChange(without, ohc.ViewChange{Other: true}); err != nil {
		b.Fatal(err)
	}
	views := [2]*ohc.View{with, without}
	var out, i int
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.CompileChange(views[i%2], ch); err != nil {
			b.Fatal(err)
		}
		d := c.Delta()
		out += len(d.Gone) + len(d.Came)
		i++
	}
	b.ReportMetric(float64(out)/float64(i), "entities/op")
	if mode == "incremental" && ohc.IncrementalCompiles(c) != uint64(i) {
		b.Fatalf("%d of %d compiles incremental", ohc.IncrementalCompiles(c), i)
	}
}

// BenchmarkCompileRouteChange: what the OHC's compile costs per route
// change at 1k, 10k and 100k routes (BenchmarkCompileRoutes' view: an
// on-prem feed through two attachments on other hosts, every third route
// ECMP over both): one route learned, then withdrawn, and so on, either
// with one next hop (single) or over both attachments, in the ECMP group
// the feed's routes already use (ecmp). "whole" compiles the whole view
// each time reusing the previous compile's entries, as every route
// change did before; "incremental" is CompileChange told the route.
func BenchmarkCompileRouteChange(b *testing.B) {
	s := schema(b)
	for _, n := range []int{1_000, 10_000, 100_000} {
		v := benchView(1000)
		for _, es := range v.Remote {
			sortRemote(es)
		}
		att := []netip.Addr{v.Remote["red"][10].IP, v.Remote["red"][20].IP}
		slices.SortFunc(att, netip.Addr.Compare)
		for i := range n {
			r := ohc.Route{VPC: "red", Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(16 + i>>16), byte(i >> 8), byte(i)}), 32).Masked(),
				NextHopIP: att[i%2]}
			if i%3 == 0 {
				r.NextHopIP, r.NextHopIPs = att[0], att
			}
			v.Routes = append(v.Routes, r)
		}
		byKey := func(a, b ohc.Route) int {
			return cmp.Or(cmp.Compare(a.VPC, b.VPC), a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()))
		}
		slices.SortFunc(v.Routes, byKey)
		for _, kind := range []string{"single", "ecmp"} {
			extra := ohc.Route{VPC: "red", Prefix: netip.MustParsePrefix("172.15.0.0/24"), NextHopIP: att[1]}
			if kind == "ecmp" {
				extra.NextHopIP, extra.NextHopIPs = att[0], att
			}
			with := *v
			with.Routes = append(slices.Clip(v.Routes), extra)
			slices.SortFunc(with.Routes, byKey)
			k := ohc.RouteKey{VPC: "red", Prefix: extra.Prefix}
			for _, mode := range []string{"whole", "incremental"} {
				b.Run(fmt.Sprintf("routes=%d/%s/%s", n, kind, mode), func(b *testing.B) {
					benchChange(b, s, v, &with, ohc.ViewChange{Routes: []ohc.RouteKey{k}, Other: mode == "whole"}, mode)
				})
			}
		}
	}
}
