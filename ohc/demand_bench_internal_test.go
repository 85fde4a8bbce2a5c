package ohc

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

// BenchmarkDemandFilter: the demand filter's cost per compile with n
// pool-mode destinations (what the compile emits for pool-mode peers):
// whole is a first compile's delta (every destination comes, every one
// withheld), change a one-endpoint delta (it moved host) in a state of n,
// desired the full pass's filtering of the whole desired state.
func BenchmarkDemandFilter(b *testing.B) {
	s := demandSchema(b)
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		all := make([]*p4v1.Entity, n)
		for i := range all {
			all[i] = destEntityN(b, s, i, 2)
		}
		desired := func() []*p4v1.Entity { return all }
		v := pooledView(ModePool)
		v.Peerings[0].PeerPrefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		b.Run(fmt.Sprintf("dests=%d/whole", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d, _ := newDemand(s, 0)
				if out := d.filter(v, Delta{Came: all}, desired, true); len(out.Came) != 0 {
					b.Fatal("pool-mode destinations passed")
				}
			}
		})
		d, _ := newDemand(s, 0)
		d.filter(v, Delta{Came: all}, desired, true)
		moved := destEntityN(b, s, n/2, 3)
		b.Run(fmt.Sprintf("dests=%d/change", n), func(b *testing.B) {
			b.ReportAllocs()
			from, to := all[n/2], moved
			for b.Loop() {
				d.filter(v, Delta{Gone: []*p4v1.Entity{from}, Came: []*p4v1.Entity{to}}, desired, false)
				from, to = to, from
			}
		})
		b.Run(fmt.Sprintf("dests=%d/desired", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d.desired(all)
			}
		})
	}
}

// destEntityN is red's (VNI 100) entry for blue's (VNI 200) i-th address
// in 10.0.0.0/8, on host 192.168.0.h, as the compile makes it.
func destEntityN(b testing.TB, s *p4rt.Schema, i, h int) *p4v1.Entity {
	a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	_, build := encapEntry(100, 200, RemoteEndpoint{IP: a, MAC: net.HardwareAddr{2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}, HostIP: netip.AddrFrom4([4]byte{192, 168, 0, byte(h)})})
	table, match, call := build()
	return tableEntity(b, s, p4rt.Entry{Table: table, Match: match, Action: &call})
}

// BenchmarkDemandEntries: the entries a host's switch holds with its VPC
// peered with peers VPCs of 100 endpoints each (on other hosts), each
// served by a pool of two gateways. Three programmings: nopool, every
// peering direct without a pool (full programming as before pools);
// full, every peering direct with its pool (the compile's pool path
// catches what has no entry yet); demand, every peering in pool mode with
// 1% of the peers' destinations promoted (the working set). Every table
// entry, action-profile member and group counts (the default entry does
// not). Counts, not times: run with -benchtime=1x and -v for the tables.
// fits is 1 when the programmer's budget check (the P4Info sizes) takes
// the programming, 0 when it would refuse the view.
func BenchmarkDemandEntries(b *testing.B) {
	s := demandSchema(b)
	info, err := p4.P4Info()
	if err != nil {
		b.Fatal(err)
	}
	caps, err := p4rt.FromP4Info(info)
	if err != nil {
		b.Fatal(err)
	}
	for _, peers := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("peers=%d", peers), func(b *testing.B) {
			for b.Loop() {
				c := demandEntries(b, s, peers)
				for _, k := range []struct {
					name string
					n    entryCount
				}{{"nopool", c.noPool}, {"full", c.full}, {"demand", c.demand}} {
					b.ReportMetric(float64(k.n.total()), "entries-"+k.name)
					fits := 1.0
					if err := caps.CheckBudget(k.n.entries, k.n.members); err != nil {
						fits = 0
						b.Logf("peers=%d %s does not fit: %v", peers, k.name, err)
					}
					b.ReportMetric(fits, "fits-"+k.name)
					b.Logf("peers=%d %s: %d: %s", peers, k.name, k.n.total(), k.n)
				}
				b.ReportMetric(float64(c.promoted), "promoted")
				b.ReportMetric(float64(c.noPool.total())/float64(c.demand.total()), "ratio-nopool/demand")
				b.ReportMetric(float64(c.full.total())/float64(c.demand.total()), "ratio-full/demand")
			}
		})
	}
}

