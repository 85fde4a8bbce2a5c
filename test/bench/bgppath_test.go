package bench

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
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
// on-prem router (a GoBGP in its own process, TestBGPRouterProcess, at
// 127.0.0.2, holding N /24s with the same attributes, so they travel
// packed ~800 to an UPDATE as from a real router) and, in this process, a
// controller as p4mesh-controller runs it: controller.Server (gRPC on
// loopback) and internal/bgplink's Link with its GoBGP speaker, red's
// attachment red-vpn on host h1 and a VM of red on host h2. The clock
// starts when the Link starts (the session set up is in it, about a
// second), then:
//
//	s/resolved     until red's hosts are served all N routes: every prefix
//	               learned, resolved in red's RIB and published
//	               (Server.PublishedRoutes)
//	s/up-resolved  the same, from when the router saw the session
//	               established
//	s/programmed   (program/ only) until h2's switch holds N more
//	               vnet_route entries: h2's OHC (ohc.RunDaemon) over gRPC
//	               programming an in-process p4mesh-switch over P4Runtime
//	cpu-s          this process's CPU over the run: speaker, RIB (and OHC
//	               and switch), garbage collection included; the router's
//	               is not in it
//	cpu-s-router   the router process's CPU from its routes held to the
//	               end of the run: sending
//	updates        the UPDATE messages the router sent for the N prefixes
//	               (its session's counter): ~N/800 when packed
//	MiB-ctl/100k   (resolve/ only) the live heap the run added, after GC,
//	               per 100k routes: the speaker's GoBGP, the Link, the RIB
//	               and the published tables
//	MiB-heap       this process's live heap once all are resolved, after
//	               GC (the router still up: once it stops, the controller
//	               withdraws the routes)
//	MiB-rss        its resident set at the end (VmRSS), and its peak
//	MiB-rss-peak   during the run (VmHWM, reset at the start)
//
// GOGC and GOMEMLIMIT, when set, apply to this process, not the router's.
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
	if startFRRAnnouncer == nil {
		return
	}
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("frr/%dk", n/1000), func(b *testing.B) {
			for range b.N {
				bgpPathRun(b, n, false, startFRRAnnouncer)
			}
		})
	}
}

// announcer is the on-prem router of a run, whichever it is: the address
// and port the controller's speaker dials, when it saw the session
// established, and stop, which ends it and returns the CPU seconds it
// used from its routes held and the UPDATE messages it sent.
type announcer struct {
	addr        netip.Addr
	port        uint16
	established <-chan time.Time
	stop        func(b *testing.B) (cpu, updates float64)
}

// startFRRAnnouncer, where FRR can run (bgppath_frr_test.go), starts FRR
// bgpd as the router: the frr/ rows.
var startFRRAnnouncer func(b *testing.B, n int) *announcer

