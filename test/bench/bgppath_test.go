package bench

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/internal/bgplink"
	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

// BenchmarkBGPPath is issue 10's whole path, announce to programmed: an
// on-prem router (a second GoBGP in the process, at 127.0.0.2, holding N
// /24s with the same attributes, so they travel packed ~800 to an UPDATE
// as from a real router) and a controller as p4mesh-controller runs it:
// controller.Server (gRPC on loopback) and internal/bgplink's Link with
// its GoBGP speaker, red's attachment red-vpn on host h1 and a VM of red
// on host h2. The clock starts when the Link starts (the session set up
// is in it, about a second), then:
//
//	s/resolved   until red's hosts are served all N routes: every prefix
//	             learned, resolved in red's RIB and published
//	             (Server.PublishedRoutes)
//	s/programmed (program/ only) until h2's switch holds N more vnet_route
//	             entries: h2's OHC (ohc.RunDaemon) over gRPC programming an
//	             in-process p4mesh-switch over P4Runtime
//	cpu-s        the process's CPU over the run: router, speaker, RIB,
//	             OHC and switch, garbage collection included
//	MiB-ctl/100k (resolve/ only) the live heap the run added, after GC,
//	             per 100k routes: the speaker's GoBGP, the Link, the RIB
//	             and the published tables (and the router's per-session
//	             state; its N routes are held before the clock starts)
//
// resolve/ runs no OHC; program/ stops at 100k, as vnet_route holds
// 131072 entries.
//
//	go test -run '^$' -bench BGPPath -benchtime 1x -timeout 60m ./test/bench/
func BenchmarkBGPPath(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("resolve/%dk", n/1000), func(b *testing.B) {
			for range b.N {
				bgpPathOnce(b, n, false)
			}
		})
	}
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("program/%dk", n/1000), func(b *testing.B) {
			for range b.N {
				bgpPathOnce(b, n, true)
			}
		})
	}
}

// bgpPathHeap, if set, is where a resolve/ run writes a heap profile of
// the process once all routes are resolved (after GC): what holds the
// controller's memory, which -test.memprofile (written after the teardown)
// no longer shows.
var bgpPathHeap = flag.String("bgppath.heapprofile", "", "write a heap profile when BGPPath's routes are resolved")

const bgpPathConfig = `controller: c1
directory:
  - name: c1
    address: %s
    vpcs: [red]
vpcs:
  - name: red
    vni: 100
    subnets: [10.1.0.0/16]
hosts:
  - id: h1
    underlay_ip: 192.168.0.1
    mac: 02:aa:00:00:00:01
    uplink_port: 1
  - id: h2
    underlay_ip: 192.168.0.2
    mac: 02:aa:00:00:00:02
    uplink_port: 1
endpoints:
  - id: red-vpn
    vpc: red
    kind: vpn
    ip: 10.1.255.1
    mac: 02:01:00:00:ff:01
    host: h1
    port: 3
    router_mac: 02:fe:00:00:00:09
  - id: red-1
    vpc: red
    kind: vm
    ip: 10.1.0.10
    mac: 02:01:00:00:00:10
    host: h2
    port: 2
bgp:
  local_as: 64512
  router_id: 10.255.0.1
  listen_port: -1
  neighbors:
    - vpc: red
      address: 127.0.0.2
      attachment: red-vpn
      peer_as: 65001
      hold_time: 180
      keepalive: 60
      port: %d
`

// bgpPathRouter starts the on-prem router: passive, at 127.0.0.2, with n
// /24s from 11.0.0.0 up in its table.
func bgpPathRouter(b *testing.B, n int) uint16 {
	b.Helper()
	r := server.NewBgpServer(server.LoggerOption(quietGoBGP{}))
	go r.Serve()
	var port uint16
	var err error
	for range 5 {
		l, lerr := net.Listen("tcp", "127.0.0.2:0")
		if lerr != nil {
			b.Skipf("cannot listen on 127.0.0.2: %v", lerr)
		}
		port = uint16(l.Addr().(*net.TCPAddr).Port)
		l.Close()
		err = r.StartBgp(context.Background(), &api.StartBgpRequest{Global: &api.Global{
			Asn: 65001, RouterId: "127.0.0.2", ListenPort: int32(port), ListenAddresses: []string{"127.0.0.2"},
		}})
		if err == nil {
			break
		}
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.Stop)
	err = r.AddPeer(context.Background(), &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: 64512},
		Transport: &api.Transport{PassiveMode: true},
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 180, KeepaliveInterval: 60, IdleHoldTimeAfterReset: 1}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	family := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	origin, _ := anypb.New(&api.OriginAttribute{Origin: 0})
	nh, _ := anypb.New(&api.NextHopAttribute{NextHop: "127.0.0.2"})
	med, _ := anypb.New(&api.MultiExitDiscAttribute{Med: 10})
	attrs := []*anypb.Any{origin, nh, med}
	for i := range n {
		a := netip.AddrFrom4([4]byte{byte(11 + i>>16), byte(i >> 8), byte(i), 0})
		nlri, _ := anypb.New(&api.IPAddressPrefix{Prefix: a.String(), PrefixLen: 24})
		if _, err := r.AddPath(context.Background(), &api.AddPathRequest{Path: &api.Path{Family: family, Nlri: nlri, Pattrs: attrs}}); err != nil {
			b.Fatal(err)
		}
	}
	return port
}

