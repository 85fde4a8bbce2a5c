package ohc_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/dataplane"
)

// TestProgrammerRoutes programs routeView (an attachment on port 5, an
// ECMP group over hosts B and C) into a real p4mesh-switch and sends
// packets through it: a VM's packet and a tunnelled one leave the
// attachment's port to the on-prem router's MAC, the router's replies come
// back in from the on-prem prefix only, ECMP flows are spread over
// both hosts, an OHC restart rewrites nothing (the group ids are derived
// from content), and the group is deleted after the routes that use it.
func TestProgrammerRoutes(t *testing.T) {
	s := schema(t)
	ts := startSwitch(t, "127.0.0.1:0")
	o := startOHC(t, ts.addr, 1)
	v := routeView()
	o.converge(t, v)
	waitLines(t, s, o.c, wantLines(t, s, v))

	recv := func(p *dataplane.MemPort, what string) []byte {
		t.Helper()
		select {
		case f := <-p.Output():
			return f
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no frame (switch dropped %d)", what, ts.sw.Dropped.Load())
			return nil
		}
	}
	checkRouted := func(out, in []byte, ttl byte) {
		t.Helper()
		if !bytes.Equal(out[:6], mac(routerMAC)) || !bytes.Equal(out[6:12], in[6:12]) {
			t.Errorf("MACs %x -> %x, want from the sender %x to the router %s", out[6:12], out[:6], in[6:12], routerMAC)
		}
		if out[14+8] != ttl {
			t.Errorf("TTL %d, want %d", out[14+8], ttl)
		}
		if !bytes.Equal(out[14+12:14+20], in[14+12:14+20]) || !bytes.Equal(out[14+20:], in[14+20:]) {
			t.Errorf("packet changed beyond MAC and TTL:\n got %x\n  in %x", out, in)
		}
	}

	// From red-vm1 to an on-prem address behind this host's attachment.
	in := udpFrame("172.20.1.1")
	ts.vm1.Inject(in)
	checkRouted(recv(ts.att, "VM to on-prem"), in, 63)

	// From red's VM on host B, tunnelled here by B's route: decapsulated and
	// routed out of the attachment, TTL as B left it.
	inner := udpFrameFrom(redRemMAC, "10.1.0.9", "172.20.7.7")
	inner[14+8] = 63 // B routed it once
	fixChecksum(inner[14:34])
	ts.uplink.Inject(vxlanFrame(hostB, hostA, 100, inner))
	checkRouted(recv(ts.att, "tunnel to on-prem"), inner, 63)

	// The reply: the router sends from the on-prem address out of the
	// attachment's port; it reaches red-vm1 here, and red's VM on host B
	// through a tunnel.
	reply := udpFrameFrom(routerMAC, "172.20.1.1", "10.1.0.2")
	ts.att.Inject(reply)
	if out := recv(ts.vm1, "on-prem to a VM here"); !bytes.Equal(out[:6], mac(redVM1MAC)) || out[14+8] != 63 {
		t.Errorf("reply to red-vm1: %x, want to its MAC with TTL 63", out)
	}
	ts.att.Inject(udpFrameFrom(routerMAC, "172.20.1.1", "10.1.0.9"))
	if out := recv(ts.uplink, "on-prem to a VM on host B"); netip.AddrFrom4([4]byte(out[14+16:14+20])) != ip(hostB) {
		t.Errorf("reply to host B's VM tunnelled to %v, want %s", netip.AddrFrom4([4]byte(out[14+16:14+20])), hostB)
	}
	// Not from a source that is not routed out of the attachment.
	ts.att.Inject(udpFrameFrom(routerMAC, "172.99.1.1", "10.1.0.2"))
	select {
	case out := <-ts.vm1.Output():
		t.Errorf("a source not routed out of the attachment was forwarded: %x", out)
	case <-time.After(100 * time.Millisecond):
	}

	// ECMP over hosts B and C: each flow goes to one of them, and the
	// flows use both.
	seen := map[netip.Addr]int{}
	for i := range 16 {
		ts.vm1.Inject(udpFrame(fmt.Sprintf("172.30.%d.1", i)))
		out := recv(ts.uplink, "ECMP flow")
		dst := netip.AddrFrom4([4]byte(out[14+16 : 14+20]))
		if dst != ip(hostB) && dst != ip(hostC) {
			t.Fatalf("ECMP flow %d tunnelled to %v, want host B or C", i, dst)
		}
		seen[dst]++
	}
	if len(seen) != 2 {
		t.Errorf("16 flows went to %v: want both next hops used", seen)
	}

	// The OHC restarts: same ids, nothing to write.
	o.stop()
	writes := ts.sw.Server().Stats().Writes
	o2 := startOHC(t, ts.addr, 2)
	o2.converge(t, v)
	if w := ts.sw.Server().Stats().Writes; w != writes {
		t.Errorf("restarted OHC sent %d Write RPCs, want none", w-writes)
	}

	// The ECMP routes go: route_ecmp entry, then group, then members. The
	// switch refuses to delete a group an entry still points at, so a wrong
	// order would not converge.
	v2 := routeView()
	v2.Routes = append(v2.Routes[:3], v2.Routes[5:]...)
	o2.converge(t, v2)
	waitLines(t, s, o2.c, wantLines(t, s, v2))
	c := o2.p.Stats().LastChanges
	if c["route_ecmp"].Deleted != 1 || c["route_selector"].Deleted != 3 || c["vnet_route"].Deleted != 2 {
		t.Errorf("last changes %+v: want 2 routes, the route_ecmp entry, 2 members and the group deleted", c)
	}
}

// vxlanFrame is inner tunnelled from host src to host dst with vni, as
// host B's switch sends it.
func vxlanFrame(src, dst string, vni uint32, inner []byte) []byte {
	f := append(append([]byte{}, mac(hostAMAC)...), mac(uplinkMAC)...)
	f = binary.BigEndian.AppendUint16(f, 0x0800)
	iph := []byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0}
	binary.BigEndian.PutUint16(iph[2:], uint16(20+8+8+len(inner)))
	iph = append(iph, ip(src).AsSlice()...)
	iph = append(iph, ip(dst).AsSlice()...)
	fixChecksum(iph)
	f = append(f, iph...)
	f = binary.BigEndian.AppendUint16(f, 50000)
	f = binary.BigEndian.AppendUint16(f, 4789)
	f = binary.BigEndian.AppendUint16(f, uint16(8+8+len(inner)))
	f = binary.BigEndian.AppendUint16(f, 0)
	f = append(f, 0x08, 0, 0, 0, byte(vni>>16), byte(vni>>8), byte(vni), 0)
	return append(f, inner...)
}

// fixChecksum recomputes an IPv4 header's checksum in place.
func fixChecksum(h []byte) {
	h[10], h[11] = 0, 0
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
}