// startGoBGPAnnouncer starts the GoBGP router process (resolve/ and
// program/ rows).
func startGoBGPAnnouncer(b *testing.B, n int) *announcer {
	p := startBGPRouter(b, n)
	return &announcer{addr: netip.MustParseAddr("127.0.0.2"), port: p.port, established: p.established, stop: p.stop}
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
      address: %s
      attachment: red-vpn
      peer_as: 65001
      hold_time: 180
      keepalive: 60
      port: %d
`

// The on-prem router runs in its own process, as a real one does: this
// test binary run again with P4MESH_BGP_ROUTER set to the number of
// prefixes (TestBGPRouterProcess). In the benchmark's process, its table
// (~600 MB at 1M) would be walked by the controller's collector and its
// sending would be counted as the controller's CPU.

// bgpRouterEnv selects the router mode and says how many prefixes to hold;
// bgpRouterProfileEnv, if set, is where the router writes a CPU profile
// of its run from its routes held to its end (-bgppath.routerprofile).
const (
	bgpRouterEnv        = "P4MESH_BGP_ROUTER"
	bgpRouterProfileEnv = "P4MESH_BGP_ROUTER_CPUPROFILE"
)

var bgpRouterProfile = flag.String("bgppath.routerprofile", "", "the router process writes a CPU profile of its sending here")

// TestBGPRouterProcess is BenchmarkBGPPath's on-prem router; it does
// nothing unless the benchmark started it. It prints "port P" once its N
// routes are in its table, "established" when the controller's session
// comes up, and, when its stdin closes, "cpu S": the CPU seconds it used
// since "port", then "updates U": the UPDATE messages it sent (how well
// it packed the N prefixes).
func TestBGPRouterProcess(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv(bgpRouterEnv))
	if err != nil {
		t.Skip("the router process of BenchmarkBGPPath")
	}
	r, port, err := bgpPathRouter(n)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	established := make(chan struct{})
	var once sync.Once
	err = r.WatchEvent(context.Background(), &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, func(res *api.WatchEventResponse) {
		if p := res.GetPeer().GetPeer(); p != nil && p.GetState().GetSessionState() == api.PeerState_ESTABLISHED {
			once.Do(func() { close(established) })
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if path := os.Getenv(bgpRouterProfileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuTime()
	fmt.Printf("port %d\n", port)
	go func() {
		<-established
		fmt.Println("established")
	}()
	io.Copy(io.Discard, os.Stdin)
	fmt.Printf("cpu %.3f\n", (cpuTime() - cpu0).Seconds())
	var updates uint64
	r.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		updates += p.GetState().GetMessages().GetSent().GetUpdate()
	})
	fmt.Printf("updates %d\n", updates)
}

// bgpPathRouter starts the on-prem router: passive, at 127.0.0.2, with n
// /24s from 11.0.0.0 up in its table.
func bgpPathRouter(n int) (*server.BgpServer, uint16, error) {
	r := server.NewBgpServer(server.LoggerOption(quietGoBGP{}))
	go r.Serve()
	var port uint16
	var err error
	for range 5 {
		l, lerr := net.Listen("tcp", "127.0.0.2:0")
		if lerr != nil {
			r.Stop()
			return nil, 0, fmt.Errorf("cannot listen on 127.0.0.2: %w", lerr)
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
		r.Stop()
		return nil, 0, err
	}
	err = r.AddPeer(context.Background(), &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: 64512},
		Transport: &api.Transport{PassiveMode: true},
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 180, KeepaliveInterval: 60, IdleHoldTimeAfterReset: 1}},
	}})
	if err != nil {
		r.Stop()
		return nil, 0, err
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
			r.Stop()
			return nil, 0, err
		}
	}
	return r, port, nil
}

// bgpRouterProc is a running router process.
type bgpRouterProc struct {
	cmd         *exec.Cmd
	stdin       io.WriteCloser
	port        uint16
	established chan time.Time // when the router printed "established"
	cpu         chan float64   // the router's CPU seconds, once stdin is closed
	updates     chan float64   // the UPDATE messages it sent, after cpu
	stderr      *strings.Builder
}

// startBGPRouter runs the router process with n prefixes and waits until
// they are in its table. The router runs with Go's default GC settings
// whatever the benchmark's (GOGC, GOMEMLIMIT) are: only the controller's
// are under test.
func startBGPRouter(b *testing.B, n int) *bgpRouterProc {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBGPRouterProcess$", "-test.count=1", "-test.v")
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "GOGC=") && !strings.HasPrefix(e, "GOMEMLIMIT=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, bgpRouterEnv+"="+strconv.Itoa(n))
	if *bgpRouterProfile != "" {
		cmd.Env = append(cmd.Env, bgpRouterProfileEnv+"="+*bgpRouterProfile)
	}
	p := &bgpRouterProc{cmd: cmd, established: make(chan time.Time, 1), cpu: make(chan float64, 1), updates: make(chan float64, 1), stderr: &strings.Builder{}}
	cmd.Stderr = p.stderr
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	ported := make(chan uint16, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			l := sc.Text()
			switch {
			case strings.HasPrefix(l, "port "):
				v, _ := strconv.Atoi(strings.TrimPrefix(l, "port "))
				ported <- uint16(v)
			case l == "established":
				p.established <- time.Now()
			case strings.HasPrefix(l, "cpu "):
				v, _ := strconv.ParseFloat(strings.TrimPrefix(l, "cpu "), 64)
				p.cpu <- v
			case strings.HasPrefix(l, "updates "):
				v, _ := strconv.ParseFloat(strings.TrimPrefix(l, "updates "), 64)
				p.updates <- v
			}
		}
		close(ported)
	}()
	b.Cleanup(func() {
		p.stdin.Close()
		if err := cmd.Wait(); err != nil {
			b.Errorf("router process: %v\n%s", err, p.stderr.String())
		}
	})
	port, ok := <-ported
	if !ok {
		cmd.Wait()
		b.Fatalf("router process ended before it was ready: %s", p.stderr.String())
	}
	p.port = port
	return p
}

// stop ends the router and returns the CPU seconds it used since its
// routes were in its table, and the UPDATE messages it sent.
func (p *bgpRouterProc) stop(b *testing.B) (cpu, updates float64) {
	p.stdin.Close()
	for _, c := range []struct {
		ch   chan float64
		v    *float64
		what string
	}{{p.cpu, &cpu, "CPU"}, {p.updates, &updates, "UPDATE count"}} {
		select {
		case *c.v = <-c.ch:
		case <-time.After(time.Minute):
			b.Fatalf("router process did not report its %s: %s", c.what, p.stderr.String())
		}
	}
	return cpu, updates
}

// rssMiB reads the process's resident set (VmRSS) and its peak (VmHWM)
// in MiB from /proc/self/status; 0 where Linux's /proc is not there.
func rssMiB() (rss, peak float64) {
	s, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(s), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return rss, peak
}

// resetPeakRSS starts VmHWM again from the current RSS, so that each run
// reports its own peak (Linux: "5" to clear_refs).
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

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
	bgpPathRun(b, n, program, startGoBGPAnnouncer)
}

func bgpPathRun(b *testing.B, n int, program bool, newRouter func(*testing.B, int) *announcer) {
	b.StopTimer()
	router := newRouter(b, n)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := controller.ParseConfig(fmt.Appendf(nil, bgpPathConfig, lis.Addr().String(), router.addr, router.port))
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
	resetPeakRSS()
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
	rss, peak := rssMiB()
	// The heap while the routes are held: once the router stops, the
	// session goes down and the controller withdraws them all.
	after := liveHeap()
	if *bgpPathHeap != "" && !program {
		f, err := os.Create(*bgpPathHeap)
		if err != nil {
			b.Fatal(err)
		}
		pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
	routerCPU, updates := router.stop(b)
	var sinceUp time.Duration
	select {
	case up := <-router.established:
		sinceUp = start.Add(resolved).Sub(up)
	default:
		b.Fatal("all routes resolved, but the router never said its session was established")
	}
	b.ReportMetric(resolved.Seconds(), "s/resolved")
	b.ReportMetric(sinceUp.Seconds(), "s/up-resolved")
	b.ReportMetric(cpu.Seconds(), "cpu-s")
	b.ReportMetric(routerCPU, "cpu-s-router")
	b.ReportMetric(updates, "updates")
	b.ReportMetric(rss, "MiB-rss")
	b.ReportMetric(peak, "MiB-rss-peak")
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
