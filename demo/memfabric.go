package demo

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p4mesh/p4mesh/dataplane"
)

// MemFabric is the demo's network without root: in-memory switch ports, an
// underlay that floods every uplink frame to the other hosts' uplinks (a
// hub: a switch only takes tunnels addressed to it), and for each VM a
// minimal IPv4 stack that answers echo requests, so a ping is real ICMP
// through the real pipelines and underlay, only without a kernel.
type MemFabric struct {
	topo   *Topology
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards the fields below.
	mu      sync.Mutex
	uplinks map[string]*dataplane.MemPort
	vmPorts map[string]*dataplane.MemPort // by VM id
	replies map[string]chan echoReply     // echo replies by VM id
	// ends are the switch ends of the ports above, by port: the latest
	// switch's, which the port's frames go to.
	ends map[*dataplane.MemPort]*switchEnd

	// pingID numbers the pings, so one never counts a late reply to
	// another.
	pingID atomic.Uint32
}

// echoReply is an echo reply a VM received, and when.
type echoReply struct {
	id, seq uint16
	at      time.Time
}

// switchEnd is a switch's end of a fabric port. The port is the wire and
// outlives the switch: a switch that stops closes only its end, and a
// restarted one is given a new end of the same wire. Frames that arrive
// while no switch has the wire are lost, as on a real one.
type switchEnd struct {
	wire *dataplane.MemPort
	in   chan []byte
	once sync.Once
	done chan struct{}
}

func (e *switchEnd) ReadPacket(buf []byte) (int, error) {
	select {
	case f := <-e.in:
		return copy(buf, f), nil
	case <-e.done:
		return 0, dataplane.ErrPortClosed
	}
}

func (e *switchEnd) WritePacket(b []byte) error {
	select {
	case <-e.done:
		return dataplane.ErrPortClosed
	default:
		return e.wire.WritePacket(b)
	}
}

func (e *switchEnd) Close() error {
	e.once.Do(func() { close(e.done) })
	return nil
}

// carry hands the frames sent into wire to its switch end.
func (f *MemFabric) carry(wire *dataplane.MemPort) {
	buf := make([]byte, 65536)
	for {
		n, err := wire.ReadPacket(buf)
		if err != nil {
			return // the fabric closed
		}
		f.mu.Lock()
		e := f.ends[wire]
		f.mu.Unlock()
		if e == nil {
			continue
		}
		select {
		case e.in <- append([]byte(nil), buf[:n]...):
		case <-e.done:
		case <-f.ctx.Done():
			return
		}
	}
}

// NewMemFabric makes the in-memory fabric for t.
func NewMemFabric(t *Topology) *MemFabric {
	ctx, cancel := context.WithCancel(context.Background())
	f := &MemFabric{topo: t, ctx: ctx, cancel: cancel, uplinks: map[string]*dataplane.MemPort{},
		vmPorts: map[string]*dataplane.MemPort{}, replies: map[string]chan echoReply{}, ends: map[*dataplane.MemPort]*switchEnd{}}
	for _, h := range t.Hosts {
		f.uplinks[h.ID] = dataplane.NewMemPort(1024)
	}
	for _, v := range t.VMs {
		f.vmPorts[v.ID] = dataplane.NewMemPort(1024)
		f.replies[v.ID] = make(chan echoReply, 256)
	}
	// A router's cable is a port like a VM's (by the router's id).
	for _, r := range t.Routers {
		f.vmPorts[r.ID] = dataplane.NewMemPort(1024)
	}
	for id, up := range f.uplinks {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.flood(id, up)
		}()
	}
	for _, v := range t.VMs {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.vmStack(v)
		}()
	}
	for _, r := range t.Routers {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.routerStack(r)
		}()
	}
	for _, wire := range append(slices.Collect(maps.Values(f.uplinks)), slices.Collect(maps.Values(f.vmPorts))...) {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.carry(wire)
		}()
	}
	return f
}

// Name implements Fabric.
func (f *MemFabric) Name() string { return "in-memory ports (no namespaces, no kernel)" }

