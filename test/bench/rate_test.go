//go:build linux

package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/dataplane/afpacket"
	"github.com/p4mesh/p4mesh/dataplane/xsk"
	"github.com/p4mesh/p4mesh/internal/xdpprog"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
	"github.com/p4mesh/p4mesh/test/topo"
)

// The rate benchmark's world: a VM on P4 port 1 (namespace vm) and the
// underlay on P4 port 2 (namespace net), the switch's ends in a namespace
// of their own. A generator writes frames into one side with sendmmsg at a
// set rate and a counter reads the other side from a PACKET_MMAP ring, in
// the test process: generator, switch and counter share the machine.
var (
	rateVMMAC    = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 1}
	rateHostMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	rateRouter   = net.HardwareAddr{0x02, 0, 0, 0, 0xff, 0xff}
	rateVMIP     = netip.MustParseAddr("10.1.0.1")
	rateRemoteIP = netip.MustParseAddr("10.1.0.10")
	rateHostIP   = netip.MustParseAddr("192.168.0.1")
	rateHostB    = netip.MustParseAddr("192.168.0.2")
)

const rateVNI = 0x100

// rateRig is the running switch with its generator and counter ends.
type rateRig struct {
	vm, net *afpacket.Ring // the VM's and the underlay's far ends
	sw      *dataplane.Switch
	bmv2    *bmv2            // in mode bmv2, the switch (sw is nil)
	rings   []*afpacket.Ring // the switch's ports, when they are rings
	xsks    []*xsk.Port      // the switch's ports, when they are AF_XDP
	// counted is, per far end, the frames read of length want.
	counted map[*afpacket.Ring]*atomic.Uint64
	want    atomic.Int64
	// sinks, with P4MESH_RATE_SINK=xdp, count the frames of length want
	// in an XDP program on each far end and drop them there.
	sinks map[*afpacket.Ring]*xdpprog.Sink
}

// setWant makes the counters count frames of n bytes.
func (r *rateRig) setWant(tb testing.TB, n int) {
	tb.Helper()
	r.want.Store(int64(n))
	for _, s := range r.sinks {
		if err := s.SetLength(n); err != nil {
			tb.Fatal(err)
		}
	}
}

// received is the number of frames of length want the far end out got:
// from its XDP sink when there is one, else from its ring.
func (r *rateRig) received(tb testing.TB, out *afpacket.Ring) uint64 {
	tb.Helper()
	if s := r.sinks[out]; s != nil {
		n, err := s.Frames()
		if err != nil {
			tb.Fatal(err)
		}
		return n
	}
	return r.counted[out].Load()
}

// count reads ring until it is closed, counting frames of length r.want.
func (r *rateRig) count(ring *afpacket.Ring) {
	n := r.counted[ring]
	fn := func(f []byte) {
		if int64(len(f)) == r.want.Load() {
			n.Add(1)
		}
	}
	for ring.ReadBatch(fn) == nil {
	}
}

// openSwitchPort opens a switch port in the given mode: afpacket, mmap
// (afpacket.Ring, sending through its TX ring) or mmap-sendmmsg (the same,
// sending with sendmmsg).
func openSwitchPort(tb testing.TB, mode, ns, ifname string) (dataplane.Port, *afpacket.Ring) {
	tb.Helper()
	switch mode {
	case "afpacket":
		p, err := afpacket.OpenNetns(ns, ifname)
		if err != nil {
			tb.Fatal(err)
		}
		return p, nil
	case "mmap", "mmap-sendmmsg":
		o := afpacket.RingOptions{Sendmmsg: mode == "mmap-sendmmsg"}
		// P4MESH_RATE_RING_BLOCKS sizes the switch's receive rings.
		o.Blocks, _ = strconv.Atoi(os.Getenv("P4MESH_RATE_RING_BLOCKS"))
		r, err := afpacket.OpenRingNetns(ns, ifname, o)
		if err != nil {
			tb.Fatal(err)
		}
		return r, r
	case "xdp":
		p, err := xsk.OpenNetns(ns, ifname, xsk.Options{})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Logf("%s: AF_XDP %s", ifname, p.Mode())
		return p, nil
	}
	tb.Fatalf("mode %q", mode)
	return nil, nil
}