// entryCount is what a switch holds, by table (entries) and by action
// profile (members, and groups under "<profile> groups").
type entryCount struct {
	entries, members, groups map[string]int
}

func countEntities(s *p4rt.Schema, es []*p4v1.Entity) entryCount {
	c := entryCount{entries: map[string]int{}, members: map[string]int{}, groups: map[string]int{}}
	for _, e := range es {
		switch x := e.GetEntity().(type) {
		case *p4v1.Entity_TableEntry:
			if x.TableEntry.GetIsDefaultAction() {
				continue
			}
			if t, err := s.TableByID(x.TableEntry.GetTableId()); err == nil {
				c.entries[t.Name()]++
			}
		case *p4v1.Entity_ActionProfileMember:
			if a, err := s.ActionProfileByID(x.ActionProfileMember.GetActionProfileId()); err == nil {
				c.members[a.Name()]++
			}
		case *p4v1.Entity_ActionProfileGroup:
			if a, err := s.ActionProfileByID(x.ActionProfileGroup.GetActionProfileId()); err == nil {
				c.groups[a.Name()]++
			}
		}
	}
	return c
}

func (c entryCount) total() int {
	n := 0
	for _, m := range []map[string]int{c.entries, c.members, c.groups} {
		for _, v := range m {
			n += v
		}
	}
	return n
}

func (c entryCount) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c.entries)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, c.entries[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(c.members)) {
		parts = append(parts, fmt.Sprintf("%s members %d", k, c.members[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(c.groups)) {
		parts = append(parts, fmt.Sprintf("%s groups %d", k, c.groups[k]))
	}
	return strings.Join(parts, ", ")
}

type demandCounts struct {
	noPool, full, demand entryCount
	promoted             int
}

func demandEntries(b testing.TB, s *p4rt.Schema, peers int) demandCounts {
	hm := net.HardwareAddr{2, 0xfe, 0, 0, 0, 1}
	v := &View{
		Host: Host{ID: "h0", IP: netip.MustParseAddr("192.168.0.1"), MAC: hm,
			UnderlayRoutes: []UnderlayRoute{{Prefix: netip.MustParsePrefix("192.168.0.0/16"), Port: 1, SrcMAC: hm, DstMAC: net.HardwareAddr{2, 0xfd, 0, 0, 0, 0}}}},
		VPCs:   map[string]VPC{"red": {Name: "red", VNI: 100, Subnets: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}},
		Remote: map[string][]RemoteEndpoint{},
	}
	for i := range 10 {
		v.Local = append(v.Local, LocalEndpoint{ID: fmt.Sprintf("red-%d", i), VPC: "red", IP: netip.AddrFrom4([4]byte{10, 1, 0, byte(10 + i)}), MAC: net.HardwareAddr{2, 1, 0, 0, 0, byte(i)}, Port: uint16(2 + i)})
	}
	for j := range peers {
		name := fmt.Sprintf("peer-%d", j)
		net24 := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(2 + j>>8), byte(j), 0}), 24)
		v.Peerings = append(v.Peerings, Peering{VPC: "red", PeerVPC: name, PeerVNI: uint32(1000 + j), Active: true, Mode: ModeDirect,
			PeerPrefixes: []netip.Prefix{net24}, Pool: &GatewayPool{Name: name + "-gw", VPC: name, VNI: uint32(1000 + j),
				Members: []GatewayMember{{Host: "gw1", IP: netip.MustParseAddr("192.168.200.1")}, {Host: "gw2", IP: netip.MustParseAddr("192.168.200.2")}}}})
		for k := range 100 {
			v.Remote[name] = append(v.Remote[name], RemoteEndpoint{IP: netip.AddrFrom4([4]byte{10, byte(2 + j>>8), byte(j), byte(k + 1)}),
				MAC: net.HardwareAddr{2, 2, 0, byte(j >> 8), byte(j), byte(k)}, HostIP: netip.AddrFrom4([4]byte{192, 168, byte(k + 1), byte(j%250 + 1)})})
		}
	}
	var out demandCounts
	// Full programming before pools: the same view without them.
	np := *v
	np.Peerings = make([]Peering, len(v.Peerings))
	for i, p := range v.Peerings {
		p.Pool = nil
		np.Peerings[i] = p
	}
	es, _, err := CompileWithWarnings(s, &np)
	if err != nil {
		b.Fatal(err)
	}
	out.noPool = countEntities(s, es)
	c := NewCompiler(s)
	if _, err := c.CompileChange(v, ViewChange{Other: true}); err != nil {
		b.Fatal(err)
	}
	out.full = countEntities(s, c.Desired())
	d, err := newDemand(s, 0)
	if err != nil {
		b.Fatal(err)
	}
	d.filter(v, c.Delta(), c.Desired, true)
	// Every peering to pool mode: a peering change, compiled whole.
	pv := *v
	pv.Peerings = make([]Peering, len(v.Peerings))
	for i, p := range v.Peerings {
		p.Mode = ModePool
		pv.Peerings[i] = p
	}
	if _, err := c.CompileChange(&pv, ViewChange{Other: true}); err != nil {
		b.Fatal(err)
	}
	d.filter(&pv, c.Delta(), c.Desired, true)
	if len(d.cands) != peers*100 {
		b.Fatalf("%d destinations held back, want %d", len(d.cands), peers*100)
	}
	// The working set: every hundredth destination promoted.
	now, i := time.Now(), 0
	for k, e := range d.cands {
		if i%100 == 0 {
			d.promoteLocal(k, e, now, 0)
		}
		i++
	}
	out.demand = countEntities(s, d.desired(c.Desired()))
	out.promoted = len(d.promo)
	return out
}

