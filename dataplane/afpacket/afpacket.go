//go:build linux

// Package afpacket binds a p4mesh-switch P4 port to a Linux network
// interface through an AF_PACKET raw socket, so the software switch forwards
// real frames between veths, taps or NICs exactly as BMv2's
// simple_switch_grpc does with its -i N@IFNAME ports.
//
// A Port sees every frame that arrives on its interface (promiscuous mode,
// ETH_P_ALL) and never the frames it or the host stack sends out of it, and
// it writes frames byte for byte: the pipeline computes every checksum it
// changes, so nothing is left to the kernel.
//
// A Port reads the frames that were on the wire, not what the kernel made of
// them (see offload.go): the 802.1Q tag that VLAN offload strips into
// packet metadata is put back (PACKET_AUXDATA, as libpcap does), a TCP or
// UDP checksum that TX checksum offload of a local sender left partial is
// completed, and a GSO or GRO super-frame larger than the MTU is cut into
// the frames it stands for (PACKET_VNET_HDR). The port also turns GRO and
// LRO off on its interface while it is open, so the kernel does not merge
// frames only for the port to split them again.
package afpacket

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/p4mesh/p4mesh/dataplane"
)

// ErrClosed is returned by a closed Port's methods. It wraps net.ErrClosed,
// so errors.Is(err, net.ErrClosed) holds as for a closed socket.
var ErrClosed = fmt.Errorf("afpacket: port closed: %w", net.ErrClosed)

// SocketBuffer is the receive and send buffer size asked of the kernel for
// each socket: about 2,000 full-size frames, so a burst survives a
// descheduled switch goroutine. Root may exceed net.core.rmem_max (the
// *BUFFORCE options); otherwise the kernel caps it there.
const SocketBuffer = 4 << 20

// packetIgnoreOutgoing is PACKET_IGNORE_OUTGOING (Linux 4.20), not in every
// x/sys version.
const packetIgnoreOutgoing = 23

// Port is one interface as a P4 port: an AF_PACKET SOCK_RAW socket bound to
// it. ReadPacket and WritePacket may be called from different goroutines,
// and WritePacket from several at once; they do not allocate.
type Port struct {
	name    string
	ifindex int

	// mu is held shared by every ReadPacket and WritePacket for its whole
	// run and exclusively by Close, so the descriptors are never closed
	// (and their numbers reused) under a call.
	mu     sync.RWMutex
	closed bool
	fd     int
	// efd is an eventfd that Close makes readable: every call polls it
	// beside fd, so a blocked reader or writer wakes up at once.
	efd int

	// rmu serialises readers over the recvmsg state below, kept here so a
	// read does not allocate it.
	rmu  sync.Mutex
	rsa  unix.RawSockaddrLinklayer
	vh   [vnetHdrLen]byte
	iov  [2]unix.Iovec
	msg  unix.Msghdr
	cmsg [64]byte
	// seg cuts a super-frame, copied to gso, into wire frames that the
	// next ReadPacket calls return; segTag is its VLAN tag to restore.
	seg    segmenter
	gso    []byte
	segTag vlanTag

	was   coalescing
	stats Stats
	// drops totals PACKET_STATISTICS' drops, which reset on each read.
	drops atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

// Open opens a Port on interface ifname of the caller's network namespace.
func Open(ifname string) (*Port, error) {
	return open(ifname)
}

// OpenNetns opens a Port on interface ifname of the named network namespace
// (one of `ip netns list`, a file in /var/run/netns). A socket belongs to the
// namespace it was created in, so the Port keeps working there while the
// caller, e.g. a test in the root namespace, injects and captures frames.
func OpenNetns(nsName, ifname string) (*Port, error) {
	type result struct {
		p   *Port
		err error
	}
	ch := make(chan result, 1)
	// A fresh goroutine on a locked thread: if the thread cannot be put
	// back in its namespace it stays locked, and Go ends it with the
	// goroutine instead of running other code in the wrong namespace.
	go func() {
		runtime.LockOSThread()
		p, err, restored := openIn(nsName, ifname)
		if restored {
			runtime.UnlockOSThread()
		}
		ch <- result{p, err}
	}()
	r := <-ch
	return r.p, r.err
}

func openIn(nsName, ifname string) (p *Port, err error, restored bool) {
	orig, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("afpacket: open own netns: %w", err), true
	}
	defer unix.Close(orig)
	ns, err := unix.Open("/var/run/netns/"+nsName, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("afpacket: netns %q: %w", nsName, err), true
	}
	defer unix.Close(ns)
	if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("afpacket: enter netns %q: %w", nsName, err), true
	}
	p, err = open(ifname)
	if rerr := unix.Setns(orig, unix.CLONE_NEWNET); rerr != nil {
		if p != nil {
			p.Close()
		}
		return nil, fmt.Errorf("afpacket: leave netns %q: %w", nsName, rerr), false
	}
	if err != nil {
		return nil, fmt.Errorf("netns %q: %w", nsName, err), true
	}
	return p, nil, true
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Stats counts what a port did to make frames read equal the wire's.
type Stats struct {
	// VLANRestored counts frames whose stripped 802.1Q/802.1ad tag was
	// put back.
	VLANRestored atomic.Uint64
	// ChecksumCompleted counts frames whose partial TCP/UDP checksum was
	// completed.
	ChecksumCompleted atomic.Uint64
	// Segmented counts super-frames cut into wire frames; Segments the
	// frames they gave.
	Segmented, Segments atomic.Uint64
	// Unsupported counts super-frames of a kind that cannot be cut
	// (dropped), and frames with checksum offsets outside the frame.
	Unsupported atomic.Uint64
}

