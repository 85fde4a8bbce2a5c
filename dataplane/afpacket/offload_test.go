//go:build linux

package afpacket

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/p4mesh/p4mesh/test/topo"
)

// The tests here send frames through real veth pairs and read them with a
// Port: the kernel does the offloading (VLAN stripping, partial checksums,
// GSO), the Port must undo it. Checksums are checked with the test's own
// sum, written apart from the package's.

var (
	macStack = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x1a}
	macPort  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x1b}
	ipStack  = netip.MustParseAddr("198.18.0.1")
	ipFar    = netip.MustParseAddr("198.18.0.2")
)

// oracleSum is the RFC 1071 sum of b, 16 bits at a time.
func oracleSum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return s
}

// checkIPv4L4 fails unless f is Ethernet/IPv4 with valid IP and TCP/UDP
// checksums, and returns the IP header and L4 segment.
func checkIPv4L4(t *testing.T, f []byte) (ip, l4 []byte) {
	t.Helper()
	if len(f) < 34 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		t.Fatalf("not IPv4: %x", f)
	}
	ip = f[14:]
	ihl := int(ip[0]&15) * 4
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	if tot > len(ip) {
		t.Fatalf("IP total length %d > %d bytes", tot, len(ip))
	}
	ip = ip[:tot]
	if oracleSum(ip[:ihl]) != 0xffff {
		t.Errorf("bad IPv4 header checksum in %x", ip[:ihl])
	}
	l4 = ip[ihl:]
	pseudo := append(append([]byte{}, ip[12:20]...), 0, ip[9], byte(len(l4)>>8), byte(len(l4)))
	if s := oracleSum(append(pseudo, l4...)); s != 0xffff {
		t.Errorf("bad L4 (proto %d) checksum: sum %#04x, segment %x", ip[9], s, l4)
	}
	return ip, l4
}

// wirePort is what both kinds of port offer the tests.
type wirePort interface {
	ReadPacket([]byte) (int, error)
	WritePacket([]byte) error
	Close() error
	Stats() *Stats
}

// modes open a port of each kind in a namespace.
var modes = []struct {
	name string
	open func(ns, ifname string) (wirePort, error)
}{
	{"afpacket", func(ns, ifname string) (wirePort, error) { return OpenNetns(ns, ifname) }},
	{"ring", func(ns, ifname string) (wirePort, error) { return OpenRingNetns(ns, ifname, RingOptions{}) }},
}

// eachMode runs f as a subtest per kind of port.
func eachMode(t *testing.T, f func(t *testing.T, open func(ns, ifname string) (wirePort, error))) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) { f(t, m.open) })
	}
}

// stackAndPort makes a namespace with a veth pair: "s" carries an IPv4
// stack with TX checksum and segmentation offload left on, as a VM's or a
// container's interface has them, and the Port is opened on its peer "p".
func stackAndPort(t *testing.T, open func(ns, ifname string) (wirePort, error)) (*topo.Netns, wirePort) {
	t.Helper()
	topo.RequireRoot(t)
	ns := topo.NewNetns(t, "off")
	s, _ := topo.Veth(t, topo.End{NS: ns, Name: "s", MAC: macStack}, topo.End{NS: ns, Name: "p", MAC: macPort}, topo.VethOptions{KeepTxChecksum: true})
	if !s.TxChecksum(t) {
		t.Fatal("TX checksum offload is off on the stack's end; the test needs it on")
	}
	s.AddAddr(t, netip.PrefixFrom(ipStack, 24))
	s.AddNeigh(t, ipFar, macPort)
	p, err := open(ns.Name, "p")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return ns, p
}

// readUDP reads frames from p until a UDP/IPv4 one to port dport, up to 5s.
func readUDP(t *testing.T, p wirePort, dport uint16) []byte {
	t.Helper()
	type res struct {
		f   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		buf := make([]byte, 65536+64)
		for {
			n, err := p.ReadPacket(buf)
			if err != nil {
				ch <- res{err: err}
				return
			}
			f := buf[:n]
			if n >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0800 && f[23] == 17 &&
				binary.BigEndian.Uint16(f[14+int(f[14]&15)*4+2:]) == dport {
				ch <- res{f: append([]byte(nil), f...)}
				return
			}
		}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.f
	case <-time.After(5 * time.Second):
		t.Fatal("no UDP frame within 5s")
		return nil
	}
}

