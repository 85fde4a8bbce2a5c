package dataplane

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

// batchPort is an in-memory port that reads and writes in batches, as
// afpacket.Ring does: a test hands it whole batches and reads what was
// written, with the number of WriteBatch calls.
type batchPort struct {
	in   chan [][]byte
	done chan struct{}
	once sync.Once

	mu      sync.Mutex
	out     [][]byte
	batches int
	discard bool // count only (the allocation test)
}

var (
	_ BatchReader = (*batchPort)(nil)
	_ BatchWriter = (*batchPort)(nil)
)

func newBatchPort() *batchPort {
	return &batchPort{in: make(chan [][]byte, 4), done: make(chan struct{})}
}

func (p *batchPort) ReadBatch(fn func([]byte)) error {
	select {
	case b := <-p.in:
		for _, f := range b {
			fn(append([]byte(nil), f...))
		}
		return nil
	case <-p.done:
		return ErrPortClosed
	}
}

func (p *batchPort) ReadPacket([]byte) (int, error) { <-p.done; return 0, ErrPortClosed }

func (p *batchPort) WritePacket(b []byte) error {
	_, err := p.WriteBatch([][]byte{b})
	return err
}

func (p *batchPort) WriteBatch(frames [][]byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.batches++
	if !p.discard {
		for _, f := range frames {
			p.out = append(p.out, append([]byte(nil), f...))
		}
	}
	return 0, nil
}

func (p *batchPort) Close() error { p.once.Do(func() { close(p.done) }); return nil }

func (p *batchPort) written() ([][]byte, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.out...), p.batches
}

// newBatchWorld is a Switch on batch ports (A, B and both uplinks) with the
// world programmed.
func newBatchWorld(t *testing.T) (*Switch, map[uint16]*batchPort) {
	t.Helper()
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	ports, pp := map[uint16]*batchPort{}, map[uint16]Port{}
	for _, n := range []uint16{portA, portB, uplink, uplink9} {
		ports[n] = newBatchPort()
		pp[n] = ports[n]
	}
	sw, err := NewSwitch(SwitchOptions{Server: Options{P4Info: info}, Ports: pp})
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.Server().Commit(&p4v1.ForwardingPipelineConfig{P4Info: info}); err != nil {
		t.Fatal(err)
	}
	s, err := p4rt.NewSchema(info)
	if err != nil {
		t.Fatal(err)
	}
	ps := &pipelineSwitch{srv: sw.Server(), pipe: sw.Pipeline(), s: s, t: t}
	ps.world()
	return sw, ports
}

// batchFrames are n frames from VM A of every fate: to B on this host, to
// blue C through a tunnel, ARP answered back to A, and TTL expiries
// (dropped).
func batchFrames(n int) [][]byte {
	var fs [][]byte
	for i := range n {
		var f *frame
		switch i % 4 {
		case 0:
			f = fromA(redB)
		case 1:
			f = fromA(blueC)
		case 2:
			f = arpRequest(redB)
		case 3:
			f = withTTL(fromA(redB), 1)
		}
		if f.IP != nil {
			f.IP.ID = uint16(i) // each frame its own, to check order
		}
		fs = append(fs, buildFrame(f))
	}
	return fs
}

