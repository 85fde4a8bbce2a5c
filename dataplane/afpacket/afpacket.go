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
// Things the kernel does to frames that a user of a Port has to know:
//
//   - Checksum offload. A frame that a local stack sent with TX checksum
//     offload (veth advertises it, so every stack on the other end of a veth
//     uses it by default) is handed to packet sockets with its TCP or UDP
//     checksum only partially computed (CHECKSUM_PARTIAL: the pseudo-header
//     sum, not the final one). Forwarded unchanged out of another
//     interface, such a frame is dropped by the receiving stack for a bad
//     checksum. Turn TX checksumming off on the interface the frames are
//     sent from (ethtool -K IF tx off; test/topo's Link.DisableTxChecksum).
//     That also turns off TSO, so frames are no larger than the MTU; GSO
//     super-frames larger than the MTU would otherwise arrive whole and fail
//     on the way out with EMSGSIZE.
//   - VLAN offload. Interfaces with RX VLAN offload (veth among them) strip
//     802.1Q tags into packet metadata, so tagged frames arrive untagged.
//     vpc_peering.p4 carries no VLANs, so the Port does not restore them.
package afpacket

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
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

	// rmu serialises readers over rsa and rsalen, the recvfrom source
	// address, kept here so a read does not allocate it.
	rmu    sync.Mutex
	rsa    unix.RawSockaddrLinklayer
	rsalen uint32

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
	return p, nil
}

// Name is the interface the port is bound to.
func (p *Port) Name() string { return p.name }

// Ifindex is the interface index of the port, in its namespace.
func (p *Port) Ifindex() int { return p.ifindex }

// ReadPacket blocks for the next frame that arrived on the interface and
// copies it into buf (which must not be empty); frames the host sent out of
// the interface, the switch's own included, are skipped, and so are frames
// longer than buf. It returns ErrClosed once Close was called.
func (p *Port) ReadPacket(buf []byte) (int, error) {
	if len(buf) == 0 {
		return 0, errors.New("afpacket: ReadPacket: empty buffer")
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return 0, ErrClosed
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	for {
		p.rsalen = unix.SizeofSockaddrLinklayer
		r, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(p.fd),
			uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), unix.MSG_TRUNC,
			uintptr(unsafe.Pointer(&p.rsa)), uintptr(unsafe.Pointer(&p.rsalen)))
		switch errno {
		case 0:
			n := int(r)
			if p.rsa.Pkttype == unix.PACKET_OUTGOING || n > len(buf) {
				continue
			}
			return n, nil
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
			return 0, fmt.Errorf("afpacket: %s: %w", p.name, os.NewSyscallError("recvfrom", errno))
		}
	}
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
	for {
		_, err := unix.Write(p.fd, b)
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
			return fmt.Errorf("afpacket: %s: %w", p.name, os.NewSyscallError("write", err))
		}
	}
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
			return fmt.Errorf("afpacket: %s: %w", p.name, os.NewSyscallError("poll", err))
		}
		if fds[1].Revents != 0 {
			return ErrClosed
		}
		// POLLERR (an interface going down) is read by the next
		// recvfrom/write as its error.
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
