//go:build linux

package xsk

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/internal/netnsrun"
)

// ErrClosed is returned by a closed Port's methods. It wraps net.ErrClosed,
// so errors.Is(err, net.ErrClosed) holds as for a closed socket.
var ErrClosed = fmt.Errorf("xsk: port closed: %w", net.ErrClosed)

// Options size a Port. The zero value is the default.
type Options struct {
	// Frames is the number of UMEM frames to receive into, a power of
	// two; 0 is 8192 (16 MiB of 2 KiB frames). They are all in the fill
	// ring or the receive ring, so Frames is also how many frames the
	// kernel can queue while the switch is descheduled: 8192 bridge 27 ms
	// at 300k frames/s. Sending has min(Frames, 2048) frames of its own.
	Frames int
	// NoZeroCopy binds in copy mode even where the driver offers zero
	// copy.
	NoZeroCopy bool
}

// A UMEM frame is 2 KiB, or a page where the MTU needs more (the kernel
// keeps XDP_PACKET_HEADROOM of each frame); veth's native XDP holds a
// frame in one page, so a larger MTU refuses native XDP anyway.
const (
	smallFrame = 2048
	pageFrame  = 4096
)

// Port is an AF_XDP socket on queue 0 of an interface, with its XDP program
// and UMEM. ReadBatch and ReadPacket may be called from one goroutine at a
// time; WritePacket and WriteBatch from any number at once. They do not
// allocate.
type Port struct {
	name    string
	ifindex int
	mode    string
	// vlanMeta says whether the XDP program puts back VLAN tags the
	// driver strips into metadata.
	vlanMeta string
	zc       bool
	maxLen   int // longest frame the interface sends: MTU + Ethernet + a tag

	// mu is held shared by every read and write for its whole run and
	// exclusively by Close, so the memory is never unmapped and the
	// descriptors never closed under a call.
	mu     sync.RWMutex
	closed bool
	fd     int
	efd    int // eventfd Close makes readable, polled beside fd
	pfd    int // packet socket holding the interface promiscuous
	umem   []byte
	maps   [4][]byte // the fill, completion, RX and TX rings' mappings
	fsize  uint64    // bytes per UMEM frame
	nrx    uint64    // frames [0, nrx) receive, [nrx, nrx+ntx) send
	ntx    uint64

	fill, comp addrRing
	rx, tx     descRing

	prog  *ebpf.Program
	xmap  *ebpf.Map
	xlink link.Link

	rmu sync.Mutex // serialises readers

	tmu  sync.Mutex // serialises writers over tx, comp and free
	free []uint64   // send frames not in flight

	closeOnce sync.Once
	closeErr  error
}

// ring is the part of an AF_XDP ring both kinds share: the kernel's
// producer and consumer indexes and flags in the ring's mapping. The side
// this process owns is also kept in cached, the other read atomically.
type ring struct {
	prod, cons, flags *uint32
	mask, size        uint32
}

type addrRing struct {
	ring
	addrs unsafe.Pointer // [size]uint64
}

func (r *addrRing) at(i uint32) *uint64 {
	return (*uint64)(unsafe.Add(r.addrs, uintptr(i&r.mask)*8))
}

type descRing struct {
	ring
	descs unsafe.Pointer // [size]unix.XDPDesc
}

func (r *descRing) at(i uint32) *unix.XDPDesc {
	return (*unix.XDPDesc)(unsafe.Add(r.descs, uintptr(i&r.mask)*unsafe.Sizeof(unix.XDPDesc{})))
}

// Open opens a Port on interface ifname of the caller's network namespace.
func Open(ifname string, o Options) (*Port, error) { return open(ifname, o) }

// OpenNetns opens a Port on interface ifname of the named network namespace
// (a file in /var/run/netns). The socket, the program and its link belong
// to that namespace's interface; the Port works from any thread.
func OpenNetns(nsName, ifname string, o Options) (*Port, error) {
	var p *Port
	err := netnsrun.DoNamed(nsName, func() (err error) {
		p, err = open(ifname, o)
		return err
	})
	return p, err
}

