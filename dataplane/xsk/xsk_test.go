//go:build linux

package xsk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/dataplane/afpacket"
	"github.com/p4mesh/p4mesh/test/topo"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x1a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x1b}

	_ dataplane.Port           = (*Port)(nil)
	_ dataplane.BatchReader    = (*Port)(nil)
	_ dataplane.BatchWriter    = (*Port)(nil)
	_ dataplane.KernelCounters = (*Port)(nil)
)

// pair makes a veth pair in a fresh namespace, a PACKET_MMAP ring on "a"
// and an AF_XDP port on "b".
func pair(t *testing.T) (*afpacket.Ring, *Port) {
	t.Helper()
	topo.RequireRoot(t)
	ns := topo.NewNetns(t, "xsk")
	topo.Veth(t, topo.End{NS: ns, Name: "a", MAC: macA}, topo.End{NS: ns, Name: "b", MAC: macB}, topo.VethOptions{})
	a, err := afpacket.OpenRingNetns(ns.Name, "a", afpacket.RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	// 256 frames each way: the tests' batches wrap the rings.
	b, err := OpenNetns(ns.Name, "b", Options{Frames: 256})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	t.Logf("b: %s", b.Mode())
	return a, b
}

// numbered is a 64-byte frame of a local experimental ethertype carrying i,
// from a's MAC to another host's (the AF_XDP port must not depend on the
// destination MAC).
func numbered(i int) []byte {
	f := append(net.HardwareAddr{0x02, 0, 0, 0, 0, 0x77}, macA...)
	f = append(f, 0x88, 0xb5)
	f = binary.BigEndian.AppendUint32(f, uint32(i))
	for len(f) < 64 {
		f = append(f, byte(len(f)))
	}
	return f
}

// readN reads n frames with ReadBatch, up to 5s; it may run in a goroutine
// of its own (it fails with Errorf and returns what it read).
func readN(t *testing.T, r dataplane.BatchReader, n int) [][]byte {
	t.Helper()
	var got [][]byte
	done := make(chan error, 1)
	go func() {
		for len(got) < n {
			if err := r.ReadBatch(func(f []byte) { got = append(got, append([]byte(nil), f...)) }); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
		return got
	case <-time.After(5 * time.Second):
		t.Errorf("read fewer than %d frames in 5s", n)
		return nil // got is still the reader's
	}
}

// TestBatchesBothWays: 3000 frames sent into the AF_XDP port, 100 at a
// time (more than its 256 receive frames in all, so they must be given back
// to the fill ring), arrive whole and in order, and 3000 sent from it (more
// than its 256 send frames: completions must be reclaimed) arrive on the
// peer.
func TestBatchesBothWays(t *testing.T) {
	a, b := pair(t)
	const n, burst = 3000, 100
	var frames [][]byte
	for i := range n {
		frames = append(frames, numbered(i))
	}
	type end interface {
		dataplane.BatchReader
		dataplane.BatchWriter
	}
	for _, dir := range []struct {
		name     string
		from, to end
	}{{"into the AF_XDP port", a, b}, {"from the AF_XDP port", b, a}} {
		for i := 0; i < n; i += burst {
			if failed, err := dir.from.WriteBatch(frames[i : i+burst]); failed != 0 || err != nil {
				t.Fatalf("%s: WriteBatch: %d failed, %v", dir.name, failed, err)
			}
			got := readN(t, dir.to, burst)
			if len(got) != burst {
				t.Fatalf("%s: frames %d to %d: read %d", dir.name, i, i+burst-1, len(got))
			}
			for j, f := range got {
				if !bytes.Equal(f, frames[i+j]) {
					t.Fatalf("%s: frame %d: %x, want %x", dir.name, i+j, f, frames[i+j])
				}
			}
		}
	}
	if st := b.KernelStats(); st.RxDropped != 0 {
		t.Errorf("%d frames dropped by the kernel", st.RxDropped)
	}
}

// TestNoAllocations: a batch written to the AF_XDP port's peer and read
// from the port, and one written from the port, allocate nothing in steady
// state.
func TestNoAllocations(t *testing.T) {
	a, b := pair(t)
	batch := [][]byte{numbered(1), numbered(2), numbered(3), numbered(4)}
	seenA, seenB := 0, 0
	fnA := func([]byte) { seenA++ }
	fnB := func([]byte) { seenB++ }
	run := func() {
		if _, err := a.WriteBatch(batch); err != nil {
			t.Fatal(err)
		}
		for want := seenB + len(batch); seenB < want; {
			if err := b.ReadBatch(fnB); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := b.WriteBatch(batch); err != nil {
			t.Fatal(err)
		}
		for want := seenA + len(batch); seenA < want; {
			if err := a.ReadBatch(fnA); err != nil {
				t.Fatal(err)
			}
		}
	}
	run()
	if allocs := testing.AllocsPerRun(100, run); allocs != 0 {
		t.Fatalf("%v allocations per batch each way, want 0", allocs)
	}
}

// TestVLANTagKept: a tagged frame arrives on the AF_XDP port with its tag:
// the XDP program runs before the receive path strips it (what the
// afpacket ports restore from PACKET_AUXDATA).
func TestVLANTagKept(t *testing.T) {
	a, b := pair(t)
	frame := func(tags ...uint16) []byte {
		f := append(append([]byte{}, macB...), macA...)
		for _, x := range tags {
			f = binary.BigEndian.AppendUint16(f, x)
		}
		f = append(f, 0x88, 0xb5)
		f = append(f, "tagged payload"...)
		for len(f) < 64 {
			f = append(f, 0)
		}
		return f
	}
	buf := make([]byte, 2048)
	for i, want := range [][]byte{
		frame(0x8100, 0x2064),
		frame(0x8100, 0x0000),
		frame(0x88a8, 0x0123),
		frame(0x88a8, 0x0123, 0x8100, 0x0456),
		frame(),
	} {
		if err := a.WritePacket(want); err != nil {
			t.Fatal(err)
		}
		n, err := b.ReadPacket(buf)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], want) {
			t.Errorf("frame %d: read\n%x, want\n%x", i, buf[:n], want)
		}
	}
}

// TestCloseUnblocksReader: Close wakes a ReadBatch blocked on an empty
// ring, and calls after Close fail with ErrClosed.
func TestCloseUnblocksReader(t *testing.T) {
	_, b := pair(t)
	done := make(chan error, 1)
	go func() { done <- b.ReadBatch(func([]byte) {}) }()
	time.Sleep(50 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadBatch after Close = %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ReadBatch still blocked 2s after Close")
	}
	if _, err := b.WriteBatch([][]byte{numbered(0)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteBatch after Close = %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestDetachedOnClose: the XDP program is on the interface while the port
// is open and gone after Close.
func TestDetachedOnClose(t *testing.T) {
	topo.RequireRoot(t)
	ns := topo.NewNetns(t, "xskdet")
	topo.Veth(t, topo.End{NS: ns, Name: "a"}, topo.End{NS: ns, Name: "b"}, topo.VethOptions{})
	attached := func() bool {
		l, err := ns.Handle().LinkByName("b")
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached
	}
	b, err := OpenNetns(ns.Name, "b", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !attached() {
		t.Error("no XDP program on b while the port is open")
	}
	b.Close()
	if attached() {
		t.Error("an XDP program is still on b after Close")
	}
}

// TestWriteBatchSkipsRefused: a frame longer than the interface's MTU
// allows fails alone; the frames before and after it go.
func TestWriteBatchSkipsRefused(t *testing.T) {
	a, b := pair(t)
	big := append(numbered(1), make([]byte, 1500)...)
	failed, err := b.WriteBatch([][]byte{numbered(0), big, numbered(2), nil, numbered(3)})
	if failed != 2 || err == nil {
		t.Fatalf("WriteBatch = %d, %v; want 2 failed with an error", failed, err)
	}
	t.Log(err)
	got := readN(t, a, 3)
	if len(got) != 3 {
		t.FailNow()
	}
	for i, want := range [][]byte{numbered(0), numbered(2), numbered(3)} {
		if !bytes.Equal(got[i], want) {
			t.Errorf("frame %d: %x, want %x", i, got[i], want)
		}
	}
}

// TestMultiQueueRefused: on an interface with more than one receive queue
// Open fails and says why (the port binds queue 0 only).
func TestMultiQueueRefused(t *testing.T) {
	topo.RequireRoot(t)
	ns := topo.NewNetns(t, "xskmq")
	ns.Run(t, "ip", "link", "add", "name", "mqa", "numrxqueues", "2", "numtxqueues", "2", "type", "veth", "peer", "name", "mqb", "numrxqueues", "2", "numtxqueues", "2")
	ns.Run(t, "ip", "link", "set", "dev", "mqa", "up")
	ns.Run(t, "ip", "link", "set", "dev", "mqb", "up")
	p, err := OpenNetns(ns.Name, "mqb", Options{})
	if err == nil {
		p.Close()
		t.Fatal("Open on a 2-queue veth succeeded")
	}
	if !strings.Contains(err.Error(), "2 receive queues") {
		t.Fatalf("error %q does not say the interface has 2 receive queues", err)
	}
}

// TestVLANTagFromMetadata: a frame that crosses the veth with its 802.1Q
// tag in skb metadata (as a VLAN device over the peer sends it, with
// tx-vlan-offload on; here a tc program on the peer's egress pushes the tag
// the same way, since this kernel has no VLAN devices) arrives on the
// AF_XDP port tagged, as it would be on a wire.
func TestVLANTagFromMetadata(t *testing.T) {
	topo.RequireRoot(t)
	ns := topo.NewNetns(t, "xskvl")
	la, _ := topo.Veth(t, topo.End{NS: ns, Name: "a", MAC: macA}, topo.End{NS: ns, Name: "b", MAC: macB}, topo.VethOptions{})
	pusher, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "vlan_push", Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{
			// bpf_skb_vlan_push(skb, htons(0x8100), 0x2064): the tag
			// goes into skb metadata (veth offloads VLAN insertion).
			asm.Mov.Imm(asm.R2, int32(binary.NativeEndian.Uint16([]byte{0x81, 0x00}))),
			asm.Mov.Imm(asm.R3, 0x2064),
			asm.FnSkbVlanPush.Call(),
			asm.Mov.Imm(asm.R0, 0), // TCX_PASS
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pusher.Close()
	if err := ns.Do(func() error {
		l, err := link.AttachTCX(link.TCXOptions{Interface: la.Index, Program: pusher, Attach: ebpf.AttachTCXEgress})
		if err == nil {
			t.Cleanup(func() { l.Close() })
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	a, err := afpacket.OpenNetns(ns.Name, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenNetns(ns.Name, "b", Options{Frames: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	t.Logf("b: %s", b.Mode())
	sent := numbered(7)
	if err := a.WritePacket(sent); err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte{}, sent[:12]...), 0x81, 0x00, 0x20, 0x64), sent[12:]...)
	got := readN(t, b, 1)
	if len(got) == 1 && !bytes.Equal(got[0], want) {
		t.Fatalf("read\n%x, want the frame tagged\n%x", got[0], want)
	}
}

// TestPartialChecksumPeerRefused: on a veth whose peer has TX checksum
// offload on (its stack's checksums would arrive partial, which an XDP
// program cannot see), Open fails and says why; with it off on the peer,
// in another namespace as a VM's end is, Open succeeds.
func TestPartialChecksumPeerRefused(t *testing.T) {
	topo.RequireRoot(t)
	ns, peerNS := topo.NewNetns(t, "xskcs"), topo.NewNetns(t, "xskcp")
	topo.Veth(t, topo.End{NS: peerNS, Name: "s"}, topo.End{NS: ns, Name: "p"}, topo.VethOptions{KeepTxChecksum: true})
	p, err := OpenNetns(ns.Name, "p", Options{Frames: 256})
	if err == nil {
		p.Close()
		t.Fatal("Open succeeded with TX checksum offload on the peer")
	}
	if !strings.Contains(err.Error(), "TX checksum offload on") {
		t.Fatalf("error %q does not say the peer offloads checksums", err)
	}
	t.Log(err)
	s2, _ := topo.Veth(t, topo.End{NS: peerNS, Name: "s2"}, topo.End{NS: ns, Name: "p2"}, topo.VethOptions{KeepTxChecksum: true})
	s2.DisableTxChecksum(t)
	p, err = OpenNetns(ns.Name, "p2", Options{Frames: 256})
	if err != nil {
		t.Fatalf("Open with the peer's TX checksum offload off: %v", err)
	}
	p.Close()
}
