//go:build linux

package afpacket

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// txRing is a PACKET_TX_RING (TPACKET_V2) on a Ring's send socket: frames
// are copied into slots of memory shared with the kernel and one send()
// hands over all the slots filled, where sendmmsg builds and checks a
// message header and an iovec per frame and copies each frame from user
// memory.
//
// Each slot holds a virtio-net header in front of the frame (the socket has
// PACKET_VNET_HDR), whose hdr_len is the whole frame: the kernel then
// copies the frame into the socket buffer it builds. Without it the kernel
// copies the Ethernet header only and hangs the rest of the slot's page on
// the buffer, which veth copies anyway (into a freshly allocated page, as
// the frame crosses namespaces) and an XDP receiver a second time.
//
// The kernel walks the slots in order from its own cursor and stops at the
// first one not marked for sending, so the slots are filled in order too
// (cur follows the kernel's cursor) under mu.
type txRing struct {
	mu    sync.Mutex
	mem   []byte
	fsize int // slot size
	n     int // slots
	cur   int // the next slot to fill
	max   int // the longest frame sent: MTU, Ethernet and VLAN headers
}

// Layout of a TPACKET_V2 TX slot: the header (struct tpacket2_hdr), then
// the frame at TPACKET2_HDRLEN - sizeof(struct sockaddr_ll), the kernel's
// offset when PACKET_TX_HAS_OFF is not set.
const (
	txDataOff = (int(unsafe.Sizeof(unix.Tpacket2Hdr{})) + unix.TPACKET_ALIGNMENT - 1) &^ (unix.TPACKET_ALIGNMENT - 1)
	// txSlots is the number of slots: more than a full batch of the
	// switch (512 frames) so that a batch never waits for its own frames.
	txSlots = 2048
)

// setupTxRing puts a TX ring on fd, the send socket of interface ifname
// with MTU mtu.
func setupTxRing(fd int, mtu int) (*txRing, error) {
	t := &txRing{max: mtu + 14 + 4, n: txSlots}
	t.fsize = 2048
	for t.fsize-txDataOff-vnetHdrLen < t.max {
		t.fsize <<= 1
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		return nil, fmt.Errorf("PACKET_VNET_HDR: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
		return nil, fmt.Errorf("TPACKET_V2: %w", err)
	}
	// A frame the kernel refuses (longer than the MTU when it changed
	// since the ring was made) is skipped rather than left in its slot,
	// where it would stop the ring.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_LOSS, 1); err != nil {
		return nil, fmt.Errorf("PACKET_LOSS: %w", err)
	}
	bsize := max(t.fsize, 1<<16)
	req := unix.TpacketReq{
		Block_size: uint32(bsize),
		Block_nr:   uint32(t.n * t.fsize / bsize),
		Frame_size: uint32(t.fsize),
		Frame_nr:   uint32(t.n),
	}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_TX_RING, &req); err != nil {
		return nil, fmt.Errorf("PACKET_TX_RING: %w", err)
	}
	var err error
	t.mem, err = unix.Mmap(fd, 0, t.n*t.fsize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap TX ring: %w", err)
	}
	return t, nil
}

func (t *txRing) hdr(i int) *unix.Tpacket2Hdr {
	return (*unix.Tpacket2Hdr)(unsafe.Pointer(&t.mem[i*t.fsize]))
}

