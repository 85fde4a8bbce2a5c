//go:build linux

package afpacket

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/test/topo"
)

// transmits runs test once per way a Ring sends: through its TX ring (the
// default) and with sendmmsg.
func transmits(t *testing.T, test func(t *testing.T, o RingOptions)) {
	for _, c := range []struct {
		name string
		o    RingOptions
	}{{"txring", RingOptions{}}, {"sendmmsg", RingOptions{Sendmmsg: true}}} {
		t.Run(c.name, func(t *testing.T) { test(t, c.o) })
	}
}

// ringPair makes a veth pair in a fresh namespace with a Ring on each end.
func ringPair(t *testing.T, o ...RingOptions) (a, b *Ring) {
	t.Helper()
	topo.RequireRoot(t)
	ns := topo.NewNetns(t, "ring")
	topo.Veth(t, topo.End{NS: ns, Name: "a", MAC: macStack}, topo.End{NS: ns, Name: "b", MAC: macPort}, topo.VethOptions{})
	var err error
	opts := RingOptions{}
	if len(o) > 0 {
		opts = o[0]
	}
	if a, err = OpenRingNetns(ns.Name, "a", opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if b, err = OpenRingNetns(ns.Name, "b", opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
}

// numbered is a 64-byte frame of a local experimental ethertype carrying i.
func numbered(i int) []byte {
	f := append(append([]byte{}, macPort...), macStack...)
	f = append(f, 0x88, 0xb5)
	f = binary.BigEndian.AppendUint32(f, uint32(i))
	for len(f) < 64 {
		f = append(f, byte(len(f)))
	}
	return f
}

// TestRingBatches: a batch written with one WriteBatch comes out of the
// peer's ring whole, in order, in one or more ReadBatch calls, and the
// reader's own sends never show up on its ring.
func TestRingBatches(t *testing.T) {
	transmits(t, func(t *testing.T, o RingOptions) {
		a, b := ringPair(t, o)
		const n = 500
		var frames [][]byte
		for i := range n {
			frames = append(frames, numbered(i))
		}
		if _, err := a.WriteBatch(frames); err != nil {
			t.Fatal(err)
		}
		got := 0
		calls := 0
		deadline := time.Now().Add(5 * time.Second)
		for got < n && time.Now().Before(deadline) {
			calls++
			if err := b.ReadBatch(func(f []byte) {
				if !bytes.Equal(f, frames[min(got, n-1)]) {
					t.Fatalf("frame %d: %x, want %x", got, f, frames[min(got, n-1)])
				}
				got++
			}); err != nil {
				t.Fatal(err)
			}
		}
		if got != n {
			t.Fatalf("read %d frames, want %d", got, n)
		}
		t.Logf("%d frames in %d ReadBatch calls", n, calls)
		// a sent them: nothing for a to read but what b sends.
		if err := b.WritePacket(numbered(-1)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		k, err := a.ReadPacket(buf)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:k], numbered(-1)) {
			t.Fatalf("a read %x, want b's frame", buf[:k])
		}
	})
}

// TestRingNoAllocations: a write and a batched read in steady state
// allocate nothing.
func TestRingNoAllocations(t *testing.T) {
	transmits(t, func(t *testing.T, o RingOptions) {
		a, b := ringPair(t, o)
		batch := [][]byte{numbered(1), numbered(2), numbered(3), numbered(4)}
		seen := 0
		fn := func(f []byte) { seen++ }
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := a.WriteBatch(batch); err != nil {
				t.Fatal(err)
			}
			for want := seen + len(batch); seen < want; {
				if err := b.ReadBatch(fn); err != nil {
					t.Fatal(err)
				}
			}
		})
		if allocs != 0 {
			t.Fatalf("%v allocations per batch written and read, want 0", allocs)
		}
	})
}