// Stats returns the port's offload counters.
func (p *Port) Stats() *Stats { return &p.stats }

// KernelStats implements dataplane.KernelCounters: the frames the kernel
// dropped because the socket's receive buffer was full, and the fix-ups.
func (p *Port) KernelStats() dataplane.KernelStats {
	p.mu.RLock()
	if !p.closed {
		if st, err := unix.GetsockoptTpacketStats(p.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			p.drops.Add(uint64(st.Drops))
		}
	}
	p.mu.RUnlock()
	return p.stats.kernel(p.drops.Load())
}

func (s *Stats) kernel(drops uint64) dataplane.KernelStats {
	return dataplane.KernelStats{
		RxDropped:         drops,
		VLANRestored:      s.VLANRestored.Load(),
		ChecksumCompleted: s.ChecksumCompleted.Load(),
		Segmented:         s.Segmented.Load(),
		Segments:          s.Segments.Load(),
		Unsupported:       s.Unsupported.Load(),
	}
}

// vlanTag is a tag the kernel stripped from a received frame.
type vlanTag struct {
	valid     bool
	tpid, tci uint16
}

// tagOf reads the tag from a tpacket status and its tci and tpid fields.
func tagOf(status uint32, tci, tpid uint16) vlanTag {
	if status&unix.TP_STATUS_VLAN_VALID == 0 {
		return vlanTag{}
	}
	if status&unix.TP_STATUS_VLAN_TPID_VALID == 0 || tpid == 0 {
		tpid = 0x8100
	}
	return vlanTag{valid: true, tpid: tpid, tci: tci}
}

// setSocketOffloadInfo asks the kernel for each frame's stripped VLAN tag
// (PACKET_AUXDATA) and checksum and segmentation state (PACKET_VNET_HDR).
func setSocketOffloadInfo(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
		return fmt.Errorf("PACKET_AUXDATA: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		return fmt.Errorf("PACKET_VNET_HDR: %w", err)
	}
	return nil
}

