//go:build linux

package afpacket

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/internal/netnsrun"
)

// RingOptions size a Ring's receive ring. The zero value is the default.
type RingOptions struct {
	// BlockSize is the size of one ring block, a power of two multiple of
	// the page size holding at least one 64 KiB super-frame; 0 is 128 KiB.
	BlockSize int
	// Blocks is the number of blocks; 0 is 256 (32 MiB of ring). The
	// kernel hands a block over when it is full or RetireMicros after its
	// first frame, so at a low rate each block holds a few frames and the
	// ring bridges Blocks × RetireMicros of a stalled reader (256 ms by
	// default), at a high one what fits in its bytes: about 200,000
	// frames of 64 bytes, 21,000 of 1450 (43 ms at 500k frames/s; 64
	// blocks held a quarter of that, and lost 1400-byte frames whenever
	// the reader was off its core for more than about 10 ms).
	Blocks int
	// RetireMicros is how long the kernel waits, in microseconds rounded
	// up to milliseconds, before handing over a block that is not full;
	// 0 is 1 ms, the latency of a lone frame.
	RetireMicros int
	// Sendmmsg sends with sendmmsg, a message per frame, instead of
	// through a PACKET_TX_RING.
	Sendmmsg bool
}

// Ring is a port bound to an interface like Port, with a PACKET_MMAP
// TPACKET_V3 receive ring: the kernel writes frames into memory shared with
// the process, a block of many frames at a time, so a busy port reads a
// block per wake-up instead of a system call per frame. Frames are sent in
// batches on a second socket that receives nothing, through a
// PACKET_TX_RING (copied into shared memory, one send() per batch) or with
// sendmmsg (RingOptions.Sendmmsg). Frames read are wire frames, as with
// Port (see the package comment).
//
// ReadBatch and ReadPacket may be called from one goroutine at a time;
// WritePacket and WriteBatch from any number at once.
type Ring struct {
	name    string
	ifindex int

	// mu is held shared by every read and write for its whole run and
	// exclusively by Close, so the ring is never unmapped and the
	// descriptors never closed under a call.
	mu     sync.RWMutex
	closed bool
	fd     int // the ring socket
	txfd   int // the socket frames are sent on
	efd    int // eventfd Close makes readable, polled beside fd and txfd
	ring   []byte
	bsize  int
	nblk   int
	tx     *txRing // nil: sendmmsg

	// rmu serialises readers over the cursor and the segmenter.
	rmu sync.Mutex
	// cur is the block being read, held while held is set; left is its
	// frames still unread, off the offset of the next one.
	cur, left, off int
	held           bool
	seg            segmenter
	segTag         vlanTag
	scratch        []byte // segments of a super-frame are cut into it

	was   coalescing
	stats Stats
	drops atomic.Uint64 // PACKET_STATISTICS' drops, totalled

	closeOnce sync.Once
	closeErr  error
}

// OpenRing opens a Ring on interface ifname of the caller's network
// namespace.
func OpenRing(ifname string, o RingOptions) (*Ring, error) { return openRing(ifname, o) }

// OpenRingNetns opens a Ring on interface ifname of the named network
// namespace, as OpenNetns does for Port.
func OpenRingNetns(nsName, ifname string, o RingOptions) (*Ring, error) {
	var r *Ring
	err := netnsrun.DoNamed(nsName, func() (err error) {
		r, err = openRing(ifname, o)
		return err
	})
	return r, err
}

// packetSocket opens an AF_PACKET socket bound to ifname for protocol
// proto (0 receives nothing) and returns it with the interface index.
func packetSocket(ifname string, proto int) (int, int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, os.NewSyscallError("socket", err)
	}
	ifr, err := unix.NewIfreq(ifname)
	if err == nil {
		err = unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr)
	}
	if err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("interface index: %w", err)
	}
	idx := int(ifr.Uint32())
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(uint16(proto)), Ifindex: idx}); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("bind: %w", err)
	}
	return fd, idx, nil
}