// udpSend sends payloads from the stack's end to ipFar:dport, with
// UDP_SEGMENT gso when gso > 0.
func udpSend(t *testing.T, ns *topo.Netns, dport uint16, gso int, payloads ...[]byte) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ipFar, dport)))
		if err != nil {
			return err
		}
		defer c.Close()
		if gso > 0 {
			rc, err := c.SyscallConn()
			if err != nil {
				return err
			}
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, gso)
			}); err != nil {
				return err
			}
			if serr != nil {
				return serr
			}
		}
		for _, b := range payloads {
			if _, err := c.Write(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestVLANTagRestored: a tagged frame written to a veth arrives on its peer
// with the tag stripped by the kernel into metadata; the Port puts it back,
// byte for byte, for 802.1Q, 802.1ad and a double tag (the kernel strips
// only the outer one).
func TestVLANTagRestored(t *testing.T) { eachMode(t, testVLANTagRestored) }

func testVLANTagRestored(t *testing.T, open func(ns, ifname string) (wirePort, error)) {
	topo.RequireRoot(t)
	ns := topo.NewNetns(t, "vlan")
	topo.Veth(t, topo.End{NS: ns, Name: "a", MAC: macStack}, topo.End{NS: ns, Name: "b", MAC: macPort}, topo.VethOptions{})
	a, err := OpenNetns(ns.Name, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := open(ns.Name, "b")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	frame := func(tags ...uint16) []byte {
		f := append(append([]byte{}, macPort...), macStack...)
		for _, x := range tags {
			f = binary.BigEndian.AppendUint16(f, x)
		}
		f = append(f, 0x88, 0xb5) // local experimental ethertype
		f = append(f, "tagged payload"...)
		for len(f) < 64 {
			f = append(f, 0)
		}
		return f
	}
	buf := make([]byte, 2048)
	for i, want := range [][]byte{
		frame(0x8100, 0x2064),                 // 802.1Q, PCP 1, VID 100
		frame(0x8100, 0x0000),                 // priority tag: VID 0 still a tag
		frame(0x88a8, 0x0123),                 // 802.1ad
		frame(0x88a8, 0x0123, 0x8100, 0x0456), // QinQ
		frame(),                               // untagged stays untagged
	} {
		before := b.Stats().VLANRestored.Load()
		if err := a.WritePacket(want); err != nil {
			t.Fatal(err)
		}
		n, err := b.ReadPacket(buf)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], want) {
			t.Errorf("frame %d: read\n%x, want\n%x", i, buf[:n], want)
		}
		restored := b.Stats().VLANRestored.Load() - before
		if tagged := len(want) > 14 && binary.BigEndian.Uint16(want[12:]) != 0x88b5; tagged != (restored == 1) {
			t.Errorf("frame %d: VLANRestored went up by %d", i, restored)
		}
	}
}

// TestChecksumCompleted: a UDP datagram sent by a stack with TX checksum
// offload reaches the veth's peer with a partial checksum; the Port
// completes it.
func TestChecksumCompleted(t *testing.T) {
	eachMode(t, func(t *testing.T, open func(ns, ifname string) (wirePort, error)) {
		testChecksumCompleted(t, open)
	})
}

func testChecksumCompleted(t *testing.T, open func(ns, ifname string) (wirePort, error)) {
	ns, p := stackAndPort(t, open)
	udpSend(t, ns, 7001, 0, []byte("partial checksum, please complete"))
	f := readUDP(t, p, 7001)
	_, l4 := checkIPv4L4(t, f)
	if !bytes.Equal(l4[8:], []byte("partial checksum, please complete")) {
		t.Errorf("payload %q", l4[8:])
	}
	if p.Stats().ChecksumCompleted.Load() == 0 {
		t.Error("ChecksumCompleted is 0: the kernel handed over a final checksum, so the test did not test completion")
	}
}

// TestUDPSegmented: a UDP_SEGMENT send of several datagrams arrives on the
// peer as one GSO super-frame; the Port reads the datagrams that would have
// been on the wire.
func TestUDPSegmented(t *testing.T) { eachMode(t, testUDPSegmented) }

func testUDPSegmented(t *testing.T, open func(ns, ifname string) (wirePort, error)) {
	ns, p := stackAndPort(t, open)
	const seg = 500
	payload := make([]byte, 4*seg+123)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	udpSend(t, ns, 7002, seg, payload)
	var got []byte
	var firstID uint16
	for i := 0; i < 5; i++ {
		f := readUDP(t, p, 7002)
		ip, l4 := checkIPv4L4(t, f)
		if i == 0 {
			firstID = binary.BigEndian.Uint16(ip[4:])
		} else if id := binary.BigEndian.Uint16(ip[4:]); id != firstID+uint16(i) {
			t.Errorf("segment %d: IP id %d, want %d", i, id, firstID+uint16(i))
		}
		want := seg
		if i == 4 {
			want = 123
		}
		if len(l4)-8 != want || int(binary.BigEndian.Uint16(l4[4:])) != 8+want {
			t.Errorf("segment %d: %d payload bytes, UDP length %d; want %d", i, len(l4)-8, binary.BigEndian.Uint16(l4[4:]), want)
		}
		got = append(got, l4[8:]...)
	}
	if !bytes.Equal(got, payload) {
		t.Error("the segments' payloads do not add up to the datagram sent")
	}
	if p.Stats().Segmented.Load() != 1 || p.Stats().Segments.Load() != 5 {
		t.Errorf("Segmented %d Segments %d, want 1 and 5", p.Stats().Segmented.Load(), p.Stats().Segments.Load())
	}
}

// TestTCPThroughPorts: a TCP stream between two stacks with every offload
// on (TSO hands the port 64 KB super-frames with partial checksums),
// forwarded frame by frame between two Ports, arrives whole. The receiving
// stack checks checksums (RX checksum offload off on its end, else veth
// would vouch for whatever the port wrote) and would drop anything larger
// than its MTU, and a super-frame written as is fails with EMSGSIZE.
func TestTCPThroughPorts(t *testing.T) { eachMode(t, testTCPThroughPorts) }

func testTCPThroughPorts(t *testing.T, open func(ns, ifname string) (wirePort, error)) {
	topo.RequireRoot(t)
	nsA, nsB, sw := topo.NewNetns(t, "tcpa"), topo.NewNetns(t, "tcpb"), topo.NewNetns(t, "tcpsw")
	macA, macB := net.HardwareAddr{2, 0, 0, 0, 1, 0xa}, net.HardwareAddr{2, 0, 0, 0, 1, 0xb}
	a, _ := topo.Veth(t, topo.End{NS: nsA, Name: "eth0", MAC: macA}, topo.End{NS: sw, Name: "p1"}, topo.VethOptions{KeepTxChecksum: true})
	b, _ := topo.Veth(t, topo.End{NS: nsB, Name: "eth0", MAC: macB}, topo.End{NS: sw, Name: "p2"}, topo.VethOptions{KeepTxChecksum: true})
	a.AddAddr(t, netip.MustParsePrefix("198.18.1.1/24"))
	b.AddAddr(t, netip.MustParsePrefix("198.18.1.2/24"))
	a.AddNeigh(t, netip.MustParseAddr("198.18.1.2"), macB)
	b.AddNeigh(t, netip.MustParseAddr("198.18.1.1"), macA)
	if err := nsB.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		_, err = ethtool(fd, "eth0", 0x15 /* ETHTOOL_SRXCSUM */, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	p1, err := open(sw.Name, "p1")
	if err != nil {
		t.Fatal(err)
	}
	p2, err := open(sw.Name, "p2")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wire := func(from, to wirePort) {
		defer wg.Done()
		buf := make([]byte, 65536+64)
		for {
			n, err := from.ReadPacket(buf)
			if err != nil {
				return
			}
			if n > 1514 {
				t.Errorf("read a %d-byte frame: more than the MTU", n)
			}
			if err := to.WritePacket(buf[:n]); err != nil && !errors.Is(err, ErrClosed) {
				t.Errorf("write: %v", err)
			}
		}
	}
	wg.Add(2)
	go wire(p1, p2)
	go wire(p2, p1)
	defer func() { p1.Close(); p2.Close(); wg.Wait() }()

	var lis net.Listener
	if err := nsB.Do(func() (err error) { lis, err = net.Listen("tcp4", "198.18.1.2:7003"); return }); err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	payload := make([]byte, 4<<20)
	for i := range payload {
		payload[i] = byte(i*31 + i>>11)
	}
	got := make(chan []byte, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		b, _ := io.ReadAll(c)
		got <- b
	}()
	var conn net.Conn
	if err := nsA.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp4", "198.18.1.2:7003", 5*time.Second)
		return
	}); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(payload); err != nil {
		t.Fatalf("send: %v", err)
	}
	conn.(*net.TCPConn).CloseWrite()
	if b := <-got; !bytes.Equal(b, payload) {
		t.Fatalf("received %d bytes, want the %d sent", len(b), len(payload))
	}
	conn.Close()
	if p1.Stats().Segmented.Load() == 0 {
		t.Error("no super-frame arrived on p1: the test did not exercise segmentation")
	}
	t.Logf("p1: %d super-frames cut into %d frames, %d checksums completed",
		p1.Stats().Segmented.Load(), p1.Stats().Segments.Load(), p1.Stats().ChecksumCompleted.Load())
}

