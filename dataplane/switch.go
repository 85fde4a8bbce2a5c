package dataplane

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
)

// Port is one P4 port of the switch: a Linux interface (AF_PACKET) or an
// in-memory port.
type Port interface {
	// ReadPacket blocks for the next frame and copies it into buf.
	ReadPacket(buf []byte) (int, error)
	// WritePacket sends one frame; it must not keep b.
	WritePacket(b []byte) error
	Close() error
}

// PortStats counts one port's packets; Dropped counts the packets that
// came in on the port and that the pipeline dropped.
type PortStats struct {
	RxPackets, RxBytes, TxPackets, TxBytes, Dropped, TxErrors atomic.Uint64
	// Thread is the OS thread of the port's receive goroutine (a batch
	// port's), which keeps it for its life, or 0: the port's forwarding
	// CPU time, the kernel's share of its sends included, is that
	// thread's (on Linux, /proc/self/task/<Thread>/schedstat).
	Thread atomic.Int64
}

// Switch is p4mesh-switch: the P4Runtime server, the vpc_peering pipeline
// on the server's store, and the ports. Packets from a port run through the
// pipeline and leave on their egress port; a packet for the CPU port becomes
// a PacketIn, a PacketOut runs the pipeline from the CPU port.
type Switch struct {
	srv  *Server
	log  *slog.Logger
	pipe atomic.Pointer[Pipeline]

	ports map[uint16]Port
	stats map[uint16]*PortStats
	// Dropped counts packets the pipeline dropped or sent to a port that
	// does not exist.
	Dropped atomic.Uint64

	bufs sync.Pool
}

// SwitchOptions configure NewSwitch.
type SwitchOptions struct {
	Server Options
	// Ports maps P4 port numbers (1..510, not the CPU port 255) to ports.
	Ports map[uint16]Port
}

// NewSwitch makes a switch with no pipeline: it forwards nothing until a
// controller commits one (or Commit is called), as BMv2 started with --no-p4.
func NewSwitch(o SwitchOptions) (*Switch, error) {
	sw := &Switch{ports: map[uint16]Port{}, stats: map[uint16]*PortStats{}}
	for n, p := range o.Ports {
		if n == cpuPort || n >= dropPort || n == 0 {
			return nil, fmt.Errorf("port %d: P4 ports are 1..510 and 255 is the CPU port", n)
		}
		sw.ports[n] = p
		sw.stats[n] = &PortStats{}
	}
	so := o.Server
	next := so.OnCommit
	so.OnCommit = func(st *Store) {
		sw.setStore(st)
		if next != nil {
			next(st)
		}
	}
	srv, err := NewServer(so)
	if err != nil {
		return nil, err
	}
	sw.srv = srv
	sw.log = srv.log
	srv.SetPacketOutHandler(sw.packetOut)
	sw.bufs.New = func() any { b := make([]byte, 65536+Overhead); return &b }
	return sw, nil
}

// Server is the switch's P4Runtime server.
func (sw *Switch) Server() *Server { return sw.srv }

// Pipeline is the running pipeline, nil before the first commit.
func (sw *Switch) Pipeline() *Pipeline { return sw.pipe.Load() }

// PortStats returns the counters of port n, nil if there is no such port.
func (sw *Switch) PortStats(n uint16) *PortStats { return sw.stats[n] }

func (sw *Switch) setStore(st *Store) {
	p, err := NewPipeline(st)
	if err != nil {
		// The server admits only P4Infos compatible with vpc_peering.p4,
		// so this is a server configured without one (tests of the
		// server alone): forward nothing.
		sw.log.Error("pipeline not runnable; forwarding stopped", "err", err)
		sw.pipe.Store(nil)
		return
	}
	p.Digest = sw.digest
	sw.pipe.Store(p)
}

func (sw *Switch) digest(id, vni, dstIP uint32) {
	data := &p4v1.P4Data{Data: &p4v1.P4Data_Struct{Struct: &p4v1.P4StructLike{Members: []*p4v1.P4Data{
		{Data: &p4v1.P4Data_Bitstring{Bitstring: canonical(uint64(vni))}},
		{Data: &p4v1.P4Data_Bitstring{Bitstring: canonical(uint64(dstIP))}},
	}}}}
	sw.srv.SendDigest(id, data)
}

// canonical is the shortest big-endian form of v (P4Runtime §8.4).
func canonical(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	i := 0
	for i < 7 && b[i] == 0 {
		i++
	}
	return append([]byte(nil), b[i:]...)
}

