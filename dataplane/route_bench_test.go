package dataplane

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/p4rt"
)

// routeFeed is n distinct IPv4 routes with the shape of an on-prem BGP
// feed: 55% /24, 30% /17../23, 5% /8../16, 10% /25../32, at addresses
// drawn from a fixed seed (the same feed on every run).
func routeFeed(n int) []netip.Prefix {
	r := rand.New(rand.NewPCG(10, uint64(n)))
	seen := make(map[netip.Prefix]bool, n)
	out := make([]netip.Prefix, 0, n)
	for len(out) < n {
		var bits int
		switch x := r.IntN(100); {
		case x < 55:
			bits = 24
		case x < 85:
			bits = 17 + r.IntN(7)
		case x < 90:
			bits = 8 + r.IntN(9)
		default:
			bits = 25 + r.IntN(8)
		}
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], r.Uint32())
		p := netip.PrefixFrom(netip.AddrFrom4(a), bits).Masked()
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// routeUpdates are INSERTs (or DELETEs) of feed into vnet_route in VNI
// 0x100, encapsulating to a host on the benchmark's underlay, in batches
// of batch updates.
func routeUpdates(tb testing.TB, ps *pipelineSwitch, feed []netip.Prefix, typ p4v1.Update_Type, batch int) []*p4v1.WriteRequest {
	var reqs []*p4v1.WriteRequest
	for i, p := range feed {
		if i%batch == 0 {
			reqs = append(reqs, &p4v1.WriteRequest{DeviceId: 1})
		}
		te, err := ps.s.TableEntry(p4rt.Entry{Table: "vnet_route",
			Match:  []p4rt.Match{p4rt.Exact("vni", p4rt.Uint(0x100)), p4rt.Prefix("dst_ip", p)},
			Action: &p4rt.ActionCall{Name: "encap_to_host", Params: []p4rt.Param{p4rt.P("dst_vni", p4rt.Uint(0x100)), p4rt.P("host_ip", p4rt.Uint(0xc0a80000|uint64(i%250+2))), p4rt.P("dmac", p4rt.Uint(0x02bb00000000|uint64(i)))}}})
		if err != nil {
			tb.Fatal(err)
		}
		u, err := p4rt.Update(typ, te)
		if err != nil {
			tb.Fatal(err)
		}
		w := reqs[len(reqs)-1]
		w.Updates = append(w.Updates, u)
	}
	return reqs
}

