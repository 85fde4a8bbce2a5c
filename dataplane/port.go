package dataplane

import (
	"errors"
	"sync"
)

// ErrPortClosed is returned by a closed port's ReadPacket.
var ErrPortClosed = errors.New("port closed")

// MemPort is an in-memory port, for tests and the demo without root: a test
// injects frames as if they arrived on the wire and reads what the switch
// sent.
type MemPort struct {
	in   chan []byte
	out  chan []byte
	once sync.Once
	done chan struct{}
}

// NewMemPort makes a port that queues up to depth frames each way. When the
// output queue is full, frames are dropped, as a NIC's ring would.
func NewMemPort(depth int) *MemPort {
	return &MemPort{in: make(chan []byte, depth), out: make(chan []byte, depth), done: make(chan struct{})}
}

// Inject queues a frame as received on the port. It reports false when the
// port is closed.
func (p *MemPort) Inject(frame []byte) bool {
	select {
	case p.in <- frame:
		return true
	case <-p.done:
		return false
	}
}

// Output is the stream of frames the switch sent out of the port.
func (p *MemPort) Output() <-chan []byte { return p.out }

// ReadPacket implements Port.
func (p *MemPort) ReadPacket(buf []byte) (int, error) {
	select {
	case f := <-p.in:
		return copy(buf, f), nil
	case <-p.done:
		return 0, ErrPortClosed
	}
}

// WritePacket implements Port.
func (p *MemPort) WritePacket(b []byte) error {
	f := append([]byte(nil), b...)
	select {
	case p.out <- f:
	default:
		return errors.New("output queue full")
	}
	return nil
}

// Close implements Port.
func (p *MemPort) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

// BatchReader is a port that hands over frames a batch at a time (a
// PACKET_MMAP ring, afpacket.Ring): the switch runs a whole batch through
// the pipeline before it sends, so sends are batched too.
type BatchReader interface {
	// ReadBatch waits for frames and calls fn with each frame of one
	// batch, in order. A frame is valid only during its fn call.
	ReadBatch(fn func(frame []byte)) error
}

// BatchWriter is a port that sends several frames per system call.
type BatchWriter interface {
	// WriteBatch sends the frames in order; it must not keep them. It
	// returns how many it could not send, and the first error: a frame
	// refused does not stop the ones after it.
	WriteBatch(frames [][]byte) (failed int, err error)
}

// KernelCounters is a port that counts what happens beneath it: frames the
// kernel dropped before the port read them (a full ring or socket buffer:
// the switch did not keep up), and the fix-ups that turned what the kernel
// handed over into the frames that were on the wire. The collector exports
// them per port.
type KernelCounters interface {
	KernelStats() KernelStats
}

// KernelStats are a port's KernelCounters, totals since it was opened.
type KernelStats struct {
	RxDropped                       uint64 // dropped by the kernel before the port read them
	VLANRestored, ChecksumCompleted uint64 // frames fixed up
	Segmented, Segments             uint64 // super-frames cut, and the frames they gave
	Unsupported                     uint64 // frames that could not be made wire frames (dropped)
}