// TestRingCloseUnblocksReader: Close wakes a ReadBatch blocked on an empty
// ring, and calls after Close fail with ErrClosed.
func TestRingCloseUnblocksReader(t *testing.T) {
	a, _ := ringPair(t)
	done := make(chan error, 1)
	go func() { done <- a.ReadBatch(func([]byte) {}) }()
	time.Sleep(50 * time.Millisecond)
	if err := a.Close(); err != nil {
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
	if _, err := a.WriteBatch([][]byte{numbered(0)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteBatch after Close = %v", err)
	}
	if _, err := a.ReadPacket(make([]byte, 100)); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadPacket after Close = %v", err)
	}
}

// TestRingWriteBatchSkipsRefused: a frame the interface refuses (larger
// than the MTU, as an encapsulated full-size frame is on a 1500-byte
// uplink) fails alone; the frames before and after it in the batch go.
func TestRingWriteBatchSkipsRefused(t *testing.T) {
	transmits(t, func(t *testing.T, o RingOptions) {
		a, b := ringPair(t, o)
		big := append(numbered(1), make([]byte, 3000)...)
		failed, err := a.WriteBatch([][]byte{numbered(0), big, numbered(2), numbered(3)})
		if failed != 1 || err == nil {
			t.Fatalf("WriteBatch = %d, %v; want 1 failed with an error", failed, err)
		}
		t.Log(err)
		var got [][]byte
		done := make(chan error, 1)
		go func() {
			for len(got) < 3 {
				if err := b.ReadBatch(func(f []byte) { got = append(got, append([]byte(nil), f...)) }); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			b.Close()
			<-done
			t.Fatalf("read %d frames in 5s, want the 3 sendable ones", len(got))
		}
		for i, want := range [][]byte{numbered(0), numbered(2), numbered(3)} {
			if !bytes.Equal(got[i], want) {
				t.Errorf("frame %d: %x, want %x", i, got[i], want)
			}
		}
	})
}

var (
	_ dataplane.KernelCounters = (*Ring)(nil)
	_ dataplane.KernelCounters = (*Port)(nil)
)

// TestKernelDropsCounted: frames the kernel drops because nobody reads the
// ring or the socket are counted, and the count is a total that later
// reads do not reset.
func TestKernelDropsCounted(t *testing.T) {
	topo.RequireRoot(t)
	ns := topo.NewNetns(t, "drops")
	topo.Veth(t, topo.End{NS: ns, Name: "a", MAC: macStack}, topo.End{NS: ns, Name: "b", MAC: macPort}, topo.VethOptions{})
	topo.Veth(t, topo.End{NS: ns, Name: "c", MAC: macStack}, topo.End{NS: ns, Name: "d", MAC: macPort}, topo.VethOptions{})
	a, err := OpenRingNetns(ns.Name, "a", RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ring, err := OpenRingNetns(ns.Name, "b", RingOptions{Blocks: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ring.Close()
	c, err := OpenRingNetns(ns.Name, "c", RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sock, err := OpenNetns(ns.Name, "d")
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	batch := make([][]byte, 64)
	for i := range batch {
		batch[i] = numbered(i)
	}
	for _, tc := range []struct {
		name string
		from *Ring
		to   dataplane.KernelCounters
		n    int
	}{{"ring", a, ring, 5000}, {"socket", c, sock, 40000}} {
		for sent := 0; sent < tc.n; sent += len(batch) {
			if _, err := tc.from.WriteBatch(batch); err != nil {
				t.Fatal(err)
			}
		}
		first := tc.to.KernelStats().RxDropped
		if first == 0 {
			t.Errorf("%s: %d frames sent, none read, no drop counted", tc.name, tc.n)
		}
		if again := tc.to.KernelStats().RxDropped; again < first {
			t.Errorf("%s: drops went from %d to %d: not a total", tc.name, first, again)
		}
		t.Logf("%s: %d of %d dropped", tc.name, first, tc.n)
	}
}

// TestTxRingWraps: batches of more frames than the TX ring has slots go
// out whole and in order while the peer reads, round the ring several
// times.
func TestTxRingWraps(t *testing.T) {
	a, b := ringPair(t)
	const n = 3*txSlots + 17
	got := make(chan error, 1)
	go func() {
		i := 0
		for i < n {
			err := b.ReadBatch(func(f []byte) {
				if i < n && !bytes.Equal(f, numbered(i)) {
					got <- fmt.Errorf("frame %d: %x", i, f)
					i = n + 1
				}
				i++
			})
			if err != nil {
				got <- err
				return
			}
		}
		got <- nil
	}()
	var batch [][]byte
	for i := range n {
		batch = append(batch, numbered(i))
		if len(batch) == 1000 || i == n-1 {
			if failed, err := a.WriteBatch(batch); failed != 0 || err != nil {
				t.Fatalf("WriteBatch = %d, %v", failed, err)
			}
			batch = batch[:0]
		}
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the peer did not read every frame in 10s")
	}
}

// TestTxRingTakesBackUnsent: frames the kernel refuses to send (the
// interface is down) fail and leave the TX ring; they do not go out later
// in front of the next batch.
func TestTxRingTakesBackUnsent(t *testing.T) {
	topo.RequireRoot(t)
	ns := topo.NewNetns(t, "ring")
	la, _ := topo.Veth(t, topo.End{NS: ns, Name: "a", MAC: macStack}, topo.End{NS: ns, Name: "b", MAC: macPort}, topo.VethOptions{})
	a, err := OpenRingNetns(ns.Name, "a", RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenRingNetns(ns.Name, "b", RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	la.Down(t)
	failed, err := a.WriteBatch([][]byte{numbered(0), numbered(1), numbered(2)})
	if failed != 3 || err == nil {
		t.Fatalf("WriteBatch on a down interface = %d, %v; want 3 failed", failed, err)
	}
	t.Log(err)
	la.Up(t)
	la.WaitOperUp(t)
	if failed, err := a.WriteBatch([][]byte{numbered(10), numbered(11)}); failed != 0 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", failed, err)
	}
	var got []int
	deadline := time.Now().Add(3 * time.Second)
	for len(got) < 2 && time.Now().Before(deadline) {
		if err := b.ReadBatch(func(f []byte) {
			if len(f) == 64 && f[12] == 0x88 && f[13] == 0xb5 {
				got = append(got, int(binary.BigEndian.Uint32(f[14:])))
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != "[10 11]" {
		t.Fatalf("peer read frames %v, want [10 11]", got)
	}
}