// The rate rig's sinks, the far ends' receivers (P4MESH_RATE_SINK). On veth
// a frame's receive work runs on the sender's CPU, the switch's, where on a
// real switch's port it is another machine's: the sink decides how much of
// it the switch's CPU time includes.
const (
	// sinkWire: the far ends' IP stacks receive the frames as their own
	// (the underlay's routes each VXLAN frame, fails and answers with an
	// ICMP error), and a PACKET_MMAP ring on each counts them.
	sinkWire = "wire"
	// sinkTap: the frames are not for the far ends' addresses, so their
	// stacks drop them at the first check; the rings count them.
	sinkTap = "tap"
	// sinkXDP: an XDP program in the far end's veth driver counts the
	// frames and drops them before any socket buffer is built for the
	// stack (xdpprog.Sink); sinkXDPGeneric is the same program run on the
	// socket buffer.
	sinkXDP        = "xdp"
	sinkXDPGeneric = "xdp-generic"
)

// rateSink is P4MESH_RATE_SINK, wire by default.
func rateSink(tb testing.TB) string {
	switch s := os.Getenv("P4MESH_RATE_SINK"); s {
	case "":
		return sinkWire
	case sinkWire, sinkTap, sinkXDP, sinkXDPGeneric:
		return s
	default:
		tb.Fatalf("P4MESH_RATE_SINK=%q: want %s, %s, %s or %s", s, sinkWire, sinkTap, sinkXDP, sinkXDPGeneric)
		return ""
	}
}

