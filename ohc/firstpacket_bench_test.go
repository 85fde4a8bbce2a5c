package ohc_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4"
)

// BenchmarkFirstPacket: the latency of a VM's first packet to a peer
// destination, from the frame entering the source switch to its arrival
// on the destination VM's port, with full programming (host A has a direct
// entry for every destination of blue: A -> B) against on demand (A has
// the pool route only: A -> gateway -> B), and on demand the second packet
// after the first one's promotion (direct again). Three real in-process
// p4mesh-switches (A, one gateway G, B), each programmed by its own
// programmer over P4Runtime on loopback, joined by an underlay that hands
// each tunnelled frame to the switch of its outer destination. Blue has n
// destinations (the state the gateway and a fully programmed A hold);
// 200 of them, spread over the n, are VMs on B, one port each, and each
// iteration sends to the next of those (a destination not seen before,
// so not yet promoted): run with -benchtime=200x or less. pool is on
// demand with a threshold never reached: every packet through the gateway
// (the digest raised and counted, nothing promoted), which separates the
// extra hop from the promotion's work. Reports p50 and p99 in µs (first-,
// second- and promo- on demand); ns/op is 0: an iteration is mostly
// waiting.
func BenchmarkFirstPacket(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 65_000} {
		b.Run(fmt.Sprintf("dests=%d", n), func(b *testing.B) {
			r := newFirstPacketRig(b, n)
			b.Run("full", r.full)
			b.Run("pool", r.pool)
			b.Run("demand", r.demand)
		})
	}
}

const fpOnB = 200 // blue's VMs on host B, the destinations sent to

type fpSwitch struct {
	addr   string
	sw     *dataplane.Switch
	uplink *dataplane.MemPort
	ports  map[uint16]*dataplane.MemPort
}

// startFPSwitch starts a p4mesh-switch with the uplink on port 10 and a
// VM port for each of vms.
func startFPSwitch(b *testing.B, vms []uint16, onWrite func(*p4v1.Update)) *fpSwitch {
	info, err := p4.P4Info()
	if err != nil {
		b.Fatal(err)
	}
	fs := &fpSwitch{uplink: dataplane.NewMemPort(64), ports: map[uint16]*dataplane.MemPort{}}
	ports := map[uint16]dataplane.Port{10: fs.uplink}
	for _, p := range vms {
		fs.ports[p] = dataplane.NewMemPort(16)
		ports[p] = fs.ports[p]
	}
	fs.sw, err = dataplane.NewSwitch(dataplane.SwitchOptions{Server: dataplane.Options{P4Info: info, OnWrite: onWrite}, Ports: ports})
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	fs.addr = lis.Addr().String()
	g := dataplane.NewGRPCServer()
	fs.sw.Server().Register(g)
	go g.Serve(lis)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { fs.sw.Run(ctx); close(done) }()
	b.Cleanup(func() { g.Stop(); cancel(); <-done })
	return fs
}

type firstPacketRig struct {
	n          int
	a, g, bsw  *fpSwitch
	oa         *testOHC
	full0, dem *ohc.View
	dests      []netip.Addr // blue's VMs on B, in the order sent to
	macs       []net.HardwareAddr
	sent       map[[2]string]*atomic.Int64 // frames the underlay carried, by (from, to)

	mu       sync.Mutex
	promoted map[netip.Addr]chan struct{}
}