// quietGoBGP discards the router's log.
type quietGoBGP struct{}

func (quietGoBGP) Panic(msg string, _ gobgplog.Fields) { panic(msg) }
func (quietGoBGP) Fatal(msg string, _ gobgplog.Fields) { panic(msg) }
func (quietGoBGP) Error(string, gobgplog.Fields)       {}
func (quietGoBGP) Warn(string, gobgplog.Fields)        {}
func (quietGoBGP) Info(string, gobgplog.Fields)        {}
func (quietGoBGP) Debug(string, gobgplog.Fields)       {}
func (quietGoBGP) SetLevel(gobgplog.LogLevel)          {}
func (quietGoBGP) GetLevel() gobgplog.LogLevel         { return gobgplog.ErrorLevel }

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func bgpPathOnce(b *testing.B, n int, program bool) {
	b.StopTimer()
	port := bgpPathRouter(b, n)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := controller.ParseConfig(fmt.Appendf(nil, bgpPathConfig, lis.Addr().String(), port))
	if err != nil {
		b.Fatal(err)
	}
	srv, err := controller.NewServer(controller.ServerOptions{Store: controller.NoPersistence{Start: cfg}, Auth: identity.Auth{Insecure: true}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var servers []*grpc.Server
	defer func() {
		cancel()
		for _, g := range servers {
			g.Stop()
		}
		wg.Wait()
	}()
	g := grpc.NewServer()
	srv.Register(g)
	servers = append(servers, g)
	wg.Go(func() { g.Serve(lis) })
	wg.Go(func() { srv.Run(ctx) })

	// h2's switch and OHC, programmed with red's state before the clock
	// starts.
	var routes func() int
	var base int // h2's vnet_route entries before the clock starts
	published := srv.PublishedRoutes("red")
	if program {
		info, err := p4.P4Info()
		if err != nil {
			b.Fatal(err)
		}
		s, err := p4rt.NewSchema(info)
		if err != nil {
			b.Fatal(err)
		}
		vr, err := s.Table("vnet_route")
		if err != nil {
			b.Fatal(err)
		}
		sw, err := dataplane.NewSwitch(dataplane.SwitchOptions{Server: dataplane.Options{P4Info: info}})
		if err != nil {
			b.Fatal(err)
		}
		vd, err := s.Table("vnet_destination")
		if err != nil {
			b.Fatal(err)
		}
		count := func(id uint32) int {
			st := sw.Server().Store()
			if st == nil {
				return 0
			}
			st.RLock()
			defer st.RUnlock()
			return st.Table(id).Len()
		}
		routes = func() int { return count(vr.ID()) }
		sl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		sg := dataplane.NewGRPCServer()
		sw.Server().Register(sg)
		servers = append(servers, sg)
		wg.Go(func() { sg.Serve(sl) })
		wg.Go(func() {
			ohc.RunDaemon(ctx, ohc.DaemonOptions{Host: "h2", Controllers: []string{lis.Addr().String()}, Switch: sl.Addr().String(), DeviceID: 1, ElectionID: 1}, nil)
		})
		deadline := time.Now().Add(time.Minute)
		for count(vd.ID()) == 0 {
			if time.Now().After(deadline) {
				b.Fatal("h2's switch has no vnet_destination entry after a minute (red's endpoints)")
			}
			time.Sleep(10 * time.Millisecond)
		}
		base = routes()
	}

	before := liveHeap()
	cpu0 := cpuTime()
	b.StartTimer()
	start := time.Now()
	l := bgplink.New(srv, bgplink.Options{ConnectRetry: time.Second})
	linked := make(chan struct{})
	go func() {
		defer close(linked)
		l.Run(ctx)
	}()
	var resolved, programmed time.Duration
	deadline := start.Add(30 * time.Minute)
	for resolved == 0 || (program && programmed == 0) {
		now := time.Now()
		if now.After(deadline) {
			b.Fatalf("after 30 min: %d of %d routes published", srv.PublishedRoutes("red")-published, n)
		}
		if resolved == 0 && srv.PublishedRoutes("red")-published >= n {
			resolved = now.Sub(start)
		}
		if program && programmed == 0 && routes()-base >= n {
			programmed = now.Sub(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	after := liveHeap()
	if *bgpPathHeap != "" && !program {
		f, err := os.Create(*bgpPathHeap)
		if err != nil {
			b.Fatal(err)
		}
		pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
	b.ReportMetric(resolved.Seconds(), "s/resolved")
	b.ReportMetric(cpu.Seconds(), "cpu-s")
	if program {
		b.ReportMetric(programmed.Seconds(), "s/programmed")
	} else {
		b.ReportMetric(float64(int64(after)-int64(before))/(1<<20)/(float64(n)/100_000), "MiB-ctl/100k")
	}
	b.ReportMetric(float64(after)/(1<<20), "MiB-heap")
	b.ReportMetric(0, "ns/op")
	cancel()
	<-linked
}