func newRateRig(tb testing.TB, mode, sink string) *rateRig {
	tb.Helper()
	topo.RequireRoot(tb)
	vmNS, netNS, swNS := topo.NewNetns(tb, "rvm"), topo.NewNetns(tb, "rnet"), topo.NewNetns(tb, "rsw")
	vmMAC, routerMAC := rateVMMAC, rateRouter
	if sink == sinkTap {
		// The far ends' own addresses differ from the frames' destination,
		// so their IP stacks drop what the switch sends at the first check
		// (not for this host) instead of routing it, failing and
		// answering with an ICMP error: on veth that receive work runs on
		// the sender's CPU, the switch's, and in production it is the
		// receiving host's. The counters' rings still see every frame.
		vmMAC, routerMAC = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 0x99}, net.HardwareAddr{0x02, 0, 0, 0, 0xff, 0x99}
	}
	vmEnd, _ := topo.Veth(tb, topo.End{NS: vmNS, Name: "eth0", MAC: vmMAC}, topo.End{NS: swNS, Name: "p1"}, topo.VethOptions{})
	netEnd, _ := topo.Veth(tb, topo.End{NS: netNS, Name: "eth0", MAC: routerMAC}, topo.End{NS: swNS, Name: "p2"}, topo.VethOptions{})
	r := &rateRig{}
	ports := map[uint16]dataplane.Port{}
	var bmv2Config []byte
	if mode == modeBMv2 {
		bmv2Config = bmv2JSON(tb)
	}
	for i, name := range []string{"p1", "p2"} {
		if mode == modeBMv2 {
			break
		}
		p, ring := openSwitchPort(tb, mode, swNS.Name, name)
		ports[uint16(i+1)] = p
		if x, ok := p.(*xsk.Port); ok {
			r.xsks = append(r.xsks, x)
		}
		if ring != nil {
			r.rings = append(r.rings, ring)
		}
	}
	var err error
	if r.vm, err = afpacket.OpenRingNetns(vmNS.Name, "eth0", afpacket.RingOptions{}); err != nil {
		tb.Fatal(err)
	}
	if r.net, err = afpacket.OpenRingNetns(netNS.Name, "eth0", afpacket.RingOptions{}); err != nil {
		tb.Fatal(err)
	}
	r.counted = map[*afpacket.Ring]*atomic.Uint64{r.vm: {}, r.net: {}}
	if sink == sinkXDP || sink == sinkXDPGeneric {
		mode := xdpprog.Native
		if sink == sinkXDPGeneric {
			mode = xdpprog.Generic
		}
		r.sinks = map[*afpacket.Ring]*xdpprog.Sink{}
		for ring, end := range map[*afpacket.Ring]*topo.Link{r.vm: vmEnd, r.net: netEnd} {
			var s *xdpprog.Sink
			if err := end.NS.Do(func() (err error) { s, err = xdpprog.NewSink(end.Index, mode); return err }); err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(func() { s.Close() })
			r.sinks[ring] = s
		}
	}
	counters := make(chan struct{}, 2)
	for _, ring := range []*afpacket.Ring{r.vm, r.net} {
		go func() { r.count(ring); counters <- struct{}{} }()
	}
	tb.Cleanup(func() { r.vm.Close(); r.net.Close(); <-counters; <-counters })

	info, err := p4.P4Info()
	if err != nil {
		tb.Fatal(err)
	}
	if mode != modeBMv2 {
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		sw, err := dataplane.NewSwitch(dataplane.SwitchOptions{Server: dataplane.Options{DeviceID: 1, P4Info: info, Logger: log}, Ports: ports})
		if err != nil {
			tb.Fatal(err)
		}
		r.sw = sw
		if err := sw.Server().Commit(&p4v1.ForwardingPipelineConfig{P4Info: info}); err != nil {
			tb.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { sw.Run(ctx); close(done) }()
		tb.Cleanup(func() { cancel(); <-done })
	}

	s, err := p4rt.NewSchema(info)
	if err != nil {
		tb.Fatal(err)
	}
	var ups []*p4v1.Update
	add := func(typ p4v1.Update_Type, msg any, err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		u, err := p4rt.Update(typ, msg)
		if err != nil {
			tb.Fatal(err)
		}
		ups = append(ups, u)
	}
	entry := func(table string, a p4rt.ActionCall, ms ...p4rt.Match) {
		te, err := s.TableEntry(p4rt.Entry{Table: table, Match: ms, Action: &a})
		add(p4v1.Update_INSERT, te, err)
	}
	U := func(v uint64) p4rt.Uint { return p4rt.Uint(v) }
	IP := func(a netip.Addr) p4rt.IP { return p4rt.IP(a) }
	MAC := func(m net.HardwareAddr) p4rt.MAC { return p4rt.MAC(m) }
	def, err := s.DefaultEntry("local_host", p4rt.Call("set_local_host", p4rt.P("host_ip", IP(rateHostIP)), p4rt.P("host_mac", MAC(rateHostMAC))))
	add(p4v1.Update_MODIFY, def, err)
	entry("port_vnet", p4rt.Call("set_vnet", p4rt.P("vni", U(rateVNI)), p4rt.P("vm_mac", MAC(rateVMMAC))), p4rt.Exact("ingress_port", U(1)))
	entry("vm_source_guard", p4rt.Call("permit"), p4rt.Exact("vni", U(rateVNI)), p4rt.Exact("ingress_port", U(1)),
		p4rt.Exact("src_ip", IP(rateVMIP)), p4rt.Exact("src_mac", MAC(rateVMMAC)))
	// Encap: the VM to a VM of its VPC on host B, out of the underlay.
	entry("vnet_destination", p4rt.Call("encap_to_host", p4rt.P("dst_vni", U(rateVNI)), p4rt.P("host_ip", IP(rateHostB)), p4rt.P("dmac", MAC(rateRouter))),
		p4rt.Exact("vni", U(rateVNI)), p4rt.Exact("dst_ip", IP(rateRemoteIP)))
	entry("underlay_nexthop", p4rt.Call("set_underlay", p4rt.P("port", U(2)), p4rt.P("smac", MAC(rateHostMAC)), p4rt.P("dmac", MAC(rateRouter))),
		p4rt.Prefix("dst_ip", netip.MustParsePrefix("192.168.0.0/16")))
	// Decap: VXLAN from host B to the VM.
	entry("tunnel_term", p4rt.Call("decap"), p4rt.Exact("dst_ip", IP(rateHostIP)), p4rt.Exact("vni", U(rateVNI)))
	entry("vnet_source_check", p4rt.Call("permit"), p4rt.Exact("vni", U(rateVNI)), p4rt.Prefix("src_ip", netip.MustParsePrefix("10.1.0.0/16")))
	entry("vnet_destination", p4rt.Call("to_local_vm", p4rt.P("port", U(1)), p4rt.P("dmac", MAC(rateVMMAC))),
		p4rt.Exact("vni", U(rateVNI)), p4rt.Exact("dst_ip", IP(rateVMIP)))
	if mode == modeBMv2 {
		r.bmv2 = startBMv2(tb, swNS, map[int]string{1: "p1", 2: "p2"})
		r.bmv2.program(tb, bmv2Config, ups)
		return r
	}
	if _, err := r.sw.Server().Write(context.Background(), &p4v1.WriteRequest{DeviceId: 1, Updates: ups}); err != nil {
		tb.Fatal(err)
	}
	return r
}

