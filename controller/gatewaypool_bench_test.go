package controller

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/identity"
)

// poolBenchConfig is one controller owning VPC x, served by pool gw
// (gw1, gw2), peered both ways with n VPCs s0..s(n-1), each with one
// endpoint on one of 100 hosts.
func poolBenchConfig(n int) *Config {
	c := &Config{Controller: "c1", ExportPolicies: []ExportPolicy{{Name: "all"}}}
	entry := ControllerEntry{Name: "c1", Address: "127.0.0.1:1", VPCs: []string{"x"}}
	c.VPCs = []VPC{{Name: "x", VNI: 1, Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")}}}
	for i := range 100 {
		c.Hosts = append(c.Hosts, Host{ID: fmt.Sprintf("h%d", i), UnderlayIP: netip.AddrFrom4([4]byte{192, 168, byte(i / 256), byte(i % 256)}), MAC: MAC{2, 0xaa, 0, 0, byte(i / 256), byte(i % 256)}, UplinkPort: 1})
	}
	for i, id := range []string{"gw1", "gw2"} {
		c.Hosts = append(c.Hosts, Host{ID: id, UnderlayIP: netip.AddrFrom4([4]byte{192, 169, 0, byte(i + 1)}), MAC: MAC{2, 0xbb, 0, 0, 0, byte(i + 1)}, UplinkPort: 1})
	}
	for i := range n {
		name := fmt.Sprintf("s%d", i)
		entry.VPCs = append(entry.VPCs, name)
		c.VPCs = append(c.VPCs, VPC{Name: name, VNI: uint32(100 + i), Subnets: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{11, byte(i / 256), byte(i % 256), 0}), 24)}})
		c.Endpoints = append(c.Endpoints, Endpoint{ID: "e" + name, VPC: name, Kind: KindVM, IP: netip.AddrFrom4([4]byte{11, byte(i / 256), byte(i % 256), 10}),
			MAC: MAC{2, 1, 0, byte(i >> 16), byte(i >> 8), byte(i)}, Host: fmt.Sprintf("h%d", i%100), Port: uint16(2 + i/100)})
		c.Peerings = append(c.Peerings, Peering{VPC: name, PeerVPC: "x", ExportPolicy: "all"}, Peering{VPC: "x", PeerVPC: name, ExportPolicy: "all"})
	}
	c.Directory = []ControllerEntry{entry}
	c.GatewayPools = []GatewayPool{{Name: "gw", Members: []string{"gw1", "gw2"}, VPCs: []string{"x"}}}
	return c
}

// BenchmarkGatewayMemberChange: a gateway leaving and joining the pool
// (alternately), republished to the peer side of every peering of the
// served VPC and to the hosts of every VPC peered with it: the cost of a
// failover at the controller, at 100, 1,000 and 10,000 peered VPCs.
func BenchmarkGatewayMemberChange(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("peered=%d", n), func(b *testing.B) {
			srv, err := NewServer(ServerOptions{Store: NoPersistence{Start: poolBenchConfig(n)}, Auth: identity.Auth{Insecure: true}, GatewayLoadPeriod: time.Nanosecond})
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			srv.mu.Lock()
			srv.pools.started = now.Add(-time.Hour) // no start grace
			srv.mu.Unlock()
			srv.pools.obs.observe("gw1", nil, now)
			srv.reconcilePools(now)
			b.ResetTimer()
			for i := range b.N {
				if i%2 == 0 {
					srv.pools.obs.observe("gw2", nil, now)
				} else {
					srv.pools.obs.mu.Lock()
					delete(srv.pools.obs.seen, "gw2")
					srv.pools.obs.mu.Unlock()
				}
				srv.reconcilePools(now)
			}
			b.StopTimer()
			srv.mu.Lock()
			live := srv.pools.live["gw"]
			srv.mu.Unlock()
			if want := 1 + b.N%2; len(live) != want {
				b.Fatalf("live members %v; want %d", live, want)
			}
		})
	}
}

