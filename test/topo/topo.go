//go:build linux

// Package topo builds network-namespace topologies for p4mesh's tests: named
// namespaces that stand for VMs, hosts or an on-prem router, veth pairs
// between them (or into the test's own namespace, where p4mesh-switch binds
// its ports), addresses, neighbours and commands run inside a namespace.
//
// Everything a helper creates is removed with t.Cleanup, and names are unique
// per call, so tests may run in parallel and a failed run leaves nothing that
// breaks the next one. Links are made quiet for captures: IPv6 is disabled on
// them (no router solicitations, MLD or DAD) unless asked otherwise.
//
// The helpers need root (CAP_NET_ADMIN and CAP_SYS_ADMIN); tests call
// RequireRoot first so they skip, with the reason, where that is missing
// (and fail in CI, where it must not be: see internal/testenv).
package topo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/p4mesh/p4mesh/internal/netnsrun"
	"github.com/p4mesh/p4mesh/internal/testenv"
)

// RequireRoot skips the test unless it runs as root, which namespaces, veths
// and AF_PACKET sockets need; in CI it fails it instead (testenv.NeedRoot).
func RequireRoot(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t, "network namespaces, veths and AF_PACKET sockets")
}

// RequireTool skips the test unless the named program is on PATH, and ip
// too, which runs it in a namespace (Netns.Run); in CI it fails it instead
// (testenv.NeedTool).
func RequireTool(t testing.TB, name string) {
	t.Helper()
	testenv.NeedTool(t, name, "this test, which runs it in a namespace")
	testenv.NeedTool(t, "ip", "running "+name+" in a namespace (ip netns exec)")
}

// Netns is a network namespace: a named one made by NewNetns, or the test's
// own (Host).
type Netns struct {
	// Name is the namespace's name under /var/run/netns; "" for the test's
	// own namespace.
	Name string

	fd netns.NsHandle
	nl *netlink.Handle
}

// uniqueName returns prefix-XXXXXX, at most 15 bytes (the kernel's limit on
// interface names, which namespaces do not have but which keeps `ip`
// output readable).
func uniqueName(prefix string) string {
	var b [3]byte
	rand.Read(b[:])
	if len(prefix) > 8 {
		prefix = prefix[:8]
	}
	return prefix + "-" + hex.EncodeToString(b[:])
}

// NewNetns creates a named network namespace, prefix plus a random suffix,
// with its loopback up. It is deleted when the test ends, and with it every
// interface still in it (the other end of a veth included).
func NewNetns(t testing.TB, prefix string) *Netns {
	t.Helper()
	name := uniqueName(prefix)
	fd, err := netnsrun.NewNamed(name)
	if err != nil {
		t.Fatalf("topo: create netns %s: %v", name, err)
	}
	n := &Netns{Name: name, fd: fd}
	t.Cleanup(func() {
		if n.nl != nil {
			n.nl.Close()
		}
		fd.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("topo: delete netns %s: %v", name, err)
		}
	})
	n.nl, err = netlink.NewHandleAt(fd)
	if err != nil {
		t.Fatalf("topo: netlink in netns %s: %v", name, err)
	}
	lo, err := n.nl.LinkByName("lo")
	if err == nil {
		err = n.nl.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("topo: netns %s: loopback up: %v", name, err)
	}
	return n
}

// Host is the test's own network namespace (the root namespace, normally),
// where p4mesh-switch runs and binds its ports.
func Host(t testing.TB) *Netns {
	t.Helper()
	fd, err := netns.Get()
	if err != nil {
		t.Fatalf("topo: own netns: %v", err)
	}
	nl, err := netlink.NewHandleAt(fd)
	if err != nil {
		fd.Close()
		t.Fatalf("topo: netlink: %v", err)
	}
	t.Cleanup(func() { nl.Close(); fd.Close() })
	return &Netns{fd: fd, nl: nl}
}

// String names the namespace for messages.
func (n *Netns) String() string {
	if n.Name == "" {
		return "host netns"
	}
	return "netns " + n.Name
}

// Handle is a netlink handle that works in the namespace, for what the
// helpers do not cover.
func (n *Netns) Handle() *netlink.Handle { return n.nl }

// Do runs fn with its OS thread in the namespace: sockets it opens and
// /proc/sys/net paths it touches are the namespace's. fn must not start
// goroutines that expect to be in the namespace.
func (n *Netns) Do(fn func() error) error {
	return netnsrun.Do(n.fd, n.String(), fn)
}

