//go:build linux

package afpacket_test

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/dataplane/afpacket"
	"github.com/p4mesh/p4mesh/test/topo"
)

var _ dataplane.Port = (*afpacket.Port)(nil)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

// pair makes a veth pair inside a fresh namespace and opens a port on each
// end from the test's own namespace.
func pair(t *testing.T) (a, b *afpacket.Port) {
	t.Helper()
	topo.RequireRoot(t)
	ns := topo.NewNetns(t, "afp")
	topo.Veth(t, topo.End{NS: ns, Name: "a", MAC: macA}, topo.End{NS: ns, Name: "b", MAC: macB}, topo.VethOptions{})
	var err error
	if a, err = afpacket.OpenNetns(ns.Name, "a"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if b, err = afpacket.OpenNetns(ns.Name, "b"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
}

// frame is an Ethernet frame of an unassigned local experimental ethertype,
// so no stack in the namespace reacts to it.
func frame(dst, src net.HardwareAddr, payload string) []byte {
	f := append(append(append([]byte{}, dst...), src...), 0x88, 0xb5)
	f = append(f, payload...)
	for len(f) < 60 {
		f = append(f, 0)
	}
	return f
}

func TestWriteRead(t *testing.T) {
	a, b := pair(t)
	// Not addressed to b: promiscuous mode must let it in.
	want := frame(net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}, macA, "hello")
	if err := a.WritePacket(want); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	got := make(chan []byte, 1)
	go func() {
		n, err := b.ReadPacket(buf)
		if err != nil {
			t.Error(err)
			got <- nil
			return
		}
		got <- buf[:n]
	}()
	select {
	case g := <-got:
		if !bytes.Equal(g, want) {
			t.Fatalf("read %x, want %x", g, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no frame within 5s")
	}

	// a must not read back its own transmission: the next frame a reads is
	// the one b sends.
	reply := frame(macA, macB, "reply")
	if err := b.WritePacket(reply); err != nil {
		t.Fatal(err)
	}
	n, err := a.ReadPacket(buf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf[:n], reply) {
		t.Fatalf("a read %x, want b's %x", buf[:n], reply)
	}
}

func TestCloseUnblocksReader(t *testing.T) {
	a, _ := pair(t)
	done := make(chan error, 1)
	go func() {
		_, err := a.ReadPacket(make([]byte, 2048))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // let it block in poll
	start := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, afpacket.ErrClosed) || !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadPacket after Close = %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ReadPacket still blocked 2s after Close")
	}
	t.Logf("reader returned %v after Close", time.Since(start))
	if err := a.WritePacket(frame(macB, macA, "x")); !errors.Is(err, afpacket.ErrClosed) {
		t.Fatalf("WritePacket after Close = %v, want ErrClosed", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestNoAllocations(t *testing.T) {
	a, b := pair(t)
	f := frame(macB, macA, "alloc")
	buf := make([]byte, 2048)
	allocs := testing.AllocsPerRun(200, func() {
		if err := a.WritePacket(f); err != nil {
			t.Fatal(err)
		}
		if _, err := b.ReadPacket(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per write+read, want 0", allocs)
	}
}

func TestOpenErrors(t *testing.T) {
	topo.RequireRoot(t)
	if _, err := afpacket.Open("no-such-if0"); err == nil {
		t.Fatal("Open of a missing interface succeeded")
	}
	if _, err := afpacket.OpenNetns("no-such-netns-p4mesh", "lo"); err == nil {
		t.Fatal("OpenNetns of a missing namespace succeeded")
	}
}