// BenchmarkGatewayPoolLoopIdle: one look of the pool loop that decides
// the modes (once per GatewayLoadPeriod, 1s by default) when nothing
// changes: live members and every peering's mode decided again from the
// rates, at 100, 1,000 and 10,000 peered VPCs.
func BenchmarkGatewayPoolLoopIdle(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("peered=%d", n), func(b *testing.B) {
			c := poolBenchConfig(n)
			c.GatewayPools[0].DirectAbovePPS = 1000
			srv, err := NewServer(ServerOptions{Store: NoPersistence{Start: c}, Auth: identity.Auth{Insecure: true}, GatewayLoadPeriod: time.Nanosecond})
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			srv.pools.obs.observe("gw1", nil, now)
			srv.pools.obs.observe("gw2", nil, now)
			srv.reconcilePools(now)
			rev := srv.rev
			b.ResetTimer()
			for range b.N {
				// Later, so that the look decides; the members
				// heard from meanwhile, so that nothing changes.
				now = now.Add(time.Millisecond)
				srv.pools.obs.observe("gw1", nil, now)
				srv.pools.obs.observe("gw2", nil, now)
				srv.reconcilePools(now)
			}
			b.StopTimer()
			if srv.rev != rev {
				b.Fatal("an idle look published a change")
			}
		})
	}
}

// What the pool loop publishes by patching peering items and peer sides
// equals what deriving every table from scratch gives, over a random
// sequence of members coming and going and loads crossing thresholds.
func TestGatewayRefreshMatchesRebuild(t *testing.T) {
	c := poolBenchConfig(30)
	c.GatewayPools[0].DirectAbovePPS, c.GatewayPools[0].PoolBelowPPS = 1000, 100
	srv, err := NewServer(ServerOptions{Store: NoPersistence{Start: c}, Auth: identity.Auth{Insecure: true}, GatewayLoadPeriod: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 13))
	now := time.Now()
	srv.mu.Lock()
	srv.pools.started = now.Add(-time.Hour)
	srv.mu.Unlock()
	counts := map[string]uint64{}
	modes := map[string]bool{}
	for step := range 60 {
		now = now.Add(time.Second)
		// The first half keeps the members (only modes change), the
		// second lets them come and go.
		for _, gw := range []string{"gw1", "gw2"} {
			if step < 30 || r.IntN(3) > 0 {
				srv.pools.obs.observe(gw, nil, now)
			}
		}
		// Some of the first hosts send from their VPCs to x.
		for h := range 5 {
			pairs := map[string]uint64{}
			for i := h; i < 30; i += 100 {
				pair := fmt.Sprintf("s%d/x", i)
				counts[pair] += uint64(r.IntN(3000))
				pairs[pair] = counts[pair]
			}
			srv.pools.obs.observe(fmt.Sprintf("h%d", h), pairs, now)
		}
		srv.reconcilePools(now)
		srv.mu.Lock()
		for id, tbl := range srv.hosts {
			got, _ := tbl.Snapshot()
			want := srv.hostItemsLocked(id)
			for k, v := range want {
				if !proto.Equal(got[k], v) {
					t.Fatalf("step %d: host %s item %s = %v; a rebuild gives %v", step, id, k, got[k], v)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("step %d: host %s has %d items; a rebuild gives %d", step, id, len(got), len(want))
			}
		}
		sides, _ := srv.peers.Snapshot()
		for _, p := range srv.m.base.Peerings {
			if want := srv.peerSideLocked(p); !proto.Equal(sides[p.VPC+"/"+p.PeerVPC], want) {
				t.Fatalf("step %d: side %s/%s = %v; a rebuild gives %v", step, p.VPC, p.PeerVPC, sides[p.VPC+"/"+p.PeerVPC], want)
			}
			// The host tables hold vpcItems (checked above); they must
			// be what peeringItemLocked builds.
			it, _ := srv.vpcItems[p.VPC]["peering/"+p.VPC+"/"+p.PeerVPC].(*p4meshv1.Peering)
			if want := srv.peeringItemLocked(p); !proto.Equal(it, want) {
				t.Fatalf("step %d: peering %s->%s published %v; a rebuild gives %v", step, p.VPC, p.PeerVPC, it, want)
			}
			if p.PeerVPC == "x" {
				modes[it.GetMode()] = true
			}
		}
		srv.mu.Unlock()
	}
	// The sequence went through every mode.
	if !modes["direct"] || !modes["pool"] {
		t.Errorf("modes seen: %v; want both", modes)
	}
}