// Run receives on every port until ctx ends, then closes the ports.
func (sw *Switch) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for n, p := range sw.ports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if br, ok := p.(BatchReader); ok {
				sw.receiveBatches(ctx, n, br)
				return
			}
			sw.receive(ctx, n, p)
		}()
	}
	<-ctx.Done()
	for _, p := range sw.ports {
		p.Close()
	}
	wg.Wait()
	return nil
}

func (sw *Switch) receive(ctx context.Context, n uint16, p Port) {
	in := make([]byte, 65536)
	out := make([]byte, len(in)+Overhead)
	st := sw.stats[n]
	for {
		k, err := p.ReadPacket(in)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrPortClosed) || errors.Is(err, net.ErrClosed) {
				return
			}
			// One bad read must not take the port down for good: log,
			// pause so a persistent failure does not spin, and go on.
			sw.log.Error("port receive failed", "port", n, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		st.RxPackets.Add(1)
		st.RxBytes.Add(uint64(k))
		sw.Process(n, in[:k], out)
	}
}

// receiveBatches is receive for a port that reads in batches: a batch runs
// through the pipeline into one arena, then leaves per egress port in
// batches. Nothing is allocated per packet.
func (sw *Switch) receiveBatches(ctx context.Context, n uint16, p BatchReader) {
	// One thread per port, as a ring-based switch pins a core per ring:
	// the goroutine does not migrate between threads between batches, and
	// its CPU time can be read per port.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sw.stats[n].Thread.Store(int64(threadID()))
	defer sw.stats[n].Thread.Store(0)
	b := newBatch(sw, n)
	handle := b.handle // one method value for every ReadBatch
	for {
		err := p.ReadBatch(handle)
		b.flush()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrPortClosed) || errors.Is(err, net.ErrClosed) {
				return
			}
			sw.log.Error("port receive failed", "port", n, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// batchArena is the room for one batch's output frames; a batch that
// outgrows it is sent in parts.
const batchArena = 1 << 20

// batch is one receive goroutine's packets of a batch on their way out:
// the pipeline writes each into arena, out lists them with their egress
// port, and flush sends them, per egress port in arrival order.
type batch struct {
	sw     *Switch
	inPort uint16
	st     *PortStats
	// pipe is the pipeline the batch runs on, loaded at its first packet
	// (not before ReadBatch, which may wait across a pipeline push) with
	// its store read-locked, and released by flush.
	pipe *Pipeline

	arena  []byte
	used   int
	out    []pending
	frames [][]byte // flush's scratch

	rxPkts, rxBytes uint64
}

type pending struct {
	egress uint16 // 0 (no port) once sent
	b      []byte
}

func newBatch(sw *Switch, inPort uint16) *batch {
	return &batch{
		sw: sw, inPort: inPort, st: sw.stats[inPort],
		arena:  make([]byte, batchArena+65536+Overhead),
		out:    make([]pending, 0, 512),
		frames: make([][]byte, 0, 512),
	}
}

func (b *batch) handle(frame []byte) {
	b.rxPkts++
	b.rxBytes += uint64(len(frame))
	if b.used > batchArena || len(b.out) == cap(b.out) {
		b.flush()
	}
	if b.pipe == nil {
		if b.pipe = b.sw.pipe.Load(); b.pipe == nil {
			b.sw.drop(b.inPort)
			return
		}
		// Held until flush, which sends: the batch's lookups under one
		// read lock, and no send waiting for room with it held.
		b.pipe.store.RLock()
	}
	p := b.pipe
	out := b.arena[b.used:]
	egress, n, ok := p.processLocked(b.inPort, frame, out)
	if !ok {
		b.sw.drop(b.inPort)
		return
	}
	if egress == cpuPort {
		b.release() // the packet-in goes out to the controller's stream
		b.sw.emit(p, egress, out[:n])
		return
	}
	if _, ok := b.sw.ports[egress]; !ok {
		b.sw.Dropped.Add(1)
		return
	}
	b.out = append(b.out, pending{egress, out[:n]})
	b.used += n
}

// release unlocks the batch's pipeline's store, if it holds it; the next
// packet loads the pipeline again.
func (b *batch) release() {
	if b.pipe != nil {
		b.pipe.store.RUnlock()
		b.pipe = nil
	}
}

// flush sends what the batch holds and counts what it received.
func (b *batch) flush() {
	b.release()
	if b.rxPkts > 0 {
		b.st.RxPackets.Add(b.rxPkts)
		b.st.RxBytes.Add(b.rxBytes)
		b.rxPkts, b.rxBytes = 0, 0
	}
	for i := range b.out {
		e := b.out[i].egress
		if e == 0 {
			continue
		}
		b.frames = b.frames[:0]
		for j := i; j < len(b.out); j++ {
			if b.out[j].egress == e {
				b.frames = append(b.frames, b.out[j].b)
				b.out[j].egress = 0
			}
		}
		b.sw.send(e, b.frames)
	}
	clear(b.out) // drop the references into arena
	b.out = b.out[:0]
	b.used = 0
}

// send sends frames out of port egress, in one call where the port takes
// batches.
func (sw *Switch) send(egress uint16, frames [][]byte) {
	port, st := sw.ports[egress], sw.stats[egress]
	var bytes uint64
	for _, f := range frames {
		bytes += uint64(len(f))
	}
	if bw, ok := port.(BatchWriter); ok {
		// A refused frame is counted as an error and its bytes as sent:
		// the batch is not walked again to find which one it was.
		failed, _ := bw.WriteBatch(frames)
		st.TxErrors.Add(uint64(failed))
		st.TxPackets.Add(uint64(len(frames) - failed))
		st.TxBytes.Add(bytes)
		return
	}
	for _, f := range frames {
		if err := port.WritePacket(f); err != nil {
			st.TxErrors.Add(1)
			continue
		}
		st.TxPackets.Add(1)
		st.TxBytes.Add(uint64(len(f)))
	}
}

// Process runs one packet from port inPort through the pipeline and sends
// what comes out, using out as scratch (len(pkt)+Overhead bytes at least).
func (sw *Switch) Process(inPort uint16, pkt, out []byte) {
	p := sw.pipe.Load()
	if p == nil {
		sw.drop(inPort)
		return
	}
	egress, n, ok := p.Process(inPort, pkt, out)
	if !ok {
		sw.drop(inPort)
		return
	}
	sw.emit(p, egress, out[:n])
}

// drop counts a packet the pipeline dropped, on the switch and on the port
// it came in on.
func (sw *Switch) drop(inPort uint16) {
	sw.Dropped.Add(1)
	if st := sw.stats[inPort]; st != nil {
		st.Dropped.Add(1)
	}
}

func (sw *Switch) emit(p *Pipeline, egress uint16, b []byte) {
	if egress == cpuPort {
		// BMv2 turns the packet_in header into PacketIn metadata.
		if len(b) < lenPacketIO {
			sw.Dropped.Add(1)
			return
		}
		port := binary.BigEndian.Uint16(b) >> 7
		md := []*p4v1.PacketMetadata{
			{MetadataId: p.pinPort, Value: canonical(uint64(port))},
			{MetadataId: p.pinPad, Value: []byte{0}},
		}
		sw.srv.SendPacketIn(append([]byte(nil), b[lenPacketIO:]...), md)
		return
	}
	port, ok := sw.ports[egress]
	if !ok {
		sw.Dropped.Add(1)
		return
	}
	st := sw.stats[egress]
	if err := port.WritePacket(b); err != nil {
		st.TxErrors.Add(1)
		return
	}
	st.TxPackets.Add(1)
	st.TxBytes.Add(uint64(len(b)))
}

// packetOut runs a controller's packet from the CPU port: the packet_out
// header built from its metadata, then the payload.
func (sw *Switch) packetOut(po *p4v1.PacketOut) error {
	p := sw.pipe.Load()
	if p == nil {
		return errors.New("no pipeline committed")
	}
	var egress uint64
	for _, m := range po.GetMetadata() {
		if m.GetMetadataId() == p.poutPort {
			for _, c := range m.GetValue() {
				egress = egress<<8 | uint64(c)
			}
		}
	}
	in, out := sw.bufs.Get().(*[]byte), sw.bufs.Get().(*[]byte)
	defer sw.bufs.Put(in)
	defer sw.bufs.Put(out)
	buf := *in
	if len(po.GetPayload())+lenPacketIO > len(buf)-Overhead {
		return fmt.Errorf("packet-out of %d bytes is too large", len(po.GetPayload()))
	}
	binary.BigEndian.PutUint16(buf, uint16(egress)<<7)
	n := lenPacketIO + copy(buf[lenPacketIO:], po.GetPayload())
	sw.Process(cpuPort, buf[:n], *out)
	return nil
}
