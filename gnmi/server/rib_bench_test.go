package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/identity"
)

// ribBenchConfig is one VPC, red, with one VM and two attachments (vpn1,
// vpn2) on one host, and a second VPC, blue, that the RIB benchmarks'
// other subscriber watches.
func ribBenchConfig() *controller.Config {
	ip, pfx := netip.MustParseAddr, netip.MustParsePrefix
	mac := func(b byte) controller.MAC { return controller.MAC{2, 0, 0, 0, 0, b} }
	return &controller.Config{
		Controller: "c1",
		Directory:  []controller.ControllerEntry{{Name: "c1", Address: "127.0.0.1:1", VPCs: []string{"red", "blue"}}},
		VPCs: []controller.VPC{
			{Name: "red", VNI: 100, Subnets: []netip.Prefix{pfx("10.1.0.0/16")}},
			{Name: "blue", VNI: 200, Subnets: []netip.Prefix{pfx("10.2.0.0/16")}},
		},
		Hosts: []controller.Host{{ID: "h1", UnderlayIP: ip("192.168.0.1"), MAC: mac(0xa1), UplinkPort: 1}},
		Endpoints: []controller.Endpoint{
			{ID: "red-vm", VPC: "red", Kind: controller.KindVM, IP: ip("10.1.0.10"), MAC: mac(0x10), Host: "h1", Port: 2},
			{ID: "red-vpn1", VPC: "red", Kind: controller.KindVPN, IP: ip("10.1.0.5"), MAC: mac(0x15), Host: "h1", Port: 3, RouterMAC: mac(0xf1)},
			{ID: "red-vpn2", VPC: "red", Kind: controller.KindInterconnect, IP: ip("10.1.0.6"), MAC: mac(0x16), Host: "h1", Port: 4, RouterMAC: mac(0xf2)},
			{ID: "blue-vm", VPC: "blue", Kind: controller.KindVM, IP: ip("10.2.0.10"), MAC: mac(0x20), Host: "h1", Port: 5},
		},
	}
}

// ribBenchPrefix is the i-th learned prefix: distinct /24s from 11.0.0.0.
func ribBenchPrefix(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(11 + i>>16), byte(i >> 8), byte(i), 0}), 24)
}

// ribBench is a controller whose red VPC learned n prefixes from red-vpn1
// (every tenth also from red-vpn2, the same attributes: ECMP), served by
// the gNMI server over gRPC on loopback.
type ribBench struct {
	ctl *controller.Server
	srv *Server
	c   gnmi.GNMIClient
}

func newRIBBench(b *testing.B, n int) *ribBench {
	cfg := ribBenchConfig()
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	ctl, err := controller.NewServer(controller.ServerOptions{Auth: identity.Auth{Insecure: true}, Store: controller.NoPersistence{Start: cfg}})
	if err != nil {
		b.Fatal(err)
	}
	path := []uint32{65001, 65100, 65200}
	const chunk = 100_000
	for lo := 0; lo < n; lo += chunk {
		var rs []controller.LearnedRoute
		for i := lo; i < min(n, lo+chunk); i++ {
			rs = append(rs, controller.LearnedRoute{Neighbor: "red-vpn1", Prefix: ribBenchPrefix(i), ASPath: path, LocalPref: 100,
				NextHop: netip.MustParseAddr("172.31.0.1")})
			if i%10 == 0 {
				rs = append(rs, controller.LearnedRoute{Neighbor: "red-vpn2", Prefix: ribBenchPrefix(i), ASPath: path, LocalPref: 100,
					NextHop: netip.MustParseAddr("172.31.0.2")})
			}
		}
		if err := ctl.UpdateLearnedRoutes("red", rs, nil); err != nil {
			b.Fatal(err)
		}
	}
	srv, err := New(Options{Auth: identity.Auth{Insecure: true}, Controller: ctl})
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	g := grpc.NewServer(grpc.MaxSendMsgSize(1 << 30))
	srv.Register(g)
	go g.Serve(lis)
	b.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	// What learning left to collect is not the reads' cost.
	runtime.GC()
	return &ribBench{ctl: ctl, srv: srv, c: gnmi.NewGNMIClient(conn)}
}