// Command returns a command that runs name in the namespace (with `ip netns
// exec`, which also gives it the namespace's /sys), or directly for Host.
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if n.Name == "" {
		return exec.CommandContext(ctx, name, args...)
	}
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command in the namespace and returns its combined output,
// failing the test if it fails.
func (n *Netns) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	if n.Name != "" {
		testenv.NeedTool(t, "ip", "running "+name+" in a namespace (ip netns exec)")
	}
	out, err := n.Command(t.Context(), name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("topo: %s: %s %s: %v\n%s", n, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Sysctl writes a sysctl of the namespace, e.g. "net/ipv4/ip_forward".
func (n *Netns) Sysctl(key, value string) error {
	return n.Do(func() error {
		return os.WriteFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), []byte(value), 0o644)
	})
}

// End describes one end of a veth pair.
type End struct {
	// NS is the namespace the end goes in; nil means the test's own.
	NS *Netns
	// Name is the interface name; "" makes a unique one from "veth".
	Name string
	// MAC is the interface's MAC address; nil lets the kernel choose.
	MAC net.HardwareAddr
}

// VethOptions configure Veth. The zero value is what a forwarding test
// wants.
type VethOptions struct {
	// MTU of both ends; 0 keeps the default (1500).
	MTU int
	// KeepIPv6 leaves IPv6 on; by default it is disabled on both ends.
	KeepIPv6 bool
	// KeepTxChecksum leaves TX checksum offload on; by default it is off on
	// both ends, so frames read from the pair carry final TCP/UDP checksums
	// and can be forwarded unchanged (see package dataplane/afpacket).
	KeepTxChecksum bool
	// Down leaves both ends administratively down.
	Down bool
}

// Link is a network interface in a namespace.
type Link struct {
	NS    *Netns           // the namespace the interface is in
	Name  string           // interface name
	Index int              // interface index in NS
	MAC   net.HardwareAddr // MAC address when the link was made
}

// String names the link and its namespace for messages.
func (l *Link) String() string { return l.Name + " in " + l.NS.String() }

