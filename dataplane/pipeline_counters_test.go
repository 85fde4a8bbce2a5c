package dataplane

import (
	"fmt"
	"net/netip"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/p4rt"
)

// What the pipeline and the switch count: drops per switch and port, and
// the direct counters of vnet_destination and vnet_route.

// TestSwitchCountsDrops: a packet the pipeline drops (here spoofed ones)
// leaves nowhere and is counted on the switch and on its ingress port.
func TestSwitchCountsDrops(t *testing.T) {
	sw, ports := newWorldSwitch(t)
	out := make([]byte, 2048)
	var wantSwitch uint64
	wantPort := map[uint16]uint64{}
	for _, tc := range []struct {
		name    string
		port    uint16
		in      *frame
		wantOut uint16 // 0: dropped
	}{
		{"spoofed source IP", portA, udpFrame(macA, gwMAC, "10.1.0.77", redB, 64), 0},
		{"spoofed source MAC", portA, udpFrame(macB, gwMAC, redA, redB, 64), 0},
		{"A as itself", portA, fromA(redB), portB},
		{"B as A", portB, fromA(redB), 0},
		{"not VXLAN on the uplink", uplink, fromA(redB), 0},
	} {
		sw.Process(tc.port, buildFrame(tc.in), out)
		sent := map[uint16]int{}
		for p, mp := range ports {
			for len(mp.Output()) > 0 {
				<-mp.Output()
				sent[p]++
			}
		}
		if tc.wantOut == 0 {
			wantSwitch++
			wantPort[tc.port]++
			if len(sent) != 0 {
				t.Errorf("%s: sent %v; want nothing sent", tc.name, sent)
			}
		} else if len(sent) != 1 || sent[tc.wantOut] != 1 {
			t.Errorf("%s: sent %v; want 1 frame on port %d", tc.name, sent, tc.wantOut)
		}
		if got := sw.Dropped.Load(); got != wantSwitch {
			t.Errorf("%s: switch Dropped = %d; want %d", tc.name, got, wantSwitch)
		}
		for p := range ports {
			if got := sw.PortStats(p).Dropped.Load(); got != wantPort[p] {
				t.Errorf("%s: port %d Dropped = %d; want %d", tc.name, p, got, wantPort[p])
			}
		}
	}
}

// TestPipelineDirectCounters: the direct counters of vnet_destination and
// vnet_route count the hits of each entry, packets and bytes in; a packet
// an earlier table took (lb_frontend, vnet_destination) or a miss counts
// nowhere.
func TestPipelineDirectCounters(t *testing.T) {
	ps := newWorld(t)
	out := make([]byte, 2048)
	for _, f := range []*frame{
		fromA(blueC), fromA(blueC), // vnet_destination blueC
		fromA("10.2.0.99"),                            // vnet_route 10.2.0.0/16
		tcpFrame(macA, gwMAC, redA, vip, 1000, 80),    // lb_frontend: not the VIP's destination entry
		fromA("10.7.0.1"),                             // a miss in both
		udpFrame(macA, gwMAC, "10.1.0.77", blueC, 64), // spoofed: never routed
	} {
		ps.pipe.Process(portA, buildFrame(f), out)
	}
	n := int64(len(buildFrame(fromA(blueC))))
	U, IP := func(v uint64) p4rt.Uint { return p4rt.Uint(v) }, p4rt.Addr
	dst := func(ip string) []p4rt.Match {
		return []p4rt.Match{p4rt.Exact("vni", U(vniRed)), p4rt.Exact("dst_ip", IP(ip))}
	}
	route := func(p string) []p4rt.Match {
		return []p4rt.Match{p4rt.Exact("vni", U(vniRed)), p4rt.Prefix("dst_ip", netip.MustParsePrefix(p))}
	}
	for _, tc := range []struct {
		table          string
		match          []p4rt.Match
		packets, bytes int64
	}{
		{"vnet_destination", dst(blueC), 2, 2 * n},
		{"vnet_destination", dst(vip), 0, 0},
		{"vnet_destination", dst(redB), 0, 0},
		{"vnet_route", route("10.2.0.0/16"), 1, n},
		{"vnet_route", route("10.2.1.0/24"), 0, 0},
		// Misses: the default entries count nothing.
		{"vnet_destination", nil, 0, 0},
		{"vnet_route", nil, 0, 0},
	} {
		var (
			dc  *p4v1.DirectCounterEntry
			err error
		)
		if tc.match == nil {
			tb, err := ps.s.Table(tc.table)
			if err != nil {
				t.Fatal(err)
			}
			dc = &p4v1.DirectCounterEntry{TableEntry: &p4v1.TableEntry{TableId: tb.ID(), IsDefaultAction: true}}
		} else if dc, err = ps.s.DirectCounterEntry(p4rt.Entry{Table: tc.table, Match: tc.match}, nil); err != nil {
			t.Fatal(err)
		}
		ent, _ := p4rt.Entity(dc)
		got, err := readAll(t, ps.srv, ent)
		if err != nil || len(got) != 1 {
			t.Fatalf("read %s counter: %v, %d entities", tc.table, err, len(got))
		}
		d := got[0].GetDirectCounterEntry().GetData()
		if d.GetPacketCount() != tc.packets || d.GetByteCount() != tc.bytes {
			what := "default entry"
			if tc.match != nil {
				what = fmt.Sprint(tc.match[1].Value)
			}
			t.Errorf("%s %s: %d packets, %d bytes; want %d, %d", tc.table, what, d.GetPacketCount(), d.GetByteCount(), tc.packets, tc.bytes)
		}
	}
}