func openRing(ifname string, o RingOptions) (*Ring, error) {
	if o.BlockSize == 0 {
		o.BlockSize = 128 << 10
	}
	if o.Blocks == 0 {
		o.Blocks = 256
	}
	if o.RetireMicros == 0 {
		o.RetireMicros = 1000
	}
	r := &Ring{name: ifname, fd: -1, txfd: -1, efd: -1, bsize: o.BlockSize, nblk: o.Blocks}
	fail := func(what string, err error) (*Ring, error) {
		r.release()
		return nil, fmt.Errorf("afpacket: %s: ring: %s: %w", ifname, what, err)
	}
	var err error
	// The ring socket is bound to protocol 0 first, so nothing is queued
	// before the ring exists, then rebound to ETH_P_ALL.
	if r.fd, r.ifindex, err = packetSocket(ifname, 0); err != nil {
		return fail("socket", err)
	}
	if r.txfd, _, err = packetSocket(ifname, 0); err != nil {
		return fail("send socket", err)
	}
	// Straight to the driver: the switch is the only sender that matters
	// on a port, and the qdisc layer costs a lock per frame.
	_ = unix.SetsockoptInt(r.txfd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	for _, o := range [2]int{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF} {
		if unix.SetsockoptInt(r.txfd, unix.SOL_SOCKET, o, SocketBuffer) == nil {
			break
		}
	}
	if !o.Sendmmsg {
		mtu, err := interfaceMTU(r.txfd, ifname)
		if err != nil {
			return fail("MTU", err)
		}
		if r.tx, err = setupTxRing(r.txfd, mtu); err != nil {
			return fail("TX ring", err)
		}
	}
	mreq := unix.PacketMreq{Ifindex: int32(r.ifindex), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(r.fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		return fail("promiscuous mode", err)
	}
	_ = unix.SetsockoptInt(r.fd, unix.SOL_PACKET, packetIgnoreOutgoing, 1)
	if err := unix.SetsockoptInt(r.fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		return fail("PACKET_VNET_HDR", err)
	}
	if err := unix.SetsockoptInt(r.fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fail("TPACKET_V3", err)
	}
	const frameSize = 1 << 11
	req := unix.TpacketReq3{
		Block_size:     uint32(o.BlockSize),
		Block_nr:       uint32(o.Blocks),
		Frame_size:     frameSize,
		Frame_nr:       uint32(o.BlockSize / frameSize * o.Blocks),
		Retire_blk_tov: uint32((o.RetireMicros + 999) / 1000),
	}
	if err := unix.SetsockoptTpacketReq3(r.fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fail("PACKET_RX_RING", err)
	}
	r.ring, err = unix.Mmap(r.fd, 0, o.BlockSize*o.Blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fail("mmap", err)
	}
	if err := unix.Bind(r.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: r.ifindex}); err != nil {
		return fail("bind", err)
	}
	if r.efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fail("eventfd", err)
	}
	r.scratch = make([]byte, 65536+64)
	r.was = disableCoalescing(r.fd, ifname)
	return r, nil
}

func (r *Ring) release() {
	if r.ring != nil {
		unix.Munmap(r.ring)
		r.ring = nil
	}
	if r.tx != nil && r.tx.mem != nil {
		unix.Munmap(r.tx.mem)
		r.tx.mem = nil
	}
	for _, fd := range []int{r.fd, r.txfd, r.efd} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// Name is the interface the ring is bound to.
func (r *Ring) Name() string { return r.name }

// Stats returns the ring's offload counters.
func (r *Ring) Stats() *Stats { return &r.stats }

// Drops returns the frames the kernel dropped because the ring was full
// since the last call (PACKET_STATISTICS, which resets on read; KernelStats
// keeps the total).
func (r *Ring) Drops() (uint64, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return 0, ErrClosed
	}
	st, err := unix.GetsockoptTpacketStatsV3(r.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0, fmt.Errorf("afpacket: %s: PACKET_STATISTICS: %w", r.name, err)
	}
	r.drops.Add(uint64(st.Drops))
	return uint64(st.Drops), nil
}

// KernelStats implements dataplane.KernelCounters: the frames the kernel
// dropped because the ring was full, and the fix-ups.
func (r *Ring) KernelStats() dataplane.KernelStats {
	r.Drops()
	return r.stats.kernel(r.drops.Load())
}

// Layout of a TPACKET_V3 block descriptor (struct tpacket_block_desc with
// its tpacket_hdr_v1) and of a frame header (struct tpacket3_hdr).
const (
	blkStatusOff   = 8  // block_status
	blkNumPktsOff  = 12 // num_pkts
	blkFirstPktOff = 16 // offset_to_first_pkt
)