func newFirstPacketRig(b *testing.B, n int) *firstPacketRig {
	r := &firstPacketRig{n: n, sent: map[[2]string]*atomic.Int64{}, promoted: map[netip.Addr]chan struct{}{}}
	s := schema(b)
	dt, _ := s.Table("vnet_destination")
	onWriteA := func(u *p4v1.Update) {
		te := u.GetEntity().GetTableEntry()
		if u.GetType() != p4v1.Update_INSERT || te.GetTableId() != dt.ID() {
			return
		}
		for _, m := range te.GetMatch() {
			if v := m.GetExact().GetValue(); len(v) == 4 {
				r.mu.Lock()
				if ch := r.promoted[netip.AddrFrom4([4]byte(v))]; ch != nil {
					close(ch)
					delete(r.promoted, netip.AddrFrom4([4]byte(v)))
				}
				r.mu.Unlock()
			}
		}
	}
	vmPorts := make([]uint16, fpOnB)
	for j := range vmPorts {
		vmPorts[j] = uint16(256 + j)
	}
	r.a = startFPSwitch(b, []uint16{1}, onWriteA)
	r.g = startFPSwitch(b, nil, nil)
	r.bsw = startFPSwitch(b, vmPorts, nil)

	// Blue's n destinations in 10.2.0.0/16; every (n/200)-th is a VM on B,
	// the others on hosts that are not in the underlay.
	onB := map[int]int{} // destination index -> B's VM number
	for j := range fpOnB {
		onB[j*n/fpOnB] = j
	}
	var blue, blueOnB []ohc.RemoteEndpoint
	var local []ohc.LocalEndpoint
	r.dests = make([]netip.Addr, fpOnB)
	r.macs = make([]net.HardwareAddr, fpOnB)
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, 2, byte((i + 10) >> 8), byte(i + 10)})
		m := net.HardwareAddr{2, 0, 0, 2, byte(i >> 8), byte(i)}
		host := netip.AddrFrom4([4]byte{192, 168, byte(100 + i%100), byte(1 + i%250)})
		if j, ok := onB[i]; ok {
			host = ip(hostB)
			r.dests[j], r.macs[j] = a, m
			local = append(local, ohc.LocalEndpoint{ID: fmt.Sprintf("blue-%d", j), VPC: "blue", IP: a, MAC: m, Port: uint16(256 + j)})
			blueOnB = append(blueOnB, ohc.RemoteEndpoint{IP: a, MAC: m, HostIP: host})
		}
		blue = append(blue, ohc.RemoteEndpoint{IP: a, MAC: m, HostIP: host})
	}
	redVM := ohc.RemoteEndpoint{IP: ip(gwRedVM), MAC: mac(redVM1MAC), HostIP: ip(hostA)}
	r.full0 = &ohc.View{
		Host:  gwHost("a", hostA, hostAMAC),
		VPCs:  map[string]ohc.VPC{"red": gwRed},
		Local: []ohc.LocalEndpoint{{ID: "red-vm", VPC: "red", IP: ip(gwRedVM), MAC: mac(redVM1MAC), Port: 1}},
		Peerings: []ohc.Peering{{VPC: "red", PeerVPC: "blue", PeerVNI: 200, Active: true, PeerPrefixes: []netip.Prefix{pfx("10.2.0.0/16")},
			Mode: ohc.ModeDirect}},
		Remote: map[string][]ohc.RemoteEndpoint{"red": {redVM}, "blue": blue},
	}
	dem := *r.full0
	pool := bluePool(gw1)
	pool.PromotePackets, pool.PromoteWindow, pool.IdleTimeout = 1, time.Second, time.Hour
	dem.Peerings = []ohc.Peering{r.full0.Peerings[0]}
	dem.Peerings[0].Mode, dem.Peerings[0].Pool = ohc.ModePool, pool
	r.dem = &dem
	gv := gatewayHostView("g1", gw1, "02:aa:00:00:01:01")
	gv.Remote["blue"] = blue
	bv := &ohc.View{
		Host:     gwHost("b", hostB, "02:aa:00:00:00:02"),
		VPCs:     map[string]ohc.VPC{"blue": gwBlue},
		Local:    local,
		Peerings: []ohc.Peering{{VPC: "blue", PeerVPC: "red", PeerVNI: 100, Active: true, PeerPrefixes: []netip.Prefix{pfx("10.1.0.0/16")}}},
		Remote:   map[string][]ohc.RemoteEndpoint{"blue": blueOnB, "red": {redVM}},
	}

	noResync := func(po *ohc.ProgrammerOptions) { po.ResyncInterval = -1 }
	r.oa = startOHCWith(b, r.a.addr, 1, noResync)
	og := startOHCWith(b, r.g.addr, 1, noResync)
	ob := startOHCWith(b, r.bsw.addr, 1, noResync)
	for _, x := range []struct {
		o *testOHC
		v *ohc.View
	}{{og, gv}, {ob, bv}} {
		x.o.p.Update(x.v)
		fpWait(b, x.o)
	}

	// The underlay: each tunnelled frame to the switch of its outer
	// destination; to any other address, nowhere.
	byIP := map[netip.Addr]string{ip(hostA): "a", ip(gw1): "g", ip(hostB): "b"}
	sws := map[string]*fpSwitch{"a": r.a, "g": r.g, "b": r.bsw}
	for from := range sws {
		for to := range sws {
			r.sent[[2]string{from, to}] = &atomic.Int64{}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() { cancel(); wg.Wait() })
	for name, fs := range sws {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case f := <-fs.uplink.Output():
					if len(f) < 34 {
						continue
					}
					if to, ok := byIP[netip.AddrFrom4([4]byte(f[30:34]))]; ok {
						r.sent[[2]string{name, to}].Add(1)
						sws[to].uplink.Inject(f)
					}
				}
			}
		})
	}
	return r
}

// fpWait waits for o's switch to hold its last view: long, since 65k
// entries on a loaded machine take a while.
func fpWait(b *testing.B, o *testOHC) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := o.p.WaitConverged(ctx); err != nil {
		b.Fatalf("not converged: %v (stats %+v)", err, o.p.Stats())
	}
}

// fpGap is the pause before each packet measured, in either mode: in
// process, most of a packet's latency is waking the goroutines of three
// switches and the underlay, which depends on how long they slept, so
// every packet finds them equally asleep (back to back, a packet is 3-4
// times faster than after a pause; on demand the first packet always
// follows the previous destination's promotion wait).
const fpGap = 2 * time.Millisecond