// Ports implements Fabric. Each call gives new ends of host's wires, which
// the ends of an earlier call no longer receive from.
func (f *MemFabric) Ports(host string) (map[uint16]dataplane.Port, error) {
	up, ok := f.uplinks[host]
	if !ok {
		return nil, fmt.Errorf("no host %s", host)
	}
	wires := map[uint16]*dataplane.MemPort{uplink: up}
	for _, v := range f.topo.VMs {
		if v.Host == host {
			wires[v.Port] = f.vmPorts[v.ID]
		}
	}
	for _, r := range f.topo.Routers {
		if r.Host == host {
			wires[r.Port] = f.vmPorts[r.ID]
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ports := map[uint16]dataplane.Port{}
	for n, w := range wires {
		e := &switchEnd{wire: w, in: make(chan []byte, 1024), done: make(chan struct{})}
		if old := f.ends[w]; old != nil {
			old.Close()
		}
		f.ends[w] = e
		ports[n] = e
	}
	return ports, nil
}

func (f *MemFabric) flood(from string, up *dataplane.MemPort) {
	for {
		select {
		case <-f.ctx.Done():
			return
		case frame := <-up.Output():
			for id, other := range f.uplinks {
				if id != from {
					other.Inject(frame)
				}
			}
		}
	}
}

// vmStack answers echo requests to the VM and hands echo replies to Ping.
func (f *MemFabric) vmStack(v VM) {
	port := f.vmPorts[v.ID]
	for {
		var frame []byte
		select {
		case <-f.ctx.Done():
			return
		case frame = <-port.Output():
		}
		icmpType, src, dst, id, seq, ok := parseEcho(frame)
		if !ok || dst != v.IP {
			continue
		}
		switch icmpType {
		case 8:
			port.Inject(echoFrame(v.GatewayMAC, v.MAC, v.IP, src, 0, id, seq, 64))
		case 0:
			select {
			case f.replies[v.ID] <- echoReply{id: id, seq: seq, at: time.Now()}:
			default:
			}
		}
	}
}

// routerStack answers echo requests to the addresses behind an on-prem
// router, sending the replies to the attachment (the router's next hop
// into the VPC).
func (f *MemFabric) routerStack(r Router) {
	port := f.vmPorts[r.ID]
	for {
		var frame []byte
		select {
		case <-f.ctx.Done():
			return
		case frame = <-port.Output():
		}
		icmpType, src, dst, id, seq, ok := parseEcho(frame)
		if !ok || icmpType != 8 || !slices.ContainsFunc(r.Behind, func(p netip.Prefix) bool { return p.Contains(dst) }) {
			continue
		}
		port.Inject(echoFrame(r.AttachmentMAC, r.MAC, dst, src, 0, id, seq, 64))
	}
}

// Ping implements Fabric.
func (f *MemFabric) Ping(ctx context.Context, vm VM, dst netip.Addr, count int, timeout time.Duration) (int, error) {
	port, ok := f.vmPorts[vm.ID]
	if !ok {
		return 0, fmt.Errorf("no VM %s", vm.ID)
	}
	replies := f.replies[vm.ID]
	id := uint16(f.pingID.Add(1))
	got := 0
	for seq := uint16(1); seq <= uint16(count); seq++ {
		port.Inject(echoFrame(vm.GatewayMAC, vm.MAC, vm.IP, dst, 8, id, seq, 64))
		t := time.NewTimer(timeout)
	wait:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return got, ctx.Err()
			case <-t.C:
				break wait
			case r := <-replies:
				if r.id == id && r.seq == seq {
					got++
					t.Stop()
					break wait
				}
			}
		}
	}
	return got, nil
}

// PingEvery implements Fabric: the requests leave every interval whether
// or not the replies have come, as `ping -i` sends them.
func (f *MemFabric) PingEvery(ctx context.Context, vm VM, dst netip.Addr, count int, interval, timeout time.Duration) (PingRun, error) {
	port, ok := f.vmPorts[vm.ID]
	if !ok {
		return PingRun{}, fmt.Errorf("no VM %s", vm.ID)
	}
	replies := f.replies[vm.ID]
	id := uint16(f.pingID.Add(1))
	sent := make([]time.Time, count+1) // by sequence number, from 1
	rtt := make([]time.Duration, count+1)
	run := PingRun{Interval: interval}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last <-chan time.Time // after the last request: the wait for its reply
	send := func() {
		run.Sent++
		sent[run.Sent] = time.Now()
		port.Inject(echoFrame(vm.GatewayMAC, vm.MAC, vm.IP, dst, 8, id, uint16(run.Sent), 64))
		if run.Sent == count {
			tick.Stop()
			last = time.After(timeout)
		}
	}
	send()
	for run.Received < count {
		select {
		case <-ctx.Done():
			run.finish(rtt)
			return run, ctx.Err()
		case <-tick.C:
			send()
		case <-last:
			run.finish(rtt)
			return run, nil
		case r := <-replies:
			seq := int(r.seq)
			if r.id != id || seq < 1 || seq > run.Sent || rtt[seq] != 0 {
				continue
			}
			if d := r.at.Sub(sent[seq]); d <= timeout {
				rtt[seq] = max(d, time.Nanosecond)
				run.Received++
			}
		}
	}
	run.finish(rtt)
	return run, nil
}

// Close implements Fabric.
func (f *MemFabric) Close() error {
	f.cancel()
	for _, w := range f.uplinks {
		w.Close()
	}
	for _, w := range f.vmPorts {
		w.Close()
	}
	f.wg.Wait()
	return nil
}

// echoFrame builds an ICMP echo (type 8) or echo reply (0) in an Ethernet
// frame, with both checksums.
func echoFrame(dstMAC, srcMAC []byte, src, dst netip.Addr, icmpType byte, id, seq uint16, ttl byte) []byte {
	payload := []byte("p4mesh demo ping")
	b := make([]byte, 14+20+8+len(payload))
	copy(b[0:6], dstMAC)
	copy(b[6:12], srcMAC)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:34]
	ip[0], ip[8], ip[9] = 0x45, ttl, 1
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	icmp := b[34:]
	icmp[0] = icmpType
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], seq)
	copy(icmp[8:], payload)
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	return b
}

// parseEcho reads an ICMP echo or echo reply out of an Ethernet frame.
func parseEcho(b []byte) (icmpType byte, src, dst netip.Addr, id, seq uint16, ok bool) {
	if len(b) < 14+20+8 || binary.BigEndian.Uint16(b[12:]) != 0x0800 || b[14] != 0x45 || b[23] != 1 {
		return 0, src, dst, 0, 0, false
	}
	src = netip.AddrFrom4([4]byte(b[26:30]))
	dst = netip.AddrFrom4([4]byte(b[30:34]))
	icmp := b[34:]
	return icmp[0], src, dst, binary.BigEndian.Uint16(icmp[4:]), binary.BigEndian.Uint16(icmp[6:]), icmp[0] == 0 || icmp[0] == 8
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