func (r *Ring) blockStatus(b int) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.ring[b*r.bsize+blkStatusOff]))
}

// waitBlock waits until the current block belongs to user space and takes
// it. r.mu is held shared, r.rmu held.
func (r *Ring) waitBlock() error {
	for {
		if atomic.LoadUint32(r.blockStatus(r.cur))&unix.TP_STATUS_USER != 0 {
			base := r.cur * r.bsize
			r.left = int(*(*uint32)(unsafe.Pointer(&r.ring[base+blkNumPktsOff])))
			r.off = int(*(*uint32)(unsafe.Pointer(&r.ring[base+blkFirstPktOff])))
			r.held = true
			return nil
		}
		if err := pollOrClosed(r.name, r.fd, unix.POLLIN, r.efd); err != nil {
			return err
		}
	}
}

// releaseBlock hands the current block back to the kernel.
func (r *Ring) releaseBlock() {
	atomic.StoreUint32(r.blockStatus(r.cur), unix.TP_STATUS_KERNEL)
	r.cur = (r.cur + 1) % r.nblk
	r.left, r.held = 0, false
}

// next returns the next wire frame of the held block, or of the
// super-frame being cut, and false once the block is done and released.
// The frame is valid until the next call: the block is handed back only on
// the call after its last frame.
func (r *Ring) next() ([]byte, bool) {
	for {
		if r.seg.f != nil {
			if n := r.seg.next(r.scratch[4:]); n > 0 {
				r.stats.Segments.Add(1)
				if r.segTag.valid {
					r.stats.VLANRestored.Add(1)
					return insertVLAN(r.scratch, n, r.segTag.tpid, r.segTag.tci), true
				}
				return r.scratch[4 : 4+n], true
			}
			r.seg.f = nil
		}
		if !r.held {
			return nil, false
		}
		if r.left == 0 {
			r.releaseBlock()
			return nil, false
		}
		base := r.cur*r.bsize + r.off
		h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&r.ring[base]))
		r.left--
		r.off += int(h.Next_offset)
		mac := base + int(h.Mac)
		snap := int(h.Snaplen)
		if mac < vnetHdrLen || snap < 14 || snap != int(h.Len) || mac+snap > (r.cur+1)*r.bsize {
			continue // truncated: larger than the block
		}
		sll := (*unix.RawSockaddrLinklayer)(unsafe.Pointer(&r.ring[base+tpacket3HdrLen]))
		if sll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		vh := decodeVnetHdr(r.ring[mac-vnetHdrLen : mac])
		tag := tagOf(h.Status, uint16(h.Hv1.Vlan_tci), h.Hv1.Vlan_tpid)
		f := r.ring[mac : mac+snap]
		if vh.gsoType != gsoNone {
			// Cut from the ring: the block is held until the last
			// segment is out.
			if err := r.seg.init(f, vh); err != nil {
				r.seg = segmenter{}
				r.stats.Unsupported.Add(1)
				continue
			}
			if len(r.scratch)-4 < r.seg.hlen+r.seg.mss {
				r.seg = segmenter{}
				r.stats.Unsupported.Add(1)
				continue
			}
			r.segTag = tag
			r.stats.Segmented.Add(1)
			continue
		}
		if vh.flags&vnetNeedsCsum != 0 {
			if !completeChecksum(f, int(vh.csumStart), int(vh.csumOffset)) {
				r.stats.Unsupported.Add(1)
				continue
			}
			r.stats.ChecksumCompleted.Add(1)
		}
		if tag.valid {
			// The 4 bytes in front of the frame are the end of the
			// virtio header, already read: the tag goes in place.
			r.stats.VLANRestored.Add(1)
			return insertVLAN(r.ring[mac-4:], snap, tag.tpid, tag.tci), true
		}
		return f, true
	}
}

// tpacket3HdrLen is TPACKET_ALIGN(sizeof(struct tpacket3_hdr)): the
// sockaddr_ll of a frame follows it.
const tpacket3HdrLen = (int(unsafe.Sizeof(unix.Tpacket3Hdr{})) + unix.TPACKET_ALIGNMENT - 1) &^ (unix.TPACKET_ALIGNMENT - 1)