func open(ifname string, o Options) (*Port, error) {
	if o.Frames == 0 {
		o.Frames = 8192
	}
	if o.Frames < 64 || o.Frames&(o.Frames-1) != 0 {
		return nil, fmt.Errorf("xsk: %s: %d frames: want a power of two, 64 or more", ifname, o.Frames)
	}
	p := &Port{name: ifname, fd: -1, efd: -1, pfd: -1, nrx: uint64(o.Frames), ntx: uint64(min(o.Frames, 2048))}
	fail := func(what string, err error) (*Port, error) {
		p.release()
		return nil, fmt.Errorf("xsk: %s: %s: %w", ifname, what, err)
	}
	var err error
	// A packet socket receiving nothing (protocol 0) finds the interface
	// and holds it promiscuous while the port is open, and the kernel
	// drops the membership if the process dies: the switch takes every
	// frame, as the afpacket ports do, not only those for its MAC.
	if p.pfd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
		return fail("packet socket", os.NewSyscallError("socket", err))
	}
	ifr, err := unix.NewIfreq(ifname)
	if err == nil {
		err = unix.IoctlIfreq(p.pfd, unix.SIOCGIFINDEX, ifr)
	}
	if err != nil {
		return fail("interface index", err)
	}
	p.ifindex = int(ifr.Uint32())
	if err := unix.IoctlIfreq(p.pfd, unix.SIOCGIFMTU, ifr); err != nil {
		return fail("MTU", err)
	}
	p.maxLen = int(ifr.Uint32()) + 14 + 4
	p.fsize = smallFrame
	if p.maxLen > smallFrame-unix.XDP_PACKET_HEADROOM {
		p.fsize = pageFrame
	}
	if q := rxQueues(p.pfd, ifname); q > 1 {
		return fail("queues", fmt.Errorf("%d receive queues; the port binds one socket, to queue 0, and the frames of the others would bypass the switch (make it one queue, ethtool -L)", q))
	}
	if err := checkVethPeer(p.pfd, ifname); err != nil {
		return fail("checksums", err)
	}
	mreq := unix.PacketMreq{Ifindex: int32(p.ifindex), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(p.pfd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		return fail("promiscuous mode", err)
	}
	if p.efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fail("eventfd", err)
	}
	native, attachErr := p.attach()
	if attachErr != nil {
		return fail("XDP program", attachErr)
	}
	// Zero copy needs the driver's support (veth has none): ask, and if
	// the bind is refused, start again in copy mode on a fresh socket.
	var zcErr error
	if native && !o.NoZeroCopy {
		if zcErr = p.socket(unix.XDP_ZEROCOPY); zcErr == nil {
			p.zc = true
		} else {
			p.closeSocket()
		}
	}
	if !p.zc {
		if err := p.socket(unix.XDP_COPY); err != nil {
			return fail("AF_XDP socket", err)
		}
	}
	switch {
	case p.zc:
		p.mode = "native, zero-copy"
	case native && o.NoZeroCopy:
		p.mode = "native, copy"
	case native:
		p.mode = fmt.Sprintf("native, copy (zero-copy refused: %v)", zcErr)
	default:
		p.mode = "generic, copy (native XDP refused)"
	}
	p.mode += "; VLAN tags in metadata " + p.vlanMeta
	if err := p.xmap.Put(uint32(0), uint32(p.fd)); err != nil {
		return fail("XSKMAP", err)
	}
	return p, nil
}