// send injects red's VM's frame to destination j at A, after fpGap, and
// returns the time until it reaches j's port on B.
func (r *firstPacketRig) send(b *testing.B, j int) time.Duration {
	f := udpFrameFrom(redVM1MAC, gwRedVM, r.dests[j].String())
	port := r.bsw.ports[uint16(256+j)]
	time.Sleep(fpGap)
	t0 := time.Now()
	r.a.ports[1].Inject(f)
	select {
	case out := <-port.Output():
		d := time.Since(t0)
		if string(out[:6]) != string(r.macs[j]) {
			b.Fatalf("%v arrived with destination MAC %x, want %v", r.dests[j], out[:6], r.macs[j])
		}
		return d
	case <-time.After(5 * time.Second):
		b.Fatalf("nothing reached %v (dropped: a %d, g %d, b %d)", r.dests[j],
			r.a.sw.Dropped.Load(), r.g.sw.Dropped.Load(), r.bsw.sw.Dropped.Load())
		return 0
	}
}

func (r *firstPacketRig) count(from, to string) int64 { return r.sent[[2]string{from, to}].Load() }

// full: A programmed with every destination direct.
func (r *firstPacketRig) full(b *testing.B) {
	r.oa.p.Update(r.full0)
	fpWait(b, r.oa)
	var lat []time.Duration
	j := 0
	for b.Loop() {
		if j == fpOnB {
			b.Fatalf("more than %d iterations: give -benchtime=%dx or less", fpOnB, fpOnB)
		}
		viaG := r.count("a", "g")
		lat = append(lat, r.send(b, j))
		if r.count("a", "g") != viaG {
			b.Fatalf("%v went through the gateway with a direct entry", r.dests[j])
		}
		j++
	}
	reportLatency(b, "", lat)
}

// pool: A on demand with a threshold no destination reaches.
func (r *firstPacketRig) pool(b *testing.B) {
	v := *r.dem
	v.Peerings = []ohc.Peering{r.dem.Peerings[0]}
	pool := *v.Peerings[0].Pool
	pool.PromotePackets = 1 << 30
	v.Peerings[0].Pool = &pool
	r.oa.p.Update(&v)
	fpWait(b, r.oa)
	var lat []time.Duration
	j := 0
	for b.Loop() {
		if j == fpOnB {
			b.Fatalf("more than %d iterations: give -benchtime=%dx or less", fpOnB, fpOnB)
		}
		viaG := r.count("a", "g")
		lat = append(lat, r.send(b, j))
		if r.count("a", "g") != viaG+1 {
			b.Fatalf("%v did not go through the gateway", r.dests[j])
		}
		j++
	}
	reportLatency(b, "", lat)
}

// demand: A on demand, nothing promoted; each destination's first packet
// goes through the gateway and promotes it (promote_packets 1), the
// second, sent once the switch applied the direct entry, goes direct.
func (r *firstPacketRig) demand(b *testing.B) {
	// Without blue first, so that a run after another (-count) starts
	// with nothing promoted.
	none := *r.full0
	none.Peerings, none.Remote = nil, map[string][]ohc.RemoteEndpoint{"red": r.full0.Remote["red"]}
	r.oa.p.Update(&none)
	fpWait(b, r.oa)
	if st := r.oa.p.Stats().Demand; st.Promoted != 0 {
		b.Fatalf("%d entries still promoted without blue", st.Promoted)
	}
	r.oa.p.Update(r.dem)
	fpWait(b, r.oa)
	var first, second, promo []time.Duration
	j := 0
	for b.Loop() {
		if j == fpOnB {
			b.Fatalf("more than %d iterations: give -benchtime=%dx or less", fpOnB, fpOnB)
		}
		ch := make(chan struct{})
		r.mu.Lock()
		r.promoted[r.dests[j]] = ch
		r.mu.Unlock()
		viaG, direct := r.count("a", "g"), r.count("a", "b")
		t0 := time.Now().Add(fpGap)
		first = append(first, r.send(b, j))
		if r.count("a", "g") != viaG+1 || r.count("a", "b") != direct {
			b.Fatalf("first packet to %v: %d frames A->G, %d A->B, want one through the gateway",
				r.dests[j], r.count("a", "g")-viaG, r.count("a", "b")-direct)
		}
		select {
		case <-ch:
			promo = append(promo, time.Since(t0))
		case <-time.After(5 * time.Second):
			b.Fatalf("%v not promoted; demand %+v", r.dests[j], r.oa.p.Stats().Demand)
		}
		second = append(second, r.send(b, j))
		if r.count("a", "b") != direct+1 {
			b.Fatalf("second packet to %v did not go direct", r.dests[j])
		}
		j++
	}
	reportLatency(b, "first-", first)
	reportLatency(b, "second-", second)
	reportLatency(b, "promo-", promo)
}

func reportLatency(b *testing.B, what string, lat []time.Duration) {
	slices.Sort(lat)
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	b.ReportMetric(us(lat[len(lat)/2]), what+"p50-µs")
	b.ReportMetric(us(lat[len(lat)*99/100]), what+"p99-µs")
	b.ReportMetric(0, "ns/op")
}