// TestCoalescingOffWhileOpen: GRO, on before the Port opens, is off while it
// is open (the receive path must not merge wire frames) and back on after
// Close.
func TestCoalescingOffWhileOpen(t *testing.T) {
	topo.RequireRoot(t)
	ns := topo.NewNetns(t, "gro")
	topo.Veth(t, topo.End{NS: ns, Name: "a"}, topo.End{NS: ns, Name: "b"}, topo.VethOptions{})
	gro := func(set int) (v uint32) {
		t.Helper()
		if err := ns.Do(func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			if set >= 0 {
				_, err = ethtool(fd, "b", ethtoolSGRO, uint32(set))
				return err
			}
			v, err = ethtool(fd, "b", ethtoolGGRO, 0)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	gro(1)
	if gro(-1) == 0 {
		t.Skip("GRO cannot be turned on on this veth")
	}
	p, err := OpenRingNetns(ns.Name, "b", RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if gro(-1) != 0 {
		t.Error("GRO on while a ring is open")
	}
	p.Close()
	if gro(-1) == 0 {
		t.Error("GRO not back on after the ring's Close")
	}
	q, err := OpenNetns(ns.Name, "b")
	if err != nil {
		t.Fatal(err)
	}
	if gro(-1) != 0 {
		t.Error("GRO still on while the port is open")
	}
	q.Close()
	if gro(-1) == 0 {
		t.Error("GRO not back on after Close")
	}
}