// BenchmarkDemandPoll: one counter poll of n promoted entries (their
// direct counters read per entry, one Read per 4,096) against the
// in-process p4mesh-switch over P4Runtime on loopback, with the
// accounting.
func BenchmarkDemandPoll(b *testing.B) {
	info, err := p4.P4Info()
	if err != nil {
		b.Fatal(err)
	}
	s := demandSchema(b)
	sw, err := dataplane.NewSwitch(dataplane.SwitchOptions{Server: dataplane.Options{P4Info: info}})
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	g := dataplane.NewGRPCServer()
	sw.Server().Register(g)
	go g.Serve(lis)
	defer g.Stop()
	c, err := p4rt.New(p4rt.Config{Addr: lis.Addr().String(), DeviceID: 1, ElectionID: p4rt.ElectionID{Low: 1}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	defer c.Close()
	if err := c.WaitPrimary(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := c.SetPipeline(ctx, info, nil, 1, p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT); err != nil {
		b.Fatal(err)
	}
	rec := &p4rt.Reconciler{Schema: s, Device: c, Tables: ownedTables, Profiles: ownedProfiles}
	d, _ := newDemand(s, 0)
	have := 0
	for _, n := range []int{1_000, 10_000, 60_000} {
		var es []*p4v1.Entity
		for i := have; i < n; i++ {
			es = append(es, destEntityN(b, s, i, 2))
		}
		if _, err := rec.Apply(ctx, nil, es); err != nil {
			b.Fatal(err)
		}
		v := pooledView(ModePool)
		v.Peerings[0].PeerPrefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		d.filter(v, Delta{Came: es}, func() []*p4v1.Entity { return es }, true)
		now := time.Now()
		for _, e := range es {
			_, k, _, _ := d.classify(e)
			d.promoteLocal(k, e, now, 0)
		}
		have = n
		b.Run(fmt.Sprintf("promoted=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				dests, routes, err := d.readCounters(ctx, c)
				if err != nil || len(dests) != n {
					b.Fatalf("read %d counters: %v", len(dests), err)
				}
				d.account(dests, routes, now)
			}
		})
	}
}