// ReadBatch waits for frames and calls fn with each frame of one ring
// block (one or more), in order, then returns. A frame is valid only
// during its fn call; fn may modify it. It returns ErrClosed once Close was
// called.
func (r *Ring) ReadBatch(fn func(frame []byte)) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return ErrClosed
	}
	r.rmu.Lock()
	defer r.rmu.Unlock()
	for {
		if !r.held {
			if err := r.waitBlock(); err != nil {
				return err
			}
		}
		got := false
		for f, ok := r.next(); ok; f, ok = r.next() {
			fn(f)
			got = true
		}
		if got {
			return nil
		}
	}
}

// ReadPacket copies the next wire frame into buf, as Port.ReadPacket does;
// frames longer than buf are skipped.
func (r *Ring) ReadPacket(buf []byte) (int, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return 0, ErrClosed
	}
	r.rmu.Lock()
	defer r.rmu.Unlock()
	for {
		if !r.held && r.seg.f == nil {
			if err := r.waitBlock(); err != nil {
				return 0, err
			}
		}
		f, ok := r.next()
		if ok && len(f) <= len(buf) {
			return copy(buf, f), nil
		}
	}
}

// WritePacket sends one frame as it is.
func (r *Ring) WritePacket(b []byte) error {
	one := [1][]byte{b}
	_, err := r.WriteBatch(one[:])
	return err
}

// txBatch is the most frames one sendmmsg call sends.
const txBatch = 64

// WriteBatch sends the frames in order, with as few system calls as it
// can, and returns how many could not be sent and the first error. A frame
// the interface refuses (larger than its MTU, empty) is skipped and the
// rest still go. When the socket's send buffer is full it waits for room,
// as WritePacket of Port does; Close ends the wait, and the frames not yet
// sent count as failed. With a TX ring, a frame longer than the MTU the
// interface had when the ring was opened (plus Ethernet and VLAN headers)
// is refused; one the kernel refuses after an MTU change is dropped
// without being counted.
func (r *Ring) WriteBatch(frames [][]byte) (failed int, err error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return len(frames), ErrClosed
	}
	if r.tx != nil {
		return r.writeTxRing(frames)
	}
	fail := func(e error) {
		failed++
		if err == nil {
			err = e
		}
	}
	var iov [txBatch]unix.Iovec
	var msgs [txBatch]unix.Mmsghdr
	for len(frames) > 0 {
		if len(frames[0]) == 0 {
			fail(errors.New("afpacket: WriteBatch: empty frame"))
			frames = frames[1:]
			continue
		}
		k := 0
		for _, f := range frames[:min(len(frames), txBatch)] {
			if len(f) == 0 {
				break // sent alone next time round, and refused
			}
			iov[k].Base = &f[0]
			iov[k].SetLen(len(f))
			msgs[k] = unix.Mmsghdr{}
			msgs[k].Hdr.Iov = &iov[k]
			msgs[k].Hdr.SetIovlen(1)
			k++
		}
		sent, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(r.txfd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(k), 0, 0, 0)
		switch errno {
		case 0:
			frames = frames[sent:]
		case unix.EINTR:
		case unix.EAGAIN, unix.ENOBUFS:
			if werr := r.waitTx(); werr != nil {
				failed += len(frames)
				if err == nil {
					err = werr
				}
				return failed, err
			}
		default:
			// sendmmsg fails only when the first frame fails: that
			// frame is refused, the others go on.
			fail(fmt.Errorf("afpacket: %s: %w", r.name, os.NewSyscallError("sendmmsg", errno)))
			frames = frames[1:]
		}
	}
	return failed, err
}

func (r *Ring) waitTx() error { return pollOrClosed(r.name, r.txfd, unix.POLLOUT, r.efd) }

// Close unmaps the ring and closes the sockets. Blocked calls return
// ErrClosed at once; Close waits for them to leave first. Closing twice is
// not an error.
func (r *Ring) Close() error {
	r.closeOnce.Do(func() {
		one := [8]byte{1}
		_, werr := unix.Write(r.efd, one[:])
		r.mu.Lock()
		defer r.mu.Unlock()
		r.closed = true
		r.was.restore(r.fd, r.name)
		r.release()
		if werr != nil {
			r.closeErr = fmt.Errorf("afpacket: %s: close: %w", r.name, werr)
		}
	})
	return r.closeErr
}