func open(ifname string) (*Port, error) {
	// Protocol 0 receives nothing until bind, so no frame of another
	// interface is queued in between.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("afpacket: %s: socket: %w", ifname, os.NewSyscallError("socket", err))
	}
	p := &Port{name: ifname, fd: fd, efd: -1}
	fail := func(what string, err error) (*Port, error) {
		unix.Close(fd)
		if p.efd >= 0 {
			unix.Close(p.efd)
		}
		return nil, fmt.Errorf("afpacket: %s: %s: %w", ifname, what, err)
	}
	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		return fail("interface name", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return fail("interface index", err)
	}
	p.ifindex = int(ifr.Uint32())
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: p.ifindex}); err != nil {
		return fail("bind", err)
	}
	mreq := unix.PacketMreq{Ifindex: int32(p.ifindex), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		return fail("promiscuous mode", err)
	}
	// Older kernels lack the option; ReadPacket filters by packet type too.
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, packetIgnoreOutgoing, 1)
	if err := setSocketOffloadInfo(fd); err != nil {
		return fail("socket options", err)
	}
	for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], SocketBuffer) != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], SocketBuffer); err != nil {
				return fail("socket buffer", err)
			}
		}
	}
	p.efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fail("eventfd", err)
	}
	p.was = disableCoalescing(fd, ifname)
	p.msg.Name = (*byte)(unsafe.Pointer(&p.rsa))
	p.msg.Iov = &p.iov[0]
	p.msg.SetIovlen(len(p.iov))
	p.msg.Control = &p.cmsg[0]
	p.iov[0].Base = &p.vh[0]
	p.iov[0].SetLen(vnetHdrLen)
	return p, nil
}

// Name is the interface the port is bound to.
func (p *Port) Name() string { return p.name }

// Ifindex is the interface index of the port, in its namespace.
func (p *Port) Ifindex() int { return p.ifindex }

// ReadPacket blocks for the next frame that arrived on the interface and
// copies it into buf (which must not be empty), as it was on the wire (see
// the package comment); frames the host sent out of the interface, the
// switch's own included, are skipped, and so are frames longer than buf
// less 4 bytes (the room a restored VLAN tag needs). It returns ErrClosed
// once Close was called.
func (p *Port) ReadPacket(buf []byte) (int, error) {
	if len(buf) <= 4+14 {
		return 0, errors.New("afpacket: ReadPacket: buffer too small")
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return 0, ErrClosed
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	for {
		if !p.seg.done && p.seg.f != nil {
			if n := p.nextSegment(buf); n > 0 {
				return n, nil
			}
			continue
		}
		p.msg.Namelen = unix.SizeofSockaddrLinklayer
		p.msg.SetControllen(len(p.cmsg))
		p.iov[1].Base = &buf[4]
		p.iov[1].SetLen(len(buf) - 4)
		r, _, errno := unix.Syscall(unix.SYS_RECVMSG, uintptr(p.fd), uintptr(unsafe.Pointer(&p.msg)), unix.MSG_TRUNC)
		switch errno {
		case 0:
			n := int(r) - vnetHdrLen
			if p.rsa.Pkttype == unix.PACKET_OUTGOING || n > len(buf)-4 || n < 14 {
				continue
			}
			if m := p.fixup(buf, n); m > 0 {
				return m, nil
			}
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if err := p.wait(unix.POLLIN); err != nil {
				return 0, err
			}
		case unix.ENETDOWN:
			// The interface went down; the socket stays bound and
			// receives again once it is back up.
			if err := p.wait(unix.POLLIN); err != nil {
				return 0, err
			}
		default:
			return 0, fmt.Errorf("afpacket: %s: %w", p.name, os.NewSyscallError("recvmsg", errno))
		}
	}
}

// auxTag finds the VLAN tag in the PACKET_AUXDATA control message of the
// last recvmsg.
func (p *Port) auxTag() vlanTag {
	c := p.cmsg[:p.msg.Controllen]
	hl := unix.CmsgLen(0)
	for len(c) >= hl {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
		l := int(h.Len)
		if l < hl || l > len(c) {
			break
		}
		if h.Level == unix.SOL_PACKET && h.Type == unix.PACKET_AUXDATA && l >= hl+int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
			a := (*unix.TpacketAuxdata)(unsafe.Pointer(&c[hl]))
			return tagOf(a.Status, a.Vlan_tci, a.Vlan_tpid)
		}
		c = c[min(len(c), unix.CmsgSpace(l-hl)):]
	}
	return vlanTag{}
}