// attach loads the XDP program and its XSKMAP and attaches it to the
// interface, in the driver where it can (native) or else after the kernel
// made an skb of the frame (generic). The program restores VLAN tags from
// the driver's metadata where it can: that needs a program bound to the
// interface, which only native mode takes. p.vlanMeta says whether it
// does, and if not why.
func (p *Port) attach() (native bool, err error) {
	p.xmap, err = ebpf.NewMap(&ebpf.MapSpec{Name: "p4mesh_xsks", Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		return false, fmt.Errorf("XSKMAP: %w", err)
	}
	load := func(kfunc btf.TypeID) (*ebpf.Program, error) {
		spec := &ebpf.ProgramSpec{
			Name:         "p4mesh_xsk",
			Type:         ebpf.XDP,
			License:      "Dual MIT/GPL",
			Instructions: redirectProgram(p.xmap.FD(), kfunc),
		}
		if kfunc != 0 {
			spec.Ifindex, spec.Flags = uint32(p.ifindex), unix.BPF_F_XDP_DEV_BOUND_ONLY
		}
		return ebpf.NewProgram(spec)
	}
	try := func(kfunc btf.TypeID, flags link.XDPAttachFlags) error {
		prog, err := load(kfunc)
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: p.ifindex, Flags: flags})
		if err != nil {
			prog.Close()
			return err
		}
		p.prog, p.xlink = prog, l
		return nil
	}
	kfunc, kerr := vlanTagKfunc()
	if kerr == nil {
		if kerr = try(kfunc, link.XDPDriverMode); kerr == nil {
			p.vlanMeta = "restored where the driver reports them (bpf_xdp_metadata_rx_vlan_tag; veth does)"
			return true, nil
		}
	}
	p.vlanMeta = fmt.Sprintf("not restored (%v)", kerr)
	nerr := try(0, link.XDPDriverMode)
	if nerr == nil {
		return true, nil
	}
	if err = try(0, link.XDPGenericMode); err == nil {
		return false, nil
	}
	return false, fmt.Errorf("attach: native: %v; generic: %w", nerr, err)
}

// socket makes the AF_XDP socket, its UMEM and rings, and binds it to queue
// 0 with bind flags mode (XDP_ZEROCOPY or XDP_COPY).
func (p *Port) socket(mode uint16) error {
	var err error
	if p.fd, err = unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
		return os.NewSyscallError("socket(AF_XDP)", err)
	}
	nrx, ntx := uint32(p.nrx), uint32(p.ntx)
	if p.umem == nil {
		p.umem, err = unix.Mmap(-1, 0, int((p.nrx+p.ntx)*p.fsize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
		if err != nil {
			return fmt.Errorf("UMEM: %w", err)
		}
	}
	reg := unix.XDPUmemReg{Addr: uint64(uintptr(unsafe.Pointer(&p.umem[0]))), Len: uint64(len(p.umem)), Size: uint32(p.fsize)}
	if err := setsockopt(p.fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return fmt.Errorf("XDP_UMEM_REG: %w", err)
	}
	for _, o := range [][2]uint32{{unix.XDP_UMEM_FILL_RING, nrx}, {unix.XDP_UMEM_COMPLETION_RING, ntx}, {unix.XDP_RX_RING, nrx}, {unix.XDP_TX_RING, ntx}} {
		size := o[1]
		if err := setsockopt(p.fd, int(o[0]), unsafe.Pointer(&size), 4); err != nil {
			return fmt.Errorf("ring size (option %d): %w", o[0], err)
		}
	}
	var off unix.XDPMmapOffsets
	offLen := uint32(unsafe.Sizeof(off))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(p.fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS, uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&offLen)), 0); errno != 0 {
		return fmt.Errorf("XDP_MMAP_OFFSETS: %w", errno)
	}
	mapRing := func(i int, pgoff int64, ro unix.XDPRingOffset, n uint32, descSize uint64) (ring, unsafe.Pointer, error) {
		m, err := unix.Mmap(p.fd, pgoff, int(ro.Desc+uint64(n)*descSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return ring{}, nil, err
		}
		p.maps[i] = m
		base := unsafe.Pointer(&m[0])
		return ring{
			prod:  (*uint32)(unsafe.Add(base, ro.Producer)),
			cons:  (*uint32)(unsafe.Add(base, ro.Consumer)),
			flags: (*uint32)(unsafe.Add(base, ro.Flags)),
			mask:  n - 1, size: n,
		}, unsafe.Add(base, ro.Desc), nil
	}
	if p.fill.ring, p.fill.addrs, err = mapRing(0, unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, nrx, 8); err != nil {
		return fmt.Errorf("mmap fill ring: %w", err)
	}
	if p.comp.ring, p.comp.addrs, err = mapRing(1, unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, ntx, 8); err != nil {
		return fmt.Errorf("mmap completion ring: %w", err)
	}
	ds := uint64(unsafe.Sizeof(unix.XDPDesc{}))
	if p.rx.ring, p.rx.descs, err = mapRing(2, unix.XDP_PGOFF_RX_RING, off.Rx, nrx, ds); err != nil {
		return fmt.Errorf("mmap RX ring: %w", err)
	}
	if p.tx.ring, p.tx.descs, err = mapRing(3, unix.XDP_PGOFF_TX_RING, off.Tx, ntx, ds); err != nil {
		return fmt.Errorf("mmap TX ring: %w", err)
	}
	// Every receive frame goes to the fill ring, which is as long as
	// there are receive frames: a frame read is always given back at once.
	for i := range nrx {
		*p.fill.at(i) = uint64(i) * p.fsize
	}
	atomic.StoreUint32(p.fill.prod, nrx)
	p.free = p.free[:0]
	for i := range p.ntx {
		p.free = append(p.free, (p.nrx+i)*p.fsize)
	}
	// Copy mode sends 32 frames per sendto by default; a switch batch
	// is up to 512 (Linux 6.17 lets a socket raise it: best effort).
	budget := uint32(256)
	_ = setsockopt(p.fd, unix.XDP_MAX_TX_SKB_BUDGET, unsafe.Pointer(&budget), 4)
	sa := unix.SockaddrXDP{Flags: mode | unix.XDP_USE_NEED_WAKEUP, Ifindex: uint32(p.ifindex), QueueID: 0}
	if err := unix.Bind(p.fd, &sa); err != nil {
		return fmt.Errorf("bind queue 0: %w", err)
	}
	return nil
}