// churn changes one route of red's RIB (prefix i, MED med): what a live
// BGP session does between two reads.
func (r *ribBench) churn(b *testing.B, i int, med uint32) {
	if err := r.ctl.UpdateLearnedRoutes("red", []controller.LearnedRoute{{Neighbor: "red-vpn1", Prefix: ribBenchPrefix(i),
		ASPath: []uint32{65001, 65100, 65200}, LocalPref: 100, MED: med, NextHop: netip.MustParseAddr("172.31.0.1")}}, nil); err != nil {
		b.Fatal(err)
	}
}

func ribCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakHeap samples the live heap's objects every 10 ms until stop is
// called, which returns the highest seen.
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		defer close(finished)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); <-finished; return peak.Load() }
}

func ribBenchSizes() []int {
	sizes := []int{10_000, 100_000}
	if os.Getenv("P4MESH_BENCH_1M") != "" {
		sizes = append(sizes, 1_000_000)
	}
	return sizes
}

// BenchmarkRIBState: gNMI reads of a VPC's RIB (issue 10: every candidate
// in state with chosen and reason) on a controller whose red VPC learned
// n prefixes (10k, 100k; 1M with P4MESH_BENCH_1M=1), over gRPC on
// loopback. Before each read one route of the RIB changes, as it does
// under live BGP sessions, so that nothing is answered from a cache of
// the last read.
//   - prefix: a Get of one prefix's candidates
//     (/p4mesh/vpcs/vpc[name=red]/state/routes/route[prefix=P]);
//   - vpc: a Get of red's whole RIB (/p4mesh/vpcs/vpc[name=red]/state/routes),
//     n candidates (and n/10 ECMP twins); reports the answer's size and
//     the peak live heap during the Get above the heap before it;
//   - onchange: an ON_CHANGE subscription to one prefix's candidates;
//     each iteration changes that prefix's MED and waits for the update;
//   - other: an ON_CHANGE subscription to blue's VNI while red's routes
//     change: the CPU time a route change costs the gNMI server with a
//     subscriber that does not look at the RIB (cpu-ms/change, the whole
//     process's, the controller's own work included).
func BenchmarkRIBState(b *testing.B) {
	for _, n := range ribBenchSizes() {
		b.Run(fmt.Sprintf("prefix/routes=%d", n), func(b *testing.B) {
			r := newRIBBench(b, n)
			p := &gnmi.Path{Elem: []*gnmi.PathElem{{Name: "p4mesh"}, {Name: "vpcs"}, {Name: "vpc", Key: map[string]string{"name": "red"}},
				{Name: "state"}, {Name: "routes"}, {Name: "route", Key: map[string]string{"prefix": ribBenchPrefix(n / 2).String()}}}}
			var get time.Duration
			i := 0
			for b.Loop() {
				i++
				r.churn(b, i%n, uint32(i))
				t0 := time.Now()
				resp, err := r.c.Get(context.Background(), &gnmi.GetRequest{Path: []*gnmi.Path{p}, Encoding: gnmi.Encoding_JSON_IETF})
				if err != nil {
					b.Fatal(err)
				}
				get += time.Since(t0)
				if u := resp.GetNotification()[0].GetUpdate(); len(u) == 0 || !strings.Contains(string(u[0].GetVal().GetJsonIetfVal()), "chosen") {
					b.Fatalf("Get of one prefix: %v", resp)
				}
			}
			b.ReportMetric(float64(get.Microseconds())/float64(b.N)/1000, "get-ms")
		})
		for _, direct := range []bool{false, true} {
			name := "vpc"
			if direct {
				name = "vpc-server"
			}
			b.Run(fmt.Sprintf("%s/routes=%d", name, n), func(b *testing.B) { ribBenchVPC(b, n, direct) })
		}
		b.Run(fmt.Sprintf("onchange/routes=%d", n), func(b *testing.B) {
			r := newRIBBench(b, n)
			target := ribBenchPrefix(n / 3)
			p := &gnmi.Path{Elem: []*gnmi.PathElem{{Name: "p4mesh"}, {Name: "vpcs"}, {Name: "vpc", Key: map[string]string{"name": "red"}},
				{Name: "state"}, {Name: "routes"}, {Name: "route", Key: map[string]string{"prefix": target.String(), "origin": "bgp", "source": "red-vpn1"}}, {Name: "med"}}}
			meds := subscribeOnChange(b, r.c, p)
			var lat []time.Duration
			var cpu time.Duration
			i := 0
			for b.Loop() {
				i++
				c0 := ribCPUTime()
				t0 := time.Now()
				r.churn(b, n/3, uint32(1000+i))
				want := fmt.Sprint(1000 + i)
				for {
					select {
					case v := <-meds:
						if v != want {
							continue
						}
					case <-time.After(5 * time.Minute):
						b.Fatalf("no update of MED %s", want)
					}
					break
				}
				lat = append(lat, time.Since(t0))
				cpu += ribCPUTime() - c0
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N)/1000, "cpu-ms/change")
		})
		b.Run(fmt.Sprintf("other/routes=%d", n), func(b *testing.B) {
			r := newRIBBench(b, n)
			p := &gnmi.Path{Elem: []*gnmi.PathElem{{Name: "p4mesh"}, {Name: "vpcs"}, {Name: "vpc", Key: map[string]string{"name": "blue"}},
				{Name: "config"}, {Name: "vni"}}}
			subscribeOnChange(b, r.c, p)
			var cpu time.Duration
			i := 0
			for b.Loop() {
				i++
				c0 := ribCPUTime()
				r.churn(b, i%n, uint32(i))
				// The subscriber's wake-up and look happen after the
				// change returns: give it the time to do them.
				time.Sleep(20 * time.Millisecond)
				cpu += ribCPUTime() - c0
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N)/1000, "cpu-ms/change")
		})
	}
}