// fixup turns the n-byte frame just read into buf[4:] into the wire frame
// in buf and returns its length, 0 to read another.
func (p *Port) fixup(buf []byte, n int) int {
	h := decodeVnetHdr(p.vh[:])
	tag := p.auxTag()
	f := buf[4 : 4+n]
	if h.gsoType != gsoNone {
		if p.gso == nil {
			p.gso = make([]byte, 65536+vnetHdrLen+64)
		}
		if n > len(p.gso) {
			p.stats.Unsupported.Add(1)
			return 0
		}
		g := p.gso[:copy(p.gso, f)]
		if err := p.seg.init(g, h); err != nil {
			p.seg = segmenter{}
			p.stats.Unsupported.Add(1)
			return 0
		}
		p.segTag = tag
		p.stats.Segmented.Add(1)
		return p.nextSegment(buf)
	}
	if h.flags&vnetNeedsCsum != 0 {
		if !completeChecksum(f, int(h.csumStart), int(h.csumOffset)) {
			p.stats.Unsupported.Add(1)
			return 0
		}
		p.stats.ChecksumCompleted.Add(1)
	}
	if tag.valid {
		p.stats.VLANRestored.Add(1)
		return len(insertVLAN(buf, n, tag.tpid, tag.tci))
	}
	return copy(buf, f)
}

// nextSegment writes the next segment of the pending super-frame into buf,
// returning 0 when there is none (or it does not fit).
func (p *Port) nextSegment(buf []byte) int {
	if len(buf)-4 < p.seg.hlen+p.seg.mss {
		p.seg.done = true
		p.stats.Unsupported.Add(1)
		return 0
	}
	n := p.seg.next(buf[4:])
	if n == 0 {
		return 0
	}
	p.stats.Segments.Add(1)
	if p.segTag.valid {
		p.stats.VLANRestored.Add(1)
		return len(insertVLAN(buf, n, p.segTag.tpid, p.segTag.tci))
	}
	return copy(buf, buf[4:4+n])
}

// WritePacket sends b out of the interface as it is. When the socket's send
// buffer is full it waits for room, so a fast sender is slowed down instead
// of losing frames; Close ends the wait with ErrClosed.
func (p *Port) WritePacket(b []byte) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	if len(b) == 0 {
		return errors.New("afpacket: WritePacket: empty frame")
	}
	// The socket has PACKET_VNET_HDR on: a zero header in front says the
	// frame is final (no checksum to complete, nothing to segment).
	var zero [vnetHdrLen]byte
	iov := [2]unix.Iovec{{Base: &zero[0]}, {Base: &b[0]}}
	iov[0].SetLen(vnetHdrLen)
	iov[1].SetLen(len(b))
	for {
		_, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(p.fd), uintptr(unsafe.Pointer(&iov[0])), 2)
		var err error
		if errno != 0 {
			err = errno
		}
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EAGAIN, unix.ENOBUFS:
			if err := p.wait(unix.POLLOUT); err != nil {
				return err
			}
		default:
			return fmt.Errorf("afpacket: %s: %w", p.name, os.NewSyscallError("writev", err))
		}
	}
}

// wait polls the socket for events and the close eventfd; p.mu is held
// shared. It returns ErrClosed when Close was called.
func (p *Port) wait(events int16) error { return pollOrClosed(p.name, p.fd, events, p.efd) }

// pollOrClosed waits until fd has one of events or the eventfd efd, which
// Close writes, is readable: then it returns ErrClosed. POLLERR (an
// interface going down) is left for the next recvfrom/write to report as
// its error.
func pollOrClosed(name string, fd int, events int16, efd int) error {
	fds := [2]unix.PollFd{{Fd: int32(fd), Events: events}, {Fd: int32(efd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds[:], -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("afpacket: %s: %w", name, os.NewSyscallError("poll", err))
		}
		if fds[1].Revents != 0 {
			return ErrClosed
		}
		return nil
	}
}

// Close closes the socket, which also leaves promiscuous mode. A ReadPacket
// or WritePacket blocked in another goroutine returns ErrClosed at once;
// Close waits for it to leave, then closes the descriptors. Closing twice
// is not an error.
func (p *Port) Close() error {
	p.closeOnce.Do(func() { p.closeErr = p.close() })
	return p.closeErr
}

func (p *Port) close() error {
	// Wake the blocked calls first: they hold mu shared, so Lock would
	// wait for them forever otherwise. The eventfd stays readable, so
	// calls that start later return at once too.
	one := [8]byte{1}
	_, werr := unix.Write(p.efd, one[:])
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.was.restore(p.fd, p.name)
	err := unix.Close(p.fd)
	unix.Close(p.efd)
	if err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("afpacket: %s: close: %w", p.name, err)
	}
	return nil
}