func setsockopt(fd, opt int, v unsafe.Pointer, n uintptr) error {
	if _, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(v), n, 0); errno != 0 {
		return errno
	}
	return nil
}

// closeSocket undoes socket, for another try.
func (p *Port) closeSocket() {
	for i, m := range p.maps {
		if m != nil {
			unix.Munmap(m)
			p.maps[i] = nil
		}
	}
	if p.fd >= 0 {
		unix.Close(p.fd)
		p.fd = -1
	}
}

func (p *Port) release() {
	if p.xlink != nil {
		p.xlink.Close()
	}
	if p.prog != nil {
		p.prog.Close()
	}
	if p.xmap != nil {
		p.xmap.Close()
	}
	p.closeSocket()
	if p.umem != nil {
		unix.Munmap(p.umem)
		p.umem = nil
	}
	for _, fd := range []int{p.efd, p.pfd} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// Name is the interface the port is bound to.
func (p *Port) Name() string { return p.name }

// Mode says how the port runs: where the XDP program is attached (native,
// in the driver, or generic) and whether the socket is zero-copy, with the
// reason when it could not be.
func (p *Port) Mode() string { return p.mode }

// ZeroCopy reports whether frames are read and sent in place in the UMEM.
func (p *Port) ZeroCopy() bool { return p.zc }

// maxBatch is the most frames one ReadBatch hands over: a switch batch's
// room (dataplane's 512 pending frames) with some to spare.
const maxBatch = 256

// ReadBatch waits for frames and calls fn with each of up to 256 received
// frames, in order, then gives them back to the kernel and returns. A
// frame is valid only during its fn call; fn may modify it. It returns
// ErrClosed once Close was called.
func (p *Port) ReadBatch(fn func(frame []byte)) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	for {
		cons := *p.rx.cons // only this side writes it
		n := atomic.LoadUint32(p.rx.prod) - cons
		if n == 0 {
			if err := p.wait(unix.POLLIN); err != nil {
				return err
			}
			continue
		}
		n = min(n, maxBatch)
		fprod := *p.fill.prod
		for i := range n {
			d := p.rx.at(cons + i)
			fn(p.umem[d.Addr : d.Addr+uint64(d.Len)])
			*p.fill.at(fprod + i) = d.Addr &^ (p.fsize - 1)
		}
		atomic.StoreUint32(p.rx.cons, cons+n)
		atomic.StoreUint32(p.fill.prod, fprod+n)
		if p.zc && atomic.LoadUint32(p.fill.flags)&unix.XDP_RING_NEED_WAKEUP != 0 {
			p.kickRx()
		}
		return nil
	}
}

