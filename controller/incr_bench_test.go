package controller

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/store/boltstore"
)

// benchSizes are the configuration sizes the benchmarks run at, in
// endpoints.
var benchSizes = []int{10_000, 100_000, 1_000_000}

// scaleConfig is one controller owning four VPCs of a peering group (v0
// and v1 peered both ways under "all", v0 exporting to v2 under "web", v3
// peered with v0 under "priv"), n endpoints spread over them and over
// hosts (1,000, or more where 500 endpoints a host would not fit the
// switch's ports), a load balancer and a route per 1,000 endpoints.
func scaleConfig(n int) *Config {
	hosts := max(1000, n/500)
	c := &Config{
		Controller: "c1",
		Directory:  []ControllerEntry{{Name: "c1", Address: "127.0.0.1:7001", VPCs: []string{"v0", "v1", "v2", "v3"}}},
		ExportPolicies: []ExportPolicy{
			{Name: "all"},
			{Name: "web", Prefixes: []netip.Prefix{pfx("10.0.0.0/13")}, Protocols: []string{"tcp"}},
			{Name: "priv", PrivateOnly: true},
		},
		Peerings: []Peering{
			{VPC: "v0", PeerVPC: "v1", ExportPolicy: "all"},
			{VPC: "v1", PeerVPC: "v0", ExportPolicy: "all"},
			{VPC: "v0", PeerVPC: "v2", ExportPolicy: "web"},
			{VPC: "v2", PeerVPC: "v0", ExportPolicy: "all"},
			{VPC: "v0", PeerVPC: "v3", ExportPolicy: "priv"},
			{VPC: "v3", PeerVPC: "v0", ExportPolicy: "all"},
		},
	}
	for v := range 4 {
		c.VPCs = append(c.VPCs, VPC{Name: "v" + strconv.Itoa(v), VNI: uint32(100 + v),
			Subnets: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(16 * v), 0, 0}), 12)}})
	}
	for h := range hosts {
		mac := MAC{2, 0xaa, 0, byte(h >> 16), byte(h >> 8), byte(h)}
		c.Hosts = append(c.Hosts, Host{ID: "h" + strconv.Itoa(h), UnderlayIP: netip.AddrFrom4([4]byte{100, byte(h >> 16), byte(h >> 8), byte(h)}),
			MAC: mac, UplinkPort: 1, UnderlayRoutes: []UnderlayRoute{{Prefix: pfx("100.0.0.0/8"), Port: 1, SrcMAC: mac, DstMAC: MAC{2, 0xfe, 0, 0, 0, 1}}}})
	}
	c.Endpoints = make([]Endpoint, 0, n)
	for i := range n {
		c.Endpoints = append(c.Endpoints, scaleEndpoint(i, hosts))
	}
	for i := 0; i+4 < n; i += 1000 {
		e := c.Endpoints[i]
		c.LoadBalancers = append(c.LoadBalancers, LoadBalancer{Name: "lb" + strconv.Itoa(i), VPC: e.VPC, VIP: scaleIP(e.VPC, 1<<19+i/4), Protocol: "tcp", Port: 80,
			Backends: []LBBackend{{Endpoint: e.ID, Weight: 1}, {Endpoint: c.Endpoints[i+4].ID, Weight: 1}}})
		c.Routes = append(c.Routes, Route{VPC: e.VPC, Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(16 + i/1000%16), byte(i / 1000 / 16), 0}), 24), NextHop: e.ID})
	}
	return c
}

// scaleIP is the k-th address of vpc's subnet, past its network address
// and gateway.
func scaleIP(vpc string, k int) netip.Addr {
	v, _ := strconv.Atoi(vpc[1:])
	k += 2
	return netip.AddrFrom4([4]byte{10, byte(16*v + k>>16), byte(k >> 8), byte(k)})
}