// Veth creates a veth pair with the ends in a.NS and b.NS, each end created
// directly in its namespace so names need to be unique there only. The
// pair is removed when the test ends.
func Veth(t testing.TB, a, b End, o VethOptions) (*Link, *Link) {
	t.Helper()
	host := (*Netns)(nil)
	ns := func(e End) *Netns {
		if e.NS != nil {
			return e.NS
		}
		if host == nil {
			host = Host(t)
		}
		return host
	}
	na, nb := ns(a), ns(b)
	if a.Name == "" {
		a.Name = uniqueName("veth")
	}
	if b.Name == "" {
		b.Name = uniqueName("veth")
	}
	if len(a.Name) > 15 || len(b.Name) > 15 {
		t.Fatalf("topo: interface names %q, %q: at most 15 bytes", a.Name, b.Name)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = a.Name
	attrs.HardwareAddr = a.MAC
	attrs.MTU = o.MTU
	attrs.Namespace = netlink.NsFd(na.fd)
	v := &netlink.Veth{LinkAttrs: attrs, PeerName: b.Name, PeerHardwareAddr: b.MAC, PeerNamespace: netlink.NsFd(nb.fd)}
	if err := na.nl.LinkAdd(v); err != nil {
		t.Fatalf("topo: veth %s (%s) <-> %s (%s): %v", a.Name, na, b.Name, nb, err)
	}
	la, lb := lookup(t, na, a.Name), lookup(t, nb, b.Name)
	t.Cleanup(func() {
		// Deleting one end deletes both; the namespace may be gone already.
		if l, err := na.nl.LinkByName(a.Name); err == nil {
			na.nl.LinkDel(l)
		}
	})
	for _, l := range []*Link{la, lb} {
		if !o.KeepIPv6 {
			l.DisableIPv6(t)
		}
		if !o.KeepTxChecksum {
			l.DisableTxChecksum(t)
		}
		if !o.Down {
			l.Up(t)
		}
	}
	if !o.Down {
		la.WaitOperUp(t)
		lb.WaitOperUp(t)
	}
	return la, lb
}

func lookup(t testing.TB, n *Netns, name string) *Link {
	t.Helper()
	nl, err := n.nl.LinkByName(name)
	if err != nil {
		t.Fatalf("topo: %s in %s: %v", name, n, err)
	}
	return &Link{NS: n, Name: name, Index: nl.Attrs().Index, MAC: nl.Attrs().HardwareAddr}
}

func (l *Link) link(t testing.TB) netlink.Link {
	t.Helper()
	nl, err := l.NS.nl.LinkByIndex(l.Index)
	if err != nil {
		t.Fatalf("topo: %s: %v", l, err)
	}
	return nl
}

// Up sets the link administratively up.
func (l *Link) Up(t testing.TB) {
	t.Helper()
	if err := l.NS.nl.LinkSetUp(l.link(t)); err != nil {
		t.Fatalf("topo: %s up: %v", l, err)
	}
}

// WaitOperUp waits, up to 5 seconds, for the link's operational state to be
// up. Until then the kernel has not attached the link's queueing discipline
// (linkwatch does, asynchronously, some time after `ip link set up`) and
// drops every frame sent out of it: a test that sends right after Up would
// lose its first frames.
func (l *Link) WaitOperUp(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := l.link(t).Attrs().OperState
		if st == netlink.OperUp {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topo: %s: operational state %s after 5s, want up", l, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Down sets the link administratively down.
func (l *Link) Down(t testing.TB) {
	t.Helper()
	if err := l.NS.nl.LinkSetDown(l.link(t)); err != nil {
		t.Fatalf("topo: %s down: %v", l, err)
	}
}

// SetMTU sets the link's MTU.
func (l *Link) SetMTU(t testing.TB, mtu int) {
	t.Helper()
	if err := l.NS.nl.LinkSetMTU(l.link(t), mtu); err != nil {
		t.Fatalf("topo: %s mtu %d: %v", l, mtu, err)
	}
}

// SetARPOff stops the kernel from answering or sending ARP on the link: for
// an interface that only a P4 port reads, so the namespace's stack stays
// out of the conversation.
func (l *Link) SetARPOff(t testing.TB) {
	t.Helper()
	if err := l.NS.nl.LinkSetARPOff(l.link(t)); err != nil {
		t.Fatalf("topo: %s arp off: %v", l, err)
	}
}

// AddAddr adds an address with its prefix length, e.g. 198.18.0.1/24.
func (l *Link) AddAddr(t testing.TB, p netip.Prefix) {
	t.Helper()
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if err := l.NS.nl.AddrAdd(l.link(t), a); err != nil {
		t.Fatalf("topo: %s addr %s: %v", l, p, err)
	}
}

// AddNeigh adds a permanent neighbour entry (a static ARP entry for IPv4).
func (l *Link) AddNeigh(t testing.TB, ip netip.Addr, mac net.HardwareAddr) {
	t.Helper()
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	n := &netlink.Neigh{LinkIndex: l.Index, Family: fam, State: netlink.NUD_PERMANENT, IP: ip.AsSlice(), HardwareAddr: mac}
	if err := l.NS.nl.NeighSet(n); err != nil {
		t.Fatalf("topo: %s neigh %s lladdr %s: %v", l, ip, mac, err)
	}
}

// DisableIPv6 turns IPv6 off on the link (net.ipv6.conf.IF.disable_ipv6=1),
// so no router solicitation, MLD report or DAD probe shows up in captures.
// A kernel without IPv6 has nothing to disable.
func (l *Link) DisableIPv6(t testing.TB) {
	t.Helper()
	err := l.NS.Sysctl("net/ipv6/conf/"+l.Name+"/disable_ipv6", "1")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("topo: %s: disable IPv6: %v", l, err)
	}
}

// ethtool ioctl ABI (linux/ethtool.h).
const (
	siocEthtool    = 0x8946
	ethtoolGTxCsum = 0x16
	ethtoolSTxCsum = 0x17
)

type ethtoolValue struct{ cmd, data uint32 }

type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// DisableTxChecksum turns TX checksum offload off, as `ethtool -K IF tx
// off` does (and with it TSO, which depends on it): the stack then sends
// frames with final TCP/UDP checksums and no larger than the MTU, so a
// P4 port reading them from the peer can forward them unchanged.
func (l *Link) DisableTxChecksum(t testing.TB) {
	t.Helper()
	if err := l.ethtool(ethtoolSTxCsum, 0); err != nil {
		t.Fatalf("topo: %s: tx checksum off: %v", l, err)
	}
}

// TxChecksum reports whether TX checksum offload is on.
func (l *Link) TxChecksum(t testing.TB) bool {
	t.Helper()
	v := ethtoolValue{cmd: ethtoolGTxCsum}
	if err := l.ethtoolValue(&v); err != nil {
		t.Fatalf("topo: %s: tx checksum: %v", l, err)
	}
	return v.data != 0
}

func (l *Link) ethtool(cmd, data uint32) error {
	return l.ethtoolValue(&ethtoolValue{cmd: cmd, data: data})
}

func (l *Link) ethtoolValue(v *ethtoolValue) error {
	return l.NS.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		var ifr ifreqData
		copy(ifr.name[:], l.Name)
		ifr.data = unsafe.Pointer(v)
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), siocEthtool, uintptr(unsafe.Pointer(&ifr)))
		runtime.KeepAlive(v)
		if errno != 0 {
			return os.NewSyscallError("ioctl SIOCETHTOOL", errno)
		}
		return nil
	})
}
