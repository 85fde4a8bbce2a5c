package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/types/known/anypb"
)

// BenchmarkLearn measures the speaker learning an on-prem router's table:
// a second GoBGP in the process holds N /24s with the same attributes
// (so they travel packed in UPDATEs, as from a real router), then the
// speaker gets the neighbor and the clock runs until Deliver has seen all
// N. Metrics:
//
//	s/learn        session start to the N-th route delivered
//	routes/s       N over that time
//	cpu-s          CPU time of the process over that time (both GoBGPs):
//	               on a shared machine, the cost that wall time hides
//	MiB-heap       Go heap in use after GC, speaker and router together
//	MiB-speaker    heap growth from before the session to after delivery:
//	               the speaker's RIB (adj-RIB-in + VPN table) and GoBGP's
//	               per-session state on both sides; Deliver only counts
//
// Run: go test -run '^$' -bench BenchmarkLearn -benchtime 1x -timeout 60m ./bgp/
func BenchmarkLearn(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			for range b.N {
				learnOnce(b, n, 0)
			}
		})
	}
}

// BenchmarkLearnAttachments is BenchmarkLearn at 10k with other VPCs'
// sessions established alongside (idle: they announce nothing): GoBGP
// considers every learned path for every VRF neighbor, so the cost per
// route grows with the number of attachments on the speaker.
//
// Run: go test -run '^$' -bench BenchmarkLearnAttachments -benchtime 1x ./bgp/
func BenchmarkLearnAttachments(b *testing.B) {
	for _, others := range []int{0, 10, 40} {
		b.Run(fmt.Sprintf("10k/%d-others", others), func(b *testing.B) {
			for range b.N {
				learnOnce(b, 10_000, others)
			}
		})
	}
}

func learnOnce(b *testing.B, n, others int) {
	b.StopTimer()
	var adds atomic.Int64
	done := make(chan struct{})
	deliver := func(us []Update) {
		for _, u := range us {
			if !u.Withdraw && adds.Add(1) == int64(n) {
				close(done)
			}
		}
	}
	// Real routers' hold times (180 s here): GoBGP builds the UPDATEs of a
	// whole table in the goroutine that also sends keepalives, and at 1M
	// on a busy machine that takes longer than the tests' 9 s.
	red := newTestPeer(b, "127.0.0.2", 65001, func(p *api.Peer) {
		p.Timers.Config.HoldTime, p.Timers.Config.KeepaliveInterval = 180, 60
	})
	announceMany(b, red, n)
	s, err := New(Config{RouterID: netip.MustParseAddr("10.255.0.1"), LocalAS: speakerAS, ListenPort: -1, Deliver: deliver}, discard())
	if err != nil {
		b.Fatal(err)
	}
	s.testHookStartVPC = fenceTestRouters
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer s.Stop()
	var ns []Neighbor
	if others > 0 {
		var names []string
		for i := range others {
			p := newTestPeer(b, fmt.Sprintf("127.0.1.%d", i+1), uint32(65100+i))
			name := fmt.Sprintf("other-%d", i)
			ns = append(ns, p.neighbor(name, name, uint32(1000+i), "10.9.0.254"))
			names = append(names, name)
		}
		if err := s.SetNeighbors(context.Background(), ns); err != nil {
			b.Fatal(err)
		}
		waitEstablished(b, s, names...)
	}
	before := heapInUse()

	cpu0 := cpuTime()
	b.StartTimer()
	start := time.Now()
	nb := red.neighbor("red-vpn", "red", 100, "10.1.0.254")
	nb.HoldTime, nb.KeepaliveInterval = 180*time.Second, 60*time.Second
	if err := s.SetNeighbors(context.Background(), append(ns, nb)); err != nil {
		b.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(40 * time.Minute):
		b.Fatalf("only %d of %d routes delivered after 40 min", adds.Load(), n)
	}
	took := time.Since(start)
	b.StopTimer()
	cpu := cpuTime() - cpu0

	after := heapInUse()
	b.ReportMetric(took.Seconds(), "s/learn")
	b.ReportMetric(float64(n)/took.Seconds(), "routes/s")
	b.ReportMetric(cpu.Seconds(), "cpu-s")
	b.ReportMetric(float64(after)/(1<<20), "MiB-heap")
	b.ReportMetric(float64(int64(after)-int64(before))/(1<<20), "MiB-speaker")
	b.ReportMetric(0, "ns/op") // the wall time above is the measure
}

// announceMany puts n distinct /24s (1.0.0.0/24 upward) in the router's
// table, all with the same attributes.
func announceMany(b *testing.B, p *testPeer, n int) {
	b.Helper()
	origin, _ := anypb.New(&api.OriginAttribute{Origin: 0})
	nh, _ := anypb.New(&api.NextHopAttribute{NextHop: p.addr.String()})
	med, _ := anypb.New(&api.MultiExitDiscAttribute{Med: 10})
	attrs := []*anypb.Any{origin, nh, med}
	for i := range n {
		a := netip.AddrFrom4([4]byte{byte(1 + i>>16), byte(i >> 8), byte(i), 0})
		nlri, _ := anypb.New(&api.IPAddressPrefix{Prefix: a.String(), PrefixLen: 24})
		if _, err := p.srv.AddPath(context.Background(), &api.AddPathRequest{Path: &api.Path{Family: ipv4Unicast, Nlri: nlri, Pattrs: attrs}}); err != nil {
			b.Fatal(err)
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