// scaleEndpoint is the i-th endpoint: VPCs round robin, hosts filled port
// by port (2.., skipping the CPU port).
func scaleEndpoint(i, hosts int) Endpoint {
	vpc := "v" + strconv.Itoa(i%4)
	port := 2 + i/hosts
	if port >= cpuPort {
		port++
	}
	return Endpoint{ID: "e" + strconv.Itoa(i), VPC: vpc, Kind: KindVM, IP: scaleIP(vpc, i/4),
		MAC: MAC{2, 1, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}, Host: "h" + strconv.Itoa(i%hosts), Port: uint16(port)}
}

// heapMiB is the heap in use after a collection.
func heapMiB() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapInuse) / (1 << 20)
}

// BenchmarkApplyChangeEndpoint measures one endpoint change accepted by
// a controller of n endpoints: in turn, an endpoint is added on a random
// host, deleted, an existing one moved to another host, and moved back. Persistence is
// NoPersistence, so this is the controller's own cost: validation, the
// model and the watch tables' deltas. It reports the 99th percentile
// of a change and the heap in use with the configuration served.
func BenchmarkApplyChangeEndpoint(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			cfg := scaleConfig(n)
			hosts := len(cfg.Hosts)
			s, err := NewServer(ServerOptions{Store: NoPersistence{Start: cfg}})
			if err != nil {
				b.Fatal(err)
			}
			cfg = nil
			heap := heapMiB()
			r := rand.New(rand.NewPCG(1, uint64(n)))
			var took []time.Duration
			var added, moved Endpoint
			next := n
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				// Ports 503 and 504 are free on every host: one endpoint at
				// a time is added to one, moved to the other.
				var ch *Change
				switch i % 4 {
				case 0:
					added = scaleEndpoint(next, hosts)
					added.Host, added.Port = "h"+strconv.Itoa(r.IntN(hosts)), 503
					ch = &Change{Endpoints: []Endpoint{added}}
					next++
				case 1:
					ch = &Change{DeleteEndpoints: []string{added.ID}}
				case 2:
					moved = scaleEndpoint(r.IntN(n), hosts)
					e := moved
					e.Host, e.Port = "h"+strconv.Itoa(r.IntN(hosts)), 504
					ch = &Change{Endpoints: []Endpoint{e}}
				case 3:
					ch = &Change{Endpoints: []Endpoint{moved}}
				}
				start := time.Now()
				err := s.ApplyChange(ch)
				took = append(took, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(heap, "heap-MiB")
		})
	}
}

// BenchmarkApplyWhole measures Apply of a whole configuration of n
// endpoints (an import, a reload) that differs from the one served by one
// endpoint: validation, the model and every table recomputed, with
// NoPersistence ("none") and with the YAML Store, which writes the whole
// file ("yaml", to 100k endpoints).
func BenchmarkApplyWhole(b *testing.B) {
	for _, store := range []string{"none", "yaml"} {
		for _, n := range benchSizes {
			if store == "yaml" && n > 100_000 {
				continue
			}
			b.Run(fmt.Sprintf("store=%s/endpoints=%d", store, n), func(b *testing.B) {
				benchApplyWhole(b, store, n)
			})
		}
	}
}