// ReadPacket copies the next frame into buf, as the afpacket ports do;
// frames longer than buf are dropped.
func (p *Port) ReadPacket(buf []byte) (int, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return 0, ErrClosed
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	for {
		cons := *p.rx.cons
		if atomic.LoadUint32(p.rx.prod) == cons {
			if err := p.wait(unix.POLLIN); err != nil {
				return 0, err
			}
			continue
		}
		d := p.rx.at(cons)
		k := -1
		if int(d.Len) <= len(buf) {
			k = copy(buf, p.umem[d.Addr:d.Addr+uint64(d.Len)])
		}
		fprod := *p.fill.prod
		*p.fill.at(fprod) = d.Addr &^ (p.fsize - 1)
		atomic.StoreUint32(p.rx.cons, cons+1)
		atomic.StoreUint32(p.fill.prod, fprod+1)
		if k >= 0 {
			return k, nil
		}
	}
}

// kickRx tells a zero-copy driver that the fill ring has frames again.
func (p *Port) kickRx() {
	unix.Syscall6(unix.SYS_RECVFROM, uintptr(p.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
}

// kickTx has the kernel send what the TX ring holds: in copy mode sendto
// does the sending (an skb per frame, through the driver's transmit), up to
// a budget per call; in zero-copy mode it wakes the driver.
func (p *Port) kickTx() {
	unix.Syscall6(unix.SYS_SENDTO, uintptr(p.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
}

// wait polls the socket for events and the close eventfd; p.mu is held
// shared. It returns ErrClosed when Close was called.
func (p *Port) wait(events int16) error {
	fds := [2]unix.PollFd{{Fd: int32(p.fd), Events: events}, {Fd: int32(p.efd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds[:], -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("xsk: %s: %w", p.name, os.NewSyscallError("poll", err))
		}
		if fds[1].Revents != 0 {
			return ErrClosed
		}
		return nil
	}
}

// reclaim takes the completed sends' frames back; p.tmu is held.
func (p *Port) reclaim() {
	cons := *p.comp.cons
	n := atomic.LoadUint32(p.comp.prod) - cons
	for i := range n {
		p.free = append(p.free, *p.comp.at(cons + i))
	}
	atomic.StoreUint32(p.comp.cons, cons+n)
}

// WritePacket sends one frame as it is.
func (p *Port) WritePacket(b []byte) error {
	one := [1][]byte{b}
	_, err := p.WriteBatch(one[:])
	return err
}

// WriteBatch copies the frames into the UMEM, queues them on the TX ring
// and has the kernel send them, and returns how many could not be sent and
// the first error. A frame the interface would refuse (empty, longer than
// its MTU allows) is skipped and the rest still go. When every send frame
// is in flight it waits for completions, so a fast sender is slowed down
// instead of losing frames; Close ends the wait, and the frames not yet
// queued count as failed.
func (p *Port) WriteBatch(frames [][]byte) (failed int, err error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return len(frames), ErrClosed
	}
	p.tmu.Lock()
	defer p.tmu.Unlock()
	for len(frames) > 0 {
		p.reclaim()
		prod := *p.tx.prod
		room := min(uint32(len(p.free)), p.tx.size-(prod-atomic.LoadUint32(p.tx.cons)))
		k := uint32(0)
		for k < room && len(frames) > 0 {
			f := frames[0]
			frames = frames[1:]
			if len(f) == 0 || len(f) > p.maxLen || len(f) > int(p.fsize) {
				failed++
				if err == nil {
					err = fmt.Errorf("xsk: %s: a %d-byte frame: the interface sends 1 to %d", p.name, len(f), min(p.maxLen, int(p.fsize)))
				}
				continue
			}
			addr := p.free[len(p.free)-1]
			p.free = p.free[:len(p.free)-1]
			copy(p.umem[addr:addr+p.fsize], f)
			*p.tx.at(prod + k) = unix.XDPDesc{Addr: addr, Len: uint32(len(f))}
			k++
		}
		if k > 0 {
			atomic.StoreUint32(p.tx.prod, prod+k)
		}
		if werr := p.flushTx(k == 0); werr != nil {
			return failed + len(frames), werr
		}
	}
	return failed, err
}

// flushTx has the kernel take what the TX ring holds. In copy mode each
// sendto sends up to its budget, so it is repeated until the ring is empty
// or calls stop making progress for about 10 ms (the frames then go with
// the next call). When stuck (nothing could be queued: every frame in flight)
// it waits for the socket to become writable or completions to come.
func (p *Port) flushTx(stuck bool) error {
	prod := *p.tx.prod
	if p.zc {
		if atomic.LoadUint32(p.tx.flags)&unix.XDP_RING_NEED_WAKEUP != 0 {
			p.kickTx()
		}
	} else {
		// A call that makes no progress met a busy driver (a veth
		// whose peer's queue is full): wait a little and retry, a few
		// times, rather than leave the frames for the next batch,
		// which may never come.
		stalls := 0
		for cons := atomic.LoadUint32(p.tx.cons); cons != prod && stalls < 10; {
			p.kickTx()
			next := atomic.LoadUint32(p.tx.cons)
			if next == cons {
				stalls++
				fds := [1]unix.PollFd{{Fd: int32(p.efd), Events: unix.POLLIN}}
				if n, _ := unix.Poll(fds[:], 1); n > 0 {
					return ErrClosed
				}
			}
			cons = next
		}
	}
	if !stuck {
		return nil
	}
	if atomic.LoadUint32(p.comp.prod) != *p.comp.cons {
		return nil
	}
	p.kickTx()
	fds := [2]unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLOUT}, {Fd: int32(p.efd), Events: unix.POLLIN}}
	// Completions do not wake a poller; a millisecond bounds the wait
	// for them when the socket stays writable.
	if _, err := unix.Poll(fds[:], 1); err != nil && err != unix.EINTR {
		return fmt.Errorf("xsk: %s: %w", p.name, os.NewSyscallError("poll", err))
	}
	if fds[1].Revents != 0 {
		return ErrClosed
	}
	return nil
}

// Stats are the socket's XDP_STATISTICS.
func (p *Port) Stats() (unix.XDPStatistics, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var st unix.XDPStatistics
	if p.closed {
		return st, ErrClosed
	}
	n := uint32(unsafe.Sizeof(st))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(p.fd), unix.SOL_XDP, unix.XDP_STATISTICS, uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&n)), 0); errno != 0 {
		return st, fmt.Errorf("xsk: %s: XDP_STATISTICS: %w", p.name, errno)
	}
	return st, nil
}