// BenchmarkVnetRoute measures vnet_route at 1k, 10k and 100k routes (one
// VPC, a BGP-like mix of prefix lengths, see routeFeed) on the
// vpc_peering.p4 pipeline:
//
//   - write: inserting then deleting the whole feed through Server.Write
//     in process (no gRPC), batches of 1000, in entries/s; write-scan the
//     same without the length index;
//   - lookup: Table.Lookup of vnet_route alone, destinations inside the
//     routes, ns per lookup; lookup-scan the same without the index of
//     prefix lengths (see lpmIndex), for the ratio;
//   - packet: a VM's 64-byte UDP frame through the whole pipeline
//     (Process), missing vnet_destination and hitting a route, tunnelled
//     out: ns per packet.
func BenchmarkVnetRoute(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		feed := routeFeed(n)
		for _, scan := range []bool{false, true} {
			name := "write"
			if scan {
				name = "write-scan" // without the index, for the ratio
			}
			b.Run(fmt.Sprintf("routes=%d/%s", n, name), func(b *testing.B) {
				benchmarkRouteWrites(b, feed, scan)
			})
		}
		ps := newPipelineSwitch(b)
		ps.program()
		for _, w := range routeUpdates(b, ps, feed, p4v1.Update_INSERT, 1000) {
			if _, err := ps.srv.Write(nil, w); err != nil {
				b.Fatal(err)
			}
		}
		// Destinations: a random address inside a random route, which is
		// not always that route's (a longer one may cover it): what is
		// timed is the lookup, not which entry wins.
		r := rand.New(rand.NewPCG(11, uint64(n)))
		dsts := make([][4]byte, 1024)
		for i := range dsts {
			p := feed[r.IntN(len(feed))]
			a := p.Addr().As4()
			host := r.Uint32() & (1<<(32-p.Bits()) - 1)
			binary.BigEndian.PutUint32(dsts[i][:], binary.BigEndian.Uint32(a[:])|host)
		}
		st := ps.srv.Store()
		rt := ps.pipe.vnetRoute
		if rt.Len() != n {
			b.Fatalf("vnet_route holds %d routes, want %d", rt.Len(), n)
		}
		b.Run(fmt.Sprintf("routes=%d/lookup", n), func(b *testing.B) {
			keys := make([][7]byte, len(dsts))
			for i, d := range dsts {
				keys[i] = [7]byte{0, 1, 0, d[0], d[1], d[2], d[3]}
			}
			st.RLock()
			defer st.RUnlock()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if rt.Lookup(keys[i&1023][:]) == rt.Default {
					b.Fatal("miss")
				}
			}
			b.ReportMetric(float64(len(rt.lens)), "prefix-lengths")
		})
		// The same routes without the length index (one probe per length
		// present, string keys), as the table was before it: the ratio to
		// lookup is what the index buys, on the same machine at the same
		// time.
		b.Run(fmt.Sprintf("routes=%d/lookup-scan", n), func(b *testing.B) {
			scan := newTable(rt.Info)
			scan.lpmIx = nil
			scan.byLen = make([]map[string]*Entry, 33)
			for e := rt.head; e != nil; e = e.next {
				scan.insert(&Entry{ActionID: e.ActionID, key: e.key, prefix: e.prefix})
			}
			keys := make([][7]byte, len(dsts))
			for i, d := range dsts {
				keys[i] = [7]byte{0, 1, 0, d[0], d[1], d[2], d[3]}
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if scan.Lookup(keys[i&1023][:]) == scan.Default {
					b.Fatal("miss")
				}
			}
		})
		b.Run(fmt.Sprintf("routes=%d/packet", n), func(b *testing.B) {
			frames := make([][]byte, len(dsts))
			for i, d := range dsts {
				f := vmFrame()
				copy(f[14+16:], d[:])
				frames[i] = f
			}
			out := make([]byte, 2048)
			if port, _, ok := ps.pipe.Process(1, frames[0], out); !ok || port != 3 {
				b.Fatalf("routed frame: port %d, ok %v; want tunnelled out of port 3", port, ok)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				ps.pipe.Process(1, frames[i&1023], out)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
		})
	}
}

// TestVnetRouteHolds100k: vnet_route takes a 100k-route feed (its size is
// 131072) and every route's own first address finds a route.
func TestVnetRouteHolds100k(t *testing.T) {
	if testing.Short() {
		t.Skip("100k inserts")
	}
	ps := newPipelineSwitch(t)
	feed := routeFeed(100_000)
	for _, w := range routeUpdates(t, ps, feed, p4v1.Update_INSERT, 1000) {
		if _, err := ps.srv.Write(nil, w); err != nil {
			t.Fatal(err)
		}
	}
	rt := ps.pipe.vnetRoute
	if rt.Len() != len(feed) {
		t.Fatalf("vnet_route holds %d routes, want %d", rt.Len(), len(feed))
	}
	st := ps.srv.Store()
	st.RLock()
	defer st.RUnlock()
	for _, p := range feed {
		a := p.Addr().As4()
		if e := rt.Lookup([]byte{0, 1, 0, a[0], a[1], a[2], a[3]}); e == rt.Default {
			t.Fatalf("%v: no route", p)
		}
	}
}

// benchmarkRouteWrites inserts then deletes feed in vnet_route through
// Server.Write, batches of 1000; scan drops the table's length index first
// (see lpmIndex), as the table was before it.
func benchmarkRouteWrites(b *testing.B, feed []netip.Prefix, scan bool) {
	ps := newPipelineSwitch(b)
	ps.program()
	if scan {
		rt := ps.pipe.vnetRoute
		rt.lpmIx, rt.byLen = nil, make([]map[string]*Entry, 33)
	}
	ins := routeUpdates(b, ps, feed, p4v1.Update_INSERT, 1000)
	del := routeUpdates(b, ps, feed, p4v1.Update_DELETE, 1000)
	var busy time.Duration
	entries := 0
	for b.Loop() {
		start := time.Now()
		for _, reqs := range [][]*p4v1.WriteRequest{ins, del} {
			for _, w := range reqs {
				if _, err := ps.srv.Write(nil, w); err != nil {
					b.Fatal(err)
				}
			}
		}
		busy += time.Since(start)
		entries += 2 * len(feed)
	}
	b.ReportMetric(float64(entries)/busy.Seconds(), "entries/s")
}