func benchApplyWhole(b *testing.B, store string, n int) {
	a := scaleConfig(n)
	c := a.Clone()
	c.Endpoints[n/2].Host = c.Endpoints[n/2+1].Host
	c.Endpoints[n/2].Port = 509
	var p Persistence = NoPersistence{Start: a}
	if store == "yaml" {
		st, err := OpenStore(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Apply(a); err != nil {
			b.Fatal(err)
		}
		p = st
	}
	s, err := NewServer(ServerOptions{Store: p})
	if err != nil {
		b.Fatal(err)
	}
	next := c
	for b.Loop() {
		if err := s.Apply(next); err != nil {
			b.Fatal(err)
		}
		if next == c {
			next = a
		} else {
			next = c
		}
	}
	b.StopTimer()
	b.ReportMetric(heapMiB(), "heap-MiB")
	runtime.KeepAlive(s)
}

// BenchmarkPeerSideChange measures a peer controller's side changing
// under a controller of n endpoints: c2's VPC p, peered with v0, gains a
// host, then loses it, in turn, the change a peer controller sends
// whenever an endpoint of p lands on a host new to p. Persistence is
// NoPersistence, so this is the controller's own cost: the peering items
// of the hosts holding v0, the streams to re-authorise, readiness.
func BenchmarkPeerSideChange(b *testing.B) {
	for _, n := range benchSizes[:2] {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			cfg := scaleConfig(n)
			cfg.Directory = append(cfg.Directory, ControllerEntry{Name: "c2", Address: "127.0.0.1:7002", VPCs: []string{"p"}})
			cfg.Peerings = append(cfg.Peerings, Peering{VPC: "v0", PeerVPC: "p", ExportPolicy: "all"})
			s, err := NewServer(ServerOptions{Store: NoPersistence{Start: cfg}})
			if err != nil {
				b.Fatal(err)
			}
			side := func(hosts int) map[string]*p4meshv1.PeerSide {
				ps := &p4meshv1.PeerSide{Vpc: "p", PeerVpc: "v0", Configured: true, ExportPolicy: "all", Vni: 900,
					Subnets: []string{"10.200.0.0/16"}, ExportedPrefixes: []string{"10.200.0.0/16"}}
				for h := range hosts {
					ps.Hosts = append(ps.Hosts, "ph"+strconv.Itoa(h))
				}
				return map[string]*p4meshv1.PeerSide{"p/v0": ps}
			}
			ctx := context.Background()
			s.setRemote(ctx, "c2", side(100))
			for i := 0; b.Loop(); i++ {
				s.setRemote(ctx, "c2", side(100+i%2))
			}
		})
	}
}

// BenchmarkApplyChangeWhole measures the changes ApplyChange still applies
// as a whole configuration (a host's MAC, a VPC's VNI, a peering's export
// policy: each can affect any item), at n endpoints, persisted as the
// daemon does (ItemStore on bbolt): the configuration materialised and
// edited (ApplyTo), validated whole, committed (CommitAll loads the whole
// store to diff it), a new model built and every table recomputed. Each
// change is made, then undone.
func BenchmarkApplyChangeWhole(b *testing.B) {
	for _, n := range benchSizes[:2] {
		cfg := scaleConfig(n)
		backend, err := boltstore.Open(filepath.Join(b.TempDir(), "store.db"), boltstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		items, err := OpenItemStore(b.Context(), backend)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := items.Startup(cfg, false); err != nil {
			b.Fatal(err)
		}
		s, err := NewServer(ServerOptions{Store: items})
		if err != nil {
			b.Fatal(err)
		}
		host := cfg.Hosts[0]
		host.MAC = MAC{2, 0xbb, 0, 0, 0, 1}
		vpc := cfg.VPCs[3]
		vpc.VNI = 200
		peering := cfg.Peerings[0]
		peering.ExportPolicy = "web"
		for _, kind := range []struct {
			name     string
			do, undo *Change
		}{
			{"host", &Change{Hosts: []Host{host}}, &Change{Hosts: []Host{cfg.Hosts[0]}}},
			{"vpc", &Change{VPCs: []VPC{vpc}}, &Change{VPCs: []VPC{cfg.VPCs[3]}}},
			{"peering", &Change{Peerings: []Peering{peering}}, &Change{Peerings: []Peering{cfg.Peerings[0]}}},
		} {
			b.Run(fmt.Sprintf("endpoints=%d/%s", n, kind.name), func(b *testing.B) {
				var took []time.Duration
				for i := 0; b.Loop(); i++ {
					ch := kind.do
					if i%2 == 1 {
						ch = kind.undo
					}
					start := time.Now()
					if err := s.ApplyChange(ch); err != nil {
						b.Fatal(err)
					}
					took = append(took, time.Since(start))
				}
				slices.Sort(took)
				b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
			})
		}
		backend.Close()
	}
}
