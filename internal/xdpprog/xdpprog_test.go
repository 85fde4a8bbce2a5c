//go:build linux

package xdpprog

import (
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/dataplane/afpacket"
	"github.com/p4mesh/p4mesh/test/topo"
)

// TestSinkCounts sends frames of two lengths through a veth into a Sink
// in native and in generic mode and checks what it counts, and that a
// packet socket on the sink's interface sees them only when the sink
// passes them.
func TestSinkCounts(t *testing.T) {
	topo.RequireRoot(t)
	for _, mode := range []Mode{Native, Generic} {
		t.Run(mode.String(), func(t *testing.T) {
			a, b := topo.NewNetns(t, "xsa"), topo.NewNetns(t, "xsb")
			_, lb := topo.Veth(t, topo.End{NS: a, Name: "eth0"}, topo.End{NS: b, Name: "eth0"}, topo.VethOptions{})
			var s *Sink
			if err := b.Do(func() (err error) { s, err = NewSink(lb.Index, mode); return err }); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			tx, err := afpacket.OpenRingNetns(a.Name, "eth0", afpacket.RingOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Close()
			rx, err := afpacket.OpenRingNetns(b.Name, "eth0", afpacket.RingOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer rx.Close()
			seen := make(chan int, 4096)
			go func() {
				for rx.ReadBatch(func(f []byte) { seen <- len(f) }) == nil {
				}
			}()
			frame := func(n int) []byte {
				f := make([]byte, n)
				copy(f, []byte{0x02, 0xbb, 0, 0, 0, 1, 0x02, 0xaa, 0, 0, 0, 1, 0x88, 0xb5})
				return f
			}
			short, long := frame(100), frame(300)
			send := func(f []byte, n int) {
				t.Helper()
				batch := make([][]byte, n)
				for i := range batch {
					batch[i] = f
				}
				if _, err := tx.WriteBatch(batch); err != nil {
					t.Fatal(err)
				}
			}
			// waitFor polls the sink until its counters reach frames and
			// all, and fails if they go past.
			waitFor := func(frames, all uint64) {
				t.Helper()
				deadline := time.Now().Add(5 * time.Second)
				for {
					f, err := s.Frames()
					if err != nil {
						t.Fatal(err)
					}
					n, err := s.All()
					if err != nil {
						t.Fatal(err)
					}
					if f == frames && n >= all {
						return
					}
					if f > frames || time.Now().After(deadline) {
						t.Fatalf("sink counted %d frames of the length and %d in all, want %d and at least %d", f, n, frames, all)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			// countSeen is how many frames of length n the packet socket
			// read within a moment.
			countSeen := func(n int) int {
				got := 0
				for {
					select {
					case l := <-seen:
						if l == n {
							got++
						}
					case <-time.After(200 * time.Millisecond):
						return got
					}
				}
			}

			if err := s.SetLength(100); err != nil {
				t.Fatal(err)
			}
			send(short, 40)
			send(long, 25)
			waitFor(40, 65)
			if n := countSeen(100); n != 0 {
				t.Errorf("dropping sink: the packet socket read %d frames", n)
			}

			if err := s.SetPass(true); err != nil {
				t.Fatal(err)
			}
			if err := s.SetLength(300); err != nil {
				t.Fatal(err)
			}
			send(long, 30)
			send(short, 10)
			waitFor(40+30, 65+40)
			if n := countSeen(300); n != 30 {
				t.Errorf("passing sink: the packet socket read %d frames of 300 bytes, want 30", n)
			}
		})
	}
}

func TestSinkLengthRange(t *testing.T) {
	s := &Sink{}
	if err := s.SetLength(-1); err == nil {
		t.Error("SetLength(-1) succeeded")
	}
	if err := s.SetLength(1<<16 + 1); err == nil {
		t.Error("SetLength(65537) succeeded")
	}
}