// switchRx is how many frames the switch's port read, 0 if not known
// (BMv2's are not counted).
func (r *rateRig) switchRx(port uint16) uint64 {
	if r.sw == nil {
		return 0
	}
	return r.sw.PortStats(port).RxPackets.Load()
}

// ipv4UDP is an IPv4/UDP packet (header checksum computed, UDP checksum 0)
// with payload bytes of zeros.
func ipv4UDP(src, dst netip.Addr, sport, dport uint16, payload int) []byte {
	b := make([]byte, 28+payload)
	b[0], b[8], b[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(b[20:], sport)
	binary.BigEndian.PutUint16(b[22:], dport)
	binary.BigEndian.PutUint16(b[24:], uint16(8+payload))
	return b
}

func ether(dst, src net.HardwareAddr, pkt []byte) []byte {
	return append(append(append(append([]byte{}, dst...), src...), 0x08, 0x00), pkt...)
}

// vmFrame is the VM's frame of size bytes (without FCS) to dst.
func vmFrame(size int, src, dst netip.Addr) []byte {
	return ether(rateHostMAC, rateVMMAC, ipv4UDP(src, dst, 40000, 5000, size-14-28))
}

// rateFrames are the frames the generator sends for a path and VM frame
// size, the side they go in on, the side they leave on and their length
// there.
func rateFrames(r *rateRig, path string, size int) (in, out *afpacket.Ring, frames [][]byte, outLen int) {
	switch path {
	case "encap":
		f := vmFrame(size, rateVMIP, rateRemoteIP)
		return r.vm, r.net, [][]byte{f}, size + dataplane.Overhead
	case "decap":
		inner := vmFrame(size, netip.MustParseAddr("10.1.0.10"), rateVMIP)
		vx := make([]byte, 8+len(inner))
		vx[0] = 0x08
		vx[4], vx[5], vx[6] = rateVNI>>16, rateVNI>>8&0xff, rateVNI&0xff
		copy(vx[8:], inner)
		outer := ipv4UDP(rateHostB, rateHostIP, 50000, 4789, len(vx))
		copy(outer[28:], vx)
		return r.net, r.vm, [][]byte{ether(rateHostMAC, rateRouter, outer)}, size
	}
	panic(path)
}

// trial is one run of the generator at rate pps (0: as fast as it can).
type trial struct {
	sent, received uint64
	seconds        float64
	switchRx       uint64 // frames the switch's input port read
	ringDrops      uint64 // frames the kernel dropped at the switch's input ring
}

func (t trial) lossPct() float64 {
	if t.sent == 0 {
		return 0
	}
	return 100 * float64(t.sent-min(t.sent, t.received)) / float64(t.sent)
}

// runTrial offers frame into in at pps (0: as fast as the generator can)
// for d and counts the frames of length outLen that leave out.
func runTrial(tb testing.TB, r *rateRig, in, out *afpacket.Ring, frame []byte, outLen int, pps float64, d time.Duration) trial {
	tb.Helper()
	r.setWant(tb, outLen)
	inPort := uint16(1)
	if in == r.net {
		inPort = 2
	}
	rx0, got0 := r.switchRx(inPort), r.received(tb, out)
	for _, ring := range r.rings {
		ring.Drops() // PACKET_STATISTICS resets on read
	}
	var xdrops0 uint64
	if len(r.xsks) == 2 {
		xdrops0 = r.xsks[inPort-1].KernelStats().RxDropped
	}
	const burst = 32
	batch := make([][]byte, burst)
	for i := range batch {
		batch[i] = frame
	}
	var sent uint64
	start := time.Now()
	for {
		el := time.Since(start)
		if el >= d {
			break
		}
		n := burst
		if pps > 0 {
			due := uint64(pps*el.Seconds()) + 1
			if due <= sent {
				time.Sleep(50 * time.Microsecond)
				continue
			}
			n = int(min(due-sent, burst))
		}
		if _, err := in.WriteBatch(batch[:n]); err != nil {
			tb.Fatal(err)
		}
		sent += uint64(n)
	}
	el := time.Since(start)
	// The switch and the counter drain what is in flight.
	time.Sleep(300 * time.Millisecond)
	t := trial{sent: sent, received: r.received(tb, out) - got0, seconds: el.Seconds(),
		switchRx: r.switchRx(inPort) - rx0}
	if len(r.rings) == 2 {
		t.ringDrops, _ = r.rings[inPort-1].Drops()
	}
	if len(r.xsks) == 2 {
		t.ringDrops = r.xsks[inPort-1].KernelStats().RxDropped - xdrops0
	}
	return t
}

// rateSeconds is how long one trial lasts: P4MESH_RATE_SECONDS, or 2.
func rateSeconds() time.Duration {
	if s, err := strconv.ParseFloat(os.Getenv("P4MESH_RATE_SECONDS"), 64); err == nil && s > 0 {
		return time.Duration(s * float64(time.Second))
	}
	return 2 * time.Second
}

// BenchmarkVethRate measures p4mesh-switch forwarding between veths in each
// port mode (afpacket and mmap; P4MESH_RATE_MODES=xdp,mmap picks others), path (encap: VM → VXLAN; decap: VXLAN → VM) and VM frame size
// (the decap input is 50 bytes longer): the saturation rate (frames
// forwarded per second with the generator sending as fast as it can) and
// the lossless rate (the highest offered rate with no frame lost, by
// binary search over trials of P4MESH_RATE_SECONDS). One run takes about a
// dozen trials whatever b.N is: read the metrics, not ns/op. Generator,
// switch and counter run in this process on the same machine.
// P4MESH_RATE_MODES lists the port modes (afpacket and mmap by default;
// mmap-sendmmsg is mmap sending with sendmmsg, see openSwitchPort).
// P4MESH_RATE_SINK chooses the far ends' receivers (wire, tap, xdp,
// xdp-generic; see sinkWire and the others), which decides how much of the
// receiving side's work lands in the switch's CPU time.
func BenchmarkVethRate(b *testing.B) {
	modes := []string{"afpacket", "mmap"}
	if m := os.Getenv("P4MESH_RATE_MODES"); m != "" {
		modes = strings.Split(m, ",")
	}
	for _, mode := range modes {
		for _, path := range []string{"encap", "decap"} {
			for _, size := range []int{64, 1400} {
				b.Run(fmt.Sprintf("mode=%s/path=%s/size=%d", mode, path, size), func(b *testing.B) {
					benchRate(b, mode, path, size)
				})
			}
		}
	}
}

func benchRate(b *testing.B, mode, path string, size int) {
	r := newRateRig(b, mode, rateSink(b))
	in, out, frames, outLen := rateFrames(r, path, size)
	d := rateSeconds()
	// A short warm-up: first frames fault pages in and grow buffers.
	runTrial(b, r, in, out, frames[0], outLen, 0, d/10)
	b.ResetTimer()
	inPort := uint16(1)
	if in == r.net {
		inPort = 2
	}
	// The switch's CPU: its input port's receive thread (which reads,
	// runs the pipeline and sends), or BMv2's whole process.
	swTime := func() time.Duration { return 0 }
	switch {
	case r.bmv2 != nil:
		swTime = func() time.Duration { return r.bmv2.cpu(b) }
	case r.sw.PortStats(inPort).Thread.Load() != 0:
		tid := r.sw.PortStats(inPort).Thread.Load()
		swTime = func() time.Duration { return threadCPU(b, tid) }
	}
	cpu0, sw0 := cpuTime(), swTime()
	sat := runTrial(b, r, in, out, frames[0], outLen, 0, d)
	satCPU, swCPU := cpuTime()-cpu0, swTime()-sw0
	satPPS := float64(sat.received) / sat.seconds
	b.Logf("sink %s", rateSink(b))
	b.Logf("%s %s %dB saturation: offered %.0f/s, forwarded %.0f/s (%.1f%% lost; switch read %d of %d, its ring dropped %d)",
		mode, path, size, float64(sat.sent)/sat.seconds, satPPS, sat.lossPct(), sat.switchRx, sat.sent, sat.ringDrops)
	// Lossless: binary search between 0 and what the generator offered.
	// P4MESH_RATE_LOSSLESS=off skips it, for comparing CPU per frame.
	lo, hi := 0.0, float64(sat.sent)/sat.seconds
	for i := 0; i < 7 && hi-lo > 0.02*hi && os.Getenv("P4MESH_RATE_LOSSLESS") != "off"; i++ {
		mid := (lo + hi) / 2
		t := runTrial(b, r, in, out, frames[0], outLen, mid, d)
		ok := t.received >= t.sent
		verdict := "loss"
		if ok {
			verdict = "lossless"
			lo = mid
		} else {
			hi = mid
		}
		b.Logf("  offered %.0f/s: sent %d received %d (%.2f%% lost; switch read %d, its ring dropped %d): %s",
			mid, t.sent, t.received, t.lossPct(), t.switchRx, t.ringDrops, verdict)
	}
	b.StopTimer()
	b.ReportMetric(satPPS, "sat-pps")
	b.ReportMetric(lo, "lossless-pps")
	// The CPU time of the whole process (generator, switch and counter,
	// in user space and in the kernel: a veth transmit runs in its
	// sender's context) per frame forwarded at saturation, the trial's
	// 300 ms drain included: what stays comparable at any load.
	if sat.received > 0 {
		b.ReportMetric(float64(satCPU.Nanoseconds())/float64(sat.received), "cpu-ns/frame")
		// The switch's share: its input port's receive thread, which
		// reads, runs the pipeline and sends (the veth transmit to the
		// counter's ring included); BMv2's whole process, per frame
		// forwarded (it counts no frames read here).
		switch {
		case r.bmv2 != nil:
			b.ReportMetric(float64(swCPU.Nanoseconds())/float64(sat.received), "switch-cpu-ns/frame")
		case swCPU > 0 && sat.switchRx > 0:
			b.ReportMetric(float64(swCPU.Nanoseconds())/float64(sat.switchRx), "switch-cpu-ns/frame")
		}
	}
	b.ReportMetric(0, "ns/op")
}

// TestRingPathNoAllocations: frames through mmap ring ports (the switch's
// receive ring, the pipeline, its TX ring or its sendmmsg batches), on the
// encap and the decap path, allocate nothing in steady state: the
// generator's and the counter's rings, in this process too, included.
func TestRingPathNoAllocations(t *testing.T) {
	for _, mode := range []string{"mmap", "mmap-sendmmsg"} {
		t.Run(mode, func(t *testing.T) { testPathNoAllocations(t, mode) })
	}
}

// TestXDPPathNoAllocations is TestRingPathNoAllocations with AF_XDP switch
// ports: the receive ring handed to the pipeline, the TX ring's batches and
// the reclaimed completions.
func TestXDPPathNoAllocations(t *testing.T) { testPathNoAllocations(t, "xdp") }

func testPathNoAllocations(t *testing.T, mode string) {
	r := newRateRig(t, mode, sinkWire)
	for _, path := range []string{"encap", "decap"} {
		t.Run(path, func(t *testing.T) {
			in, out, frames, outLen := rateFrames(r, path, 64)
			r.want.Store(int64(outLen))
			const burst = 32
			batch := make([][]byte, burst)
			for i := range batch {
				batch[i] = frames[0]
			}
			lost := 0
			run := func() {
				want := r.counted[out].Load() + burst
				if _, err := in.WriteBatch(batch); err != nil {
					t.Fatal(err)
				}
				// A TPACKET_V3 block is handed over within its 1 ms
				// timeout; a frame lost on the loaded machine only
				// ends the wait.
				for deadline := time.Now().Add(time.Second); r.counted[out].Load() < want; {
					if time.Now().After(deadline) {
						lost++
						return
					}
					time.Sleep(100 * time.Microsecond)
				}
			}
			for range 5 {
				run()
			}
			if a := testing.AllocsPerRun(50, run); a != 0 {
				t.Fatalf("%v allocations per burst of %d frames, want 0", a, burst)
			}
			if lost > 5 {
				t.Fatalf("%d of 55 bursts did not all arrive", lost)
			}
		})
	}
}

// TestXDPSinkAgreesWithRing: at a low rate, where nothing is lost, the
// XDP sink's count of the frames the switch forwards equals the count of
// the PACKET_MMAP ring on the same far end (the sink passing the frames on
// for the test) and the frames sent, on both paths; then, dropping, the
// sink still counts every frame and the ring sees none. The benchmark's
// xdp numbers rest on this.
func TestXDPSinkAgreesWithRing(t *testing.T) {
	r := newRateRig(t, "mmap", sinkXDP)
	for _, s := range r.sinks {
		if err := s.SetPass(true); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{"encap", "decap"} {
		t.Run(path, func(t *testing.T) {
			in, out, frames, outLen := rateFrames(r, path, 64)
			ring0 := r.counted[out].Load()
			tr := runTrial(t, r, in, out, frames[0], outLen, 5000, 200*time.Millisecond)
			ring := r.counted[out].Load() - ring0
			if tr.received != ring {
				t.Errorf("passing: XDP sink counted %d frames, the ring %d (sent %d)", tr.received, ring, tr.sent)
			}
			// A frame lost on a loaded machine is no disagreement, but
			// the counters must have seen the trial.
			if tr.received < tr.sent*9/10 {
				t.Errorf("passing: %d of %d frames arrived", tr.received, tr.sent)
			}
			if err := r.sinks[out].SetPass(false); err != nil {
				t.Fatal(err)
			}
			defer r.sinks[out].SetPass(true)
			ring0 = r.counted[out].Load()
			tr = runTrial(t, r, in, out, frames[0], outLen, 5000, 200*time.Millisecond)
			if ring := r.counted[out].Load() - ring0; ring != 0 {
				t.Errorf("dropping: the ring read %d frames", ring)
			}
			if tr.received < tr.sent*9/10 || tr.received > tr.sent {
				t.Errorf("dropping: XDP sink counted %d frames of %d sent", tr.received, tr.sent)
			}
		})
	}
}

// threadCPU is the time thread tid of this process has run, from its
// schedstat; 0 for tid 0.
func threadCPU(tb testing.TB, tid int64) time.Duration {
	if tid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/schedstat", tid))
	if err != nil {
		tb.Fatal(err)
	}
	ns, err := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
	if err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ns)
}