// TestBatchMatchesPacketPath: frames read in batches leave each port in
// the order they came, byte for byte what the per-packet path gives for
// them, in fewer WriteBatch calls than frames; drops and receive counters
// are counted as on the per-packet path.
func TestBatchMatchesPacketPath(t *testing.T) {
	sw, ports := newBatchWorld(t)
	const n = 1000 // 750 to send: more than the pending list holds
	in := batchFrames(n)

	want := map[uint16][][]byte{}
	drops := 0
	scratch := make([]byte, 65536+Overhead)
	for _, f := range in {
		egress, k, ok := sw.Pipeline().Process(portA, f, scratch)
		if !ok {
			drops++
			continue
		}
		want[egress] = append(want[egress], append([]byte(nil), scratch[:k]...))
	}
	if len(want) < 3 || drops == 0 {
		t.Fatalf("the frames reach ports %v and %d are dropped: want three ports and drops", want, drops)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sw.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	ports[portA].in <- in

	deadline := time.Now().Add(5 * time.Second)
	for sw.PortStats(portA).RxPackets.Load() < n || int(sw.Dropped.Load()) < drops {
		if time.Now().After(deadline) {
			t.Fatalf("rx %d, dropped %d after 5s; want %d, %d", sw.PortStats(portA).RxPackets.Load(), sw.Dropped.Load(), n, drops)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for port, w := range want {
		var got [][]byte
		var calls int
		for {
			got, calls = ports[port].written()
			if len(got) >= len(w) || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if len(got) != len(w) {
			t.Fatalf("port %d: %d frames, want %d", port, len(got), len(w))
		}
		for i := range w {
			if !bytes.Equal(got[i], w[i]) {
				t.Fatalf("port %d frame %d:\n%x\nwant\n%x", port, i, got[i], w[i])
			}
		}
		if calls >= len(w) {
			t.Errorf("port %d: %d frames in %d WriteBatch calls: not batched", port, len(w), calls)
		}
		if st := sw.PortStats(port); port != portA && st.TxPackets.Load() != uint64(len(w)) {
			t.Errorf("port %d: TxPackets %d, want %d", port, st.TxPackets.Load(), len(w))
		}
		t.Logf("port %d: %d frames in %d batches", port, len(w), calls)
	}
	if got := sw.PortStats(portA).Dropped.Load(); got != uint64(drops) {
		t.Errorf("port A dropped %d, want %d", got, drops)
	}
}

// TestBatchNoAllocations: a batch through the pipeline and out to batch
// ports allocates nothing per packet.
func TestBatchNoAllocations(t *testing.T) {
	sw, ports := newBatchWorld(t)
	for _, p := range ports {
		p.discard = true
	}
	in := batchFrames(256)
	b := newBatch(sw, portA)
	run := func() {
		for _, f := range in {
			b.handle(f)
		}
		b.flush()
	}
	run()
	allocs := testing.AllocsPerRun(20, run)
	if allocs != 0 {
		t.Fatalf("%v allocations per batch of %d, want 0", allocs, len(in))
	}
}

func (p *batchPort) String() string { return fmt.Sprintf("batchPort(%p)", p) }

// KernelStats makes batchPort a KernelCounters with fixed counts.
func (p *batchPort) KernelStats() KernelStats {
	return KernelStats{RxDropped: 7, VLANRestored: 3, ChecksumCompleted: 2, Segmented: 1, Segments: 5}
}

// TestCollectorKernelCounters: the collector exports a port's kernel drops
// and fix-ups per port.
func TestCollectorKernelCounters(t *testing.T) {
	sw, _ := newBatchWorld(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(sw))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"p4mesh_switch_port_kernel_rx_dropped_total":  7,
		"p4mesh_switch_port_vlan_restored_total":      3,
		"p4mesh_switch_port_checksum_completed_total": 2,
		"p4mesh_switch_port_segmented_total":          1,
		"p4mesh_switch_port_segments_total":           5,
	}
	for _, mf := range mfs {
		w, ok := want[mf.GetName()]
		if !ok {
			continue
		}
		delete(want, mf.GetName())
		if len(mf.GetMetric()) != 4 {
			t.Errorf("%s: %d series, want one per port (4)", mf.GetName(), len(mf.GetMetric()))
		}
		for _, m := range mf.GetMetric() {
			if v := m.GetCounter().GetValue(); v != w {
				t.Errorf("%s%v = %v, want %v", mf.GetName(), m.GetLabel(), v, w)
			}
		}
	}
	for name := range want {
		t.Errorf("%s not exported", name)
	}
}