// writeTxRing is WriteBatch through the TX ring. r.mu is held shared.
func (r *Ring) writeTxRing(frames [][]byte) (failed int, err error) {
	t := r.tx
	t.mu.Lock()
	defer t.mu.Unlock()
	fail := func(n int, e error) {
		failed += n
		if err == nil {
			err = e
		}
	}
	filled := 0 // slots filled since the last send
	for len(frames) > 0 {
		f := frames[0]
		if len(f) == 0 || len(f) > t.max {
			fail(1, fmt.Errorf("afpacket: %s: WriteBatch: frame of %d bytes (at most %d)", r.name, len(f), t.max))
			frames = frames[1:]
			continue
		}
		h := t.hdr(t.cur)
		if atomic.LoadUint32(&h.Status)&(unix.TP_STATUS_SEND_REQUEST|unix.TP_STATUS_SENDING) != 0 {
			// The kernel still holds the slot: hand it what is
			// filled, or, when that is nothing, wait for it to let go
			// (the receiver of a sent frame frees it, on veth often
			// later, in a softirq).
			if filled > 0 {
				if serr := r.kickTx(filled); serr != nil {
					fail(len(frames), serr)
					return failed + serr.unsent, err
				}
				filled = 0
				continue
			}
			if werr := r.waitTxSlot(h); werr != nil {
				fail(len(frames), werr)
				return failed, err
			}
			continue
		}
		slot := t.mem[t.cur*t.fsize+txDataOff:]
		// virtio_net_hdr: no flags, no GSO, hdr_len (little endian)
		// the frame's length.
		clear(slot[:vnetHdrLen])
		binary.LittleEndian.PutUint16(slot[2:], uint16(len(f)))
		copy(slot[vnetHdrLen:], f)
		h.Len = uint32(vnetHdrLen + len(f))
		atomic.StoreUint32(&h.Status, unix.TP_STATUS_SEND_REQUEST)
		t.cur = (t.cur + 1) % t.n
		filled++
		frames = frames[1:]
	}
	if filled > 0 {
		if serr := r.kickTx(filled); serr != nil {
			fail(serr.unsent, serr)
		}
	}
	return failed, err
}

// txError is a send() that failed, with the frames it took back.
type txError struct {
	err    error
	unsent int
}

func (e *txError) Error() string { return e.err.Error() }
func (e *txError) Unwrap() error { return e.err }

// kickTx makes the kernel send the filled slots before t.cur, waiting for
// room in the socket's send buffer as sendmmsg does. On an error the
// frames it did not send are taken back from the ring (their slots freed,
// t.cur moved back to the first) and counted in the error.
func (r *Ring) kickTx(filled int) *txError {
	t := r.tx
	for {
		_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(r.txfd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			if t.pending(filled) == 0 {
				return nil
			}
			// Sent part: the kernel stops when the send buffer
			// fills; go round for the rest.
			if werr := r.waitTx(); werr != nil {
				return t.takeBack(filled, werr)
			}
		case unix.EINTR:
		case unix.EAGAIN, unix.ENOBUFS:
			if werr := r.waitTx(); werr != nil {
				return t.takeBack(filled, werr)
			}
		default:
			return t.takeBack(filled, fmt.Errorf("afpacket: %s: %w", r.name, os.NewSyscallError("send", errno)))
		}
	}
}

// pending is how many of the filled slots before t.cur still wait to be
// sent. The kernel sends in order, so they are the last ones.
func (t *txRing) pending(filled int) int {
	n := 0
	for i := 1; i <= filled; i++ {
		h := t.hdr((t.cur - i + t.n) % t.n)
		if atomic.LoadUint32(&h.Status) != unix.TP_STATUS_SEND_REQUEST {
			break
		}
		n++
	}
	return n
}

// takeBack frees the slots of the filled frames the kernel did not send
// and moves t.cur back to the first of them, where the kernel's cursor
// stopped.
func (t *txRing) takeBack(filled int, err error) *txError {
	n := t.pending(filled)
	for i := 1; i <= n; i++ {
		atomic.StoreUint32(&t.hdr((t.cur-i+t.n)%t.n).Status, unix.TP_STATUS_AVAILABLE)
	}
	t.cur = (t.cur - n + t.n) % t.n
	return &txError{err: err, unsent: n}
}

// waitTxSlot waits until the kernel frees the slot h: POLLOUT on a TX ring
// socket also means only that its send buffer has room, so the wait is a
// short sleep, ended early by Close.
func (r *Ring) waitTxSlot(h *unix.Tpacket2Hdr) error {
	fds := [1]unix.PollFd{{Fd: int32(r.efd), Events: unix.POLLIN}}
	ts := unix.Timespec{Nsec: 20_000}
	for atomic.LoadUint32(&h.Status)&(unix.TP_STATUS_SEND_REQUEST|unix.TP_STATUS_SENDING) != 0 {
		_, err := unix.Ppoll(fds[:], &ts, nil)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("afpacket: %s: %w", r.name, os.NewSyscallError("ppoll", err))
		}
		if fds[0].Revents != 0 {
			return ErrClosed
		}
	}
	return nil
}

// interfaceMTU is the MTU of interface ifname, asked through socket fd.
func interfaceMTU(fd int, ifname string) (int, error) {
	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFMTU, ifr); err != nil {
		return 0, err
	}
	return int(ifr.Uint32()), nil
}