// subscribeOnChange opens an ON_CHANGE STREAM subscription to p and
// returns the JSON_IETF values it delivers after the sync response.
func subscribeOnChange(b *testing.B, c gnmi.GNMIClient, p *gnmi.Path) <-chan string {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	st, err := c.Subscribe(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Send(&gnmi.SubscribeRequest{Request: &gnmi.SubscribeRequest_Subscribe{Subscribe: &gnmi.SubscriptionList{
		Mode: gnmi.SubscriptionList_STREAM, Encoding: gnmi.Encoding_JSON_IETF, UpdatesOnly: true,
		Subscription: []*gnmi.Subscription{{Path: p, Mode: gnmi.SubscriptionMode_ON_CHANGE}},
	}}}); err != nil {
		b.Fatal(err)
	}
	out := make(chan string, 1000)
	synced := make(chan struct{})
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			if r.GetSyncResponse() {
				close(synced)
			}
			for _, u := range r.GetUpdate().GetUpdate() {
				select {
				case out <- string(u.GetVal().GetJsonIetfVal()):
				default:
				}
			}
		}
	}()
	select {
	case <-synced:
	case <-time.After(10 * time.Minute):
		b.Fatal("no sync response")
	}
	return out
}

// ribBenchVPC is BenchmarkRIBState's vpc case; direct calls Server.Get
// in the process, without gRPC, so that the peak heap is the server's
// alone, not the client's copy of the answer too.
func ribBenchVPC(b *testing.B, n int, direct bool) {
	r := newRIBBench(b, n)
	p := &gnmi.Path{Elem: []*gnmi.PathElem{{Name: "p4mesh"}, {Name: "vpcs"}, {Name: "vpc", Key: map[string]string{"name": "red"}},
		{Name: "state"}, {Name: "routes"}}}
	var get, cpu time.Duration
	var peak, size uint64
	i := 0
	for b.Loop() {
		i++
		r.churn(b, i%n, uint32(i))
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		before := ms.HeapAlloc
		stop := peakHeap()
		t0, c0 := time.Now(), ribCPUTime()
		req := &gnmi.GetRequest{Path: []*gnmi.Path{p}, Encoding: gnmi.Encoding_JSON_IETF}
		do := r.c.Get
		if direct {
			do = func(ctx context.Context, req *gnmi.GetRequest, _ ...grpc.CallOption) (*gnmi.GetResponse, error) {
				return r.srv.Get(ctx, req)
			}
		}
		resp, err := do(context.Background(), req)
		if err != nil {
			b.Fatal(err)
		}
		get += time.Since(t0)
		cpu += ribCPUTime() - c0
		if h := stop(); h > before {
			peak = max(peak, h-before)
		}
		size = 0
		for _, u := range resp.GetNotification()[0].GetUpdate() {
			size += uint64(len(u.GetVal().GetJsonIetfVal()))
		}
		runtime.KeepAlive(resp)
	}
	b.ReportMetric(get.Seconds()/float64(b.N), "get-s")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s")
	b.ReportMetric(float64(size)/(1<<20), "answer-MiB")
	b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
}