// KernelStats implements dataplane.KernelCounters: the frames the kernel
// dropped for want of a fill-ring frame or room in the receive ring. There
// are no fix-ups: the XDP program sees the frames before the kernel's
// receive path changes them.
func (p *Port) KernelStats() dataplane.KernelStats {
	st, _ := p.Stats()
	return dataplane.KernelStats{RxDropped: st.Rx_dropped + st.Rx_ring_full}
}

// Close detaches the XDP program, closes the socket (the interface leaves
// promiscuous mode) and unmaps the memory. A call blocked in another
// goroutine returns ErrClosed at once; Close waits for it to leave. Closing
// twice is not an error.
func (p *Port) Close() error {
	p.closeOnce.Do(func() { p.closeErr = p.close() })
	return p.closeErr
}

func (p *Port) close() error {
	one := [8]byte{1}
	_, werr := unix.Write(p.efd, one[:])
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var err error
	if p.xlink != nil {
		err = p.xlink.Close()
		p.xlink = nil
	}
	p.release()
	if err = errors.Join(err, werr); err != nil {
		return fmt.Errorf("xsk: %s: close: %w", p.name, err)
	}
	return nil
}

// ethtool ioctl ABI (linux/ethtool.h, linux/sockios.h).
const (
	siocEthtool      = 0x8946
	ethtoolGChannels = 0x3c
)

// rxQueues is the interface's receive queue count (ETHTOOL_GCHANNELS: rx
// plus combined), 1 when the driver does not say.
func rxQueues(fd int, ifname string) int {
	var ch [9]uint32 // cmd, max rx/tx/other/combined, rx/tx/other/combined count
	ch[0] = ethtoolGChannels
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [24 - unsafe.Sizeof(uintptr(0))]byte
	}
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&ch)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), siocEthtool, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ch)
	if errno != 0 {
		return 1
	}
	return max(1, int(ch[5]+ch[8]))
}
