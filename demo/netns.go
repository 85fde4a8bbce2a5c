//go:build linux

package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/p4mesh/p4mesh/internal/netnsrun"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/dataplane/afpacket"
)

// Namespace and interface names of the netns fabric. Every namespace is
// nsPrefix + role + "-" + a 4-hex-digit suffix shared by one fabric, so
// `ip netns list` shows which belong together and a later run can find the
// ones a killed run left behind.
const (
	nsPrefix   = "p4m-"
	uplinkName = "up"   // a host's uplink, in the host's namespace
	bridgeName = "br0"  // the underlay bridge
	vmIfName   = "eth0" // a VM's interface, in the VM's namespace
	// underlayMTU leaves room for VXLAN's 50 bytes around a 1500-byte
	// VM frame, and then some.
	underlayMTU = 9000
	vmMTU       = 1500
	netnsDir    = "/var/run/netns"
	// lockDir holds one lock file per live fabric: a run holds an
	// exclusive flock on it for its lifetime, and the kernel drops the lock
	// when the process dies, so namespaces whose lock is free are stale.
	lockDir = "/run/p4mesh"
)

// NetnsFabric is the demo's network on real Linux network namespaces,
// veth pairs and a Linux bridge, so pings are the kernel's ping through
// the switches' real AF_PACKET ports:
//
//   - one namespace per host, holding the switch's side of its links: the
//     uplink "up" (port 1) and "p<port>" per VM. The switch runs in this
//     process and binds them with afpacket.OpenNetns.
//   - one underlay namespace with bridge br0 enslaving one veth end per host
//     (named for the host), the other end being the host's "up".
//   - one namespace per VM, its eth0 the peer of the host's "p<port>", with
//     the VM's MAC and address and a default route via the VPC's gateway.
//     The pipeline answers ARP, so there are no static neighbours.
//
// IPv6 is off everywhere and TX checksum offload is off on every veth end
// (see package dataplane/afpacket for why).
type NetnsFabric struct {
	topo   *Topology
	suffix string
	lock   *os.File

	hostNS   map[string]string // namespace by host id
	vmNS     map[string]string // namespace by VM id
	routerNS map[string]string // namespace by router id
	ulNS     string
	// made lists every namespace created, in order, for Close.
	made []string

	// mu guards the fields below.
	mu     sync.Mutex
	ports  []dataplane.Port // opened by Ports; the switch closes them too
	closed bool
}

var _ Fabric = (*NetnsFabric)(nil)

// NetnsAvailable reports, in a few words, why the netns fabric cannot run
// here, or nil: it needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for
// namespaces, veths and AF_PACKET sockets) and iproute2's ip and ping,
// which run the VMs' pings as `ip netns exec NS ping`.
func NetnsAvailable() error {
	if os.Geteuid() != 0 {
		return errors.New("not root")
	}
	for _, tool := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not on PATH", tool)
		}
	}
	return nil
}

// NewNetnsFabric builds t's network in namespaces. It first deletes, and
// logs, the p4m-* namespaces a killed run left behind: those whose run lock
// (a file in /run/p4mesh that a live fabric holds an flock on) is free, so
// another demo or test running at the same time keeps its own. Close
// deletes what it made.
func NewNetnsFabric(t *Topology, log *slog.Logger) (*NetnsFabric, error) {
	if err := NetnsAvailable(); err != nil {
		return nil, fmt.Errorf("netns fabric: needs root, ip and ping: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, fmt.Errorf("netns fabric: %w", err)
	}
	if err := deleteStale(log); err != nil {
		return nil, fmt.Errorf("netns fabric: delete stale namespaces: %w", err)
	}
	f := &NetnsFabric{topo: t, hostNS: map[string]string{}, vmNS: map[string]string{}, routerNS: map[string]string{}}
	if err := f.claimSuffix(); err != nil {
		return nil, fmt.Errorf("netns fabric: %w", err)
	}
	if err := f.build(); err != nil {
		f.Close()
		return nil, fmt.Errorf("netns fabric: %w", err)
	}
	log.Info("netns fabric up", "suffix", f.suffix, "namespaces", len(f.made))
	return f, nil
}

// claimSuffix picks a suffix no namespace uses and takes its lock.
func (f *NetnsFabric) claimSuffix() error {
	for range 100 {
		var b [2]byte
		rand.Read(b[:])
		s := hex.EncodeToString(b[:])
		if len(namespacesWithSuffix(s)) > 0 {
			continue
		}
		lf, ok, err := tryLock(s)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		f.suffix, f.lock = s, lf
		return nil
	}
	return errors.New("no free namespace suffix")
}

func lockPath(suffix string) string { return filepath.Join(lockDir, "netns-"+suffix+".lock") }

// tryLock takes the run lock of suffix without waiting; ok is false when a
// live fabric holds it.
func tryLock(suffix string) (f *os.File, ok bool, err error) {
	f, err = os.OpenFile(lockPath(suffix), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, false, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("lock %s: %w", lockPath(suffix), err)
	}
	return f, true, nil
}

// fabricNamespaces returns the p4m-* namespaces grouped by suffix.
func fabricNamespaces() map[string][]string {
	ents, _ := os.ReadDir(netnsDir)
	out := map[string][]string{}
	for _, e := range ents {
		name := e.Name()
		i := strings.LastIndexByte(name, '-')
		if !strings.HasPrefix(name, nsPrefix) || i < len(nsPrefix) {
			continue
		}
		out[name[i+1:]] = append(out[name[i+1:]], name)
	}
	return out
}

func namespacesWithSuffix(s string) []string { return fabricNamespaces()[s] }

// deleteStale deletes the namespaces of runs that no longer hold their
// lock: a killed demo or test.
func deleteStale(log *slog.Logger) error {
	groups := fabricNamespaces()
	suffixes := make([]string, 0, len(groups))
	for s := range groups {
		suffixes = append(suffixes, s)
	}
	slices.Sort(suffixes)
	var errs []error
	for _, s := range suffixes {
		lf, ok, err := tryLock(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			log.Debug("namespaces of a running fabric kept", "suffix", s, "namespaces", groups[s])
			continue
		}
		for _, name := range groups[s] {
			log.Warn("deleting stale namespace left by an earlier run", "netns", name)
			if err := deleteNamed(name); err != nil {
				errs = append(errs, err)
			}
		}
		os.Remove(lockPath(s))
		lf.Close()
	}
	return errors.Join(errs...)
}

// deleteNamed deletes a named namespace, also when its mount is already
// gone (a run killed half way through creating it).
func deleteNamed(name string) error {
	p := filepath.Join(netnsDir, name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	return nil
}

// nsh is a namespace being set up: its handle and a netlink handle in it.
type nsh struct {
	name string
	fd   netns.NsHandle
	nl   *netlink.Handle
}

func (n *nsh) close() {
	if n.nl != nil {
		n.nl.Close()
	}
	n.fd.Close()
}

// link is one interface made by build, to bring up and wait for.
type link struct {
	ns   *nsh
	name string
}

func (l link) String() string { return l.name + " in netns " + l.ns.name }

func (l link) get() (netlink.Link, error) {
	nl, err := l.ns.nl.LinkByName(l.name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l, err)
	}
	return nl, nil
}

func (f *NetnsFabric) build() error {
	var handles []*nsh
	defer func() {
		for _, h := range handles {
			h.close()
		}
	}()
	newNS := func(role string) (*nsh, error) {
		h, err := f.newNamespace(nsPrefix + role + "-" + f.suffix)
		if h != nil {
			handles = append(handles, h)
		}
		return h, err
	}
	// switchSide are the switches' ends of the links, otherSide the VMs'
	// and the underlay's.
	var switchSide, otherSide []link

	ul, err := newNS("ul")
	if err != nil {
		return err
	}
	f.ulNS = ul.name
	br := &netlink.Bridge{LinkAttrs: netlink.NewLinkAttrs()}
	br.Name, br.MTU = bridgeName, underlayMTU
	if err := ul.nl.LinkAdd(br); err != nil {
		return fmt.Errorf("bridge %s in netns %s: %w", bridgeName, ul.name, err)
	}
	brLink := link{ul, bridgeName}
	brl, err := brLink.get()
	if err != nil {
		return err
	}
	if err := bridgeForwardAtOnce(ul, brl.Attrs().Index); err != nil {
		return err
	}

	hosts := map[string]*nsh{}
	for _, h := range f.topo.Hosts {
		hn, err := newNS(h.ID)
		if err != nil {
			return err
		}
		hosts[h.ID], f.hostNS[h.ID] = hn, hn.name
		up, port, err := veth(hn, uplinkName, nil, ul, h.ID, nil, underlayMTU)
		if err != nil {
			return err
		}
		pl, err := port.get()
		if err != nil {
			return err
		}
		if err := ul.nl.LinkSetMasterByIndex(pl, brl.Attrs().Index); err != nil {
			return fmt.Errorf("enslave %s to %s: %w", port, bridgeName, err)
		}
		switchSide, otherSide = append(switchSide, up), append(otherSide, port)
	}
	vms := map[string]*nsh{}
	for _, v := range f.topo.VMs {
		hn, ok := hosts[v.Host]
		if !ok {
			return fmt.Errorf("VM %s is on unknown host %s", v.ID, v.Host)
		}
		vn, err := newNS(v.ID)
		if err != nil {
			return err
		}
		vms[v.ID], f.vmNS[v.ID] = vn, vn.name
		port, eth, err := veth(hn, portName(v.Port), nil, vn, vmIfName, v.MAC, vmMTU)
		if err != nil {
			return err
		}
		switchSide, otherSide = append(switchSide, port), append(otherSide, eth)
	}
	for _, r := range f.topo.Routers {
		hn, ok := hosts[r.Host]
		if !ok {
			return fmt.Errorf("router %s is on unknown host %s", r.ID, r.Host)
		}
		rn, err := newNS(r.ID)
		if err != nil {
			return err
		}
		f.routerNS[r.ID] = rn.name
		port, eth, err := veth(hn, portName(r.Port), nil, rn, vmIfName, r.MAC, vmMTU)
		if err != nil {
			return err
		}
		switchSide, otherSide = append(switchSide, port), append(otherSide, eth)
	}

	for _, l := range slices.Concat(switchSide, otherSide) {
		if err := disableTxChecksum(l); err != nil {
			return err
		}
	}
	// The switch alone speaks on its side of the links: keep the host
	// namespaces' own stacks out of it.
	for _, l := range switchSide {
		nl, err := l.get()
		if err == nil {
			err = l.ns.nl.LinkSetARPOff(nl)
		}
		if err != nil {
			return fmt.Errorf("%s: arp off: %w", l, err)
		}
	}
	all := slices.Concat(switchSide, otherSide, []link{brLink})
	for _, l := range all {
		nl, err := l.get()
		if err == nil {
			err = l.ns.nl.LinkSetUp(nl)
		}
		if err != nil {
			return fmt.Errorf("%s: up: %w", l, err)
		}
	}
	for _, v := range f.topo.VMs {
		if err := configureVM(vms[v.ID], v); err != nil {
			return err
		}
	}
	for _, r := range f.topo.Routers {
		if err := configureRouter(f.routerNS[r.ID], r); err != nil {
			return err
		}
	}
	for _, l := range all {
		if err := waitOperUp(l, 5*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func portName(p uint16) string { return "p" + strconv.Itoa(int(p)) }

// newNamespace creates a named namespace with loopback up and IPv6 off
// (all and default, so every interface made in it later has it off).
func (f *NetnsFabric) newNamespace(name string) (*nsh, error) {
	fd, err := netnsrun.NewNamed(name)
	if err != nil {
		// A half-made namespace may have left its file behind.
		deleteNamed(name)
		return nil, fmt.Errorf("create netns %s: %w", name, err)
	}
	f.made = append(f.made, name)
	n := &nsh{name: name, fd: fd}
	if n.nl, err = netlink.NewHandleAt(fd); err != nil {
		return n, fmt.Errorf("netlink in netns %s: %w", name, err)
	}
	for _, key := range []string{"net/ipv6/conf/all/disable_ipv6", "net/ipv6/conf/default/disable_ipv6"} {
		err := n.do(func() error { return os.WriteFile("/proc/sys/"+key, []byte("1"), 0o644) })
		// A kernel without IPv6 has nothing to disable.
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return n, fmt.Errorf("netns %s: %s: %w", name, key, err)
		}
	}
	lo, err := link{n, "lo"}.get()
	if err == nil {
		err = n.nl.LinkSetUp(lo)
	}
	if err != nil {
		return n, fmt.Errorf("netns %s: loopback up: %w", name, err)
	}
	return n, nil
}

// veth creates a veth pair with each end made directly in its namespace,
// so names need to be unique there only.
func veth(a *nsh, aName string, aMAC net.HardwareAddr, b *nsh, bName string, bMAC net.HardwareAddr, mtu int) (link, link, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.HardwareAddr, attrs.MTU = aName, aMAC, mtu
	attrs.Namespace = netlink.NsFd(a.fd)
	v := &netlink.Veth{LinkAttrs: attrs, PeerName: bName, PeerHardwareAddr: bMAC, PeerNamespace: netlink.NsFd(b.fd)}
	if err := a.nl.LinkAdd(v); err != nil {
		return link{}, link{}, fmt.Errorf("veth %s (netns %s) <-> %s (netns %s): %w", aName, a.name, bName, b.name, err)
	}
	return link{a, aName}, link{b, bName}, nil
}

// configureVM gives the VM's eth0 its address in the VPC's subnet and a
// default route via the VPC's gateway (which the pipeline answers ARP for).
func configureVM(n *nsh, v VM) error {
	if n == nil {
		return fmt.Errorf("VM %s has no namespace", v.ID)
	}
	eth, err := link{n, vmIfName}.get()
	if err != nil {
		return err
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: v.IP.AsSlice(), Mask: net.CIDRMask(v.Prefix.Bits(), 32)}}
	if err := n.nl.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("VM %s: address %s/%d: %w", v.ID, v.IP, v.Prefix.Bits(), err)
	}
	r := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: v.Gateway.AsSlice(), Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}
	if err := n.nl.RouteAdd(r); err != nil {
		return fmt.Errorf("VM %s: default route via %s: %w", v.ID, v.Gateway, err)
	}
	return nil
}

// configureRouter sets up what is behind a router's cable, if r says:
// its link address, the addresses behind it on lo, and routes back to the
// VPC through the attachment.
func configureRouter(ns string, r Router) error {
	if !r.LinkIP.IsValid() {
		return nil
	}
	cmds := [][]string{{"addr", "add", netip.PrefixFrom(r.LinkIP, 32).String(), "dev", vmIfName}}
	for _, p := range r.Behind {
		cmds = append(cmds, []string{"addr", "add", p.String(), "dev", "lo"})
	}
	for _, p := range r.VPCRoutes {
		cmds = append(cmds, []string{"route", "add", p.String(), "via", r.AttachmentIP.String(), "dev", vmIfName, "onlink"})
	}
	for _, c := range cmds {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, c...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("router %s: ip %s: %w: %s", r.ID, strings.Join(c, " "), err, out)
		}
	}
	return nil
}

// bridgeForwardAtOnce turns STP off and the forward delay to 0 on the
// bridge with index idx, so its ports forward as soon as they are up. The netlink package
// has no field for these, so it is an RTM_NEWLINK of our own, sent from a
// thread in the namespace.
func bridgeForwardAtOnce(n *nsh, idx int) error {
	err := n.do(func() error {
		req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
		msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
		msg.Index = int32(idx)
		req.AddData(msg)
		info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
		info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
		data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
		data.AddRtAttr(nl.IFLA_BR_STP_STATE, nl.Uint32Attr(0))
		data.AddRtAttr(nl.IFLA_BR_FORWARD_DELAY, nl.Uint32Attr(0))
		req.AddData(info)
		_, err := req.Execute(unix.NETLINK_ROUTE, 0)
		return err
	})
	if err != nil {
		return fmt.Errorf("bridge in netns %s: stp off, forward delay 0: %w", n.name, err)
	}
	return nil
}

// waitOperUp waits for l's operational state to be up: until then the
// kernel has not attached its queueing discipline and drops what is sent
// out of it, so the first pings would be lost.
func waitOperUp(l link, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ll, err := l.get()
		if err != nil {
			return err
		}
		st := ll.Attrs().OperState
		if st == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: operational state %s after %s, want up", l, st, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ethtool ioctl ABI (linux/ethtool.h).
const (
	siocEthtool    = 0x8946
	ethtoolSTxCsum = 0x17
)

type ethtoolValue struct{ cmd, data uint32 }

type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// disableTxChecksum turns TX checksum offload (and with it TSO) off on l,
// as `ethtool -K IF tx off` does: frames then leave every stack with final
// checksums and no larger than the MTU, so the switch forwards them as
// they are.
func disableTxChecksum(l link) error {
	v := &ethtoolValue{cmd: ethtoolSTxCsum}
	err := l.ns.do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		var ifr ifreqData
		copy(ifr.name[:], l.name)
		ifr.data = unsafe.Pointer(v)
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), siocEthtool, uintptr(unsafe.Pointer(&ifr)))
		runtime.KeepAlive(v)
		if errno != 0 {
			return os.NewSyscallError("ioctl SIOCETHTOOL", errno)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: tx checksum off: %w", l, err)
	}
	return nil
}

// do runs fn with its OS thread in the namespace: sockets it opens and
// /proc/sys/net files it writes are the namespace's.
func (n *nsh) do(fn func() error) error {
	return netnsrun.Do(n.fd, "netns "+n.name, fn)
}

// Name implements Fabric.
func (f *NetnsFabric) Name() string {
	return "network namespaces (veth pairs, a Linux bridge underlay, the kernel's ping)"
}

// Namespace is the network namespace of VM vm ("" if there is none), for
// `ip netns exec NS ping ...` by hand.
func (f *NetnsFabric) Namespace(vm string) string { return f.vmNS[vm] }

// RouterNamespace is the namespace of router id's cable, its eth0 the
// peer of the router's switch port ("" if there is none). A test may move
// that eth0 into the namespace of the router it runs.
func (f *NetnsFabric) RouterNamespace(id string) string { return f.routerNS[id] }

// HostNamespace is the namespace holding host's switch ports.
func (f *NetnsFabric) HostNamespace(host string) string { return f.hostNS[host] }

// UnderlayNamespace is the namespace of the underlay bridge.
func (f *NetnsFabric) UnderlayNamespace() string { return f.ulNS }

// Ports implements Fabric: host's uplink as port 1 and each of its VMs'
// links as the VM's port, opened in the host's namespace.
func (f *NetnsFabric) Ports(host string) (map[uint16]dataplane.Port, error) {
	ns, ok := f.hostNS[host]
	if !ok {
		return nil, fmt.Errorf("no host %s", host)
	}
	names := map[uint16]string{uplink: uplinkName}
	for _, v := range f.topo.VMs {
		if v.Host == host {
			names[v.Port] = portName(v.Port)
		}
	}
	for _, r := range f.topo.Routers {
		if r.Host == host {
			names[r.Port] = portName(r.Port)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errors.New("netns fabric closed")
	}
	ports := map[uint16]dataplane.Port{}
	for n, ifname := range names {
		p, err := afpacket.OpenNetns(ns, ifname)
		if err != nil {
			for _, q := range ports {
				q.Close()
			}
			return nil, fmt.Errorf("host %s port %d: %w", host, n, err)
		}
		ports[n] = p
		f.ports = append(f.ports, p)
	}
	return ports, nil
}

var pingReceived = regexp.MustCompile(`(\d+) (?:packets )?received`)

// parsePingReceived reads the number of replies from ping's summary.
func parsePingReceived(out []byte) (int, bool) {
	m := pingReceived.FindSubmatch(out)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(string(m[1]))
	return n, err == nil
}

// Ping implements Fabric with the kernel's ping in vm's namespace: 0
// replies is a result, not an error; an error means ping could not run.
func (f *NetnsFabric) Ping(ctx context.Context, vm VM, dst netip.Addr, count int, timeout time.Duration) (int, error) {
	secs := max(1, int(math.Ceil(timeout.Seconds())))
	out, err := f.Exec(ctx, vm.ID, "ping", "-c", strconv.Itoa(count), "-W", strconv.Itoa(secs), "-i", "0.2", "-n", dst.String())
	if n, ok := parsePingReceived(out); ok {
		return n, nil
	}
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if err == nil {
		err = errors.New("no summary in its output")
	}
	return 0, fmt.Errorf("ping %s from %s: %w: %s", dst, vm.ID, err, bytes2line(out))
}

var (
	pingReply       = regexp.MustCompile(`(icmp_)?seq=(\d+) ttl=\d+ time=([0-9.]+) ms`)
	pingTransmitted = regexp.MustCompile(`(\d+) packets transmitted`)
)

// PingEvery implements Fabric with the kernel's ping -i in vm's
// namespace (an interval under 200ms needs root, which the fabric has).
func (f *NetnsFabric) PingEvery(ctx context.Context, vm VM, dst netip.Addr, count int, interval, timeout time.Duration) (PingRun, error) {
	secs := max(1, int(math.Ceil(timeout.Seconds())))
	out, err := f.Exec(ctx, vm.ID, "ping", "-n", "-c", strconv.Itoa(count), "-W", strconv.Itoa(secs),
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', -1, 64), dst.String())
	run, ok := parsePingEvery(out, count, interval, timeout)
	if !ok {
		if ctx.Err() != nil {
			return run, ctx.Err()
		}
		if err == nil {
			err = errors.New("no summary in its output")
		}
		return run, fmt.Errorf("ping %s from %s: %w: %s", dst, vm.ID, err, bytes2line(out))
	}
	return run, nil
}

// parsePingEvery reads each reply's sequence number and round trip out of
// ping's output; ok is false without a summary.
func parsePingEvery(out []byte, count int, interval, timeout time.Duration) (PingRun, bool) {
	run := PingRun{Interval: interval}
	m := pingTransmitted.FindSubmatch(out)
	if m == nil {
		return run, false
	}
	run.Sent, _ = strconv.Atoi(string(m[1]))
	rtt := make([]time.Duration, max(run.Sent, count)+1)
	for _, r := range pingReply.FindAllSubmatch(out, -1) {
		seq, _ := strconv.Atoi(string(r[2]))
		if len(r[1]) == 0 {
			seq++ // busybox counts from 0
		}
		ms, err := strconv.ParseFloat(string(r[3]), 64)
		d := time.Duration(ms * float64(time.Millisecond))
		if err != nil || seq < 1 || seq >= len(rtt) || rtt[seq] != 0 || d > timeout {
			continue // a duplicate, or too late
		}
		rtt[seq] = max(d, time.Nanosecond)
		run.Received++
	}
	run.finish(rtt)
	return run, true
}

func bytes2line(b []byte) string { return strings.Join(strings.Fields(string(b)), " ") }

// Exec runs a command in vm's namespace (with `ip netns exec`, which also
// gives it the namespace's /sys) and returns its combined output.
func (f *NetnsFabric) Exec(ctx context.Context, vm string, args ...string) ([]byte, error) {
	ns, ok := f.vmNS[vm]
	if !ok {
		return nil, fmt.Errorf("no VM %s", vm)
	}
	if len(args) == 0 {
		return nil, errors.New("exec: no command")
	}
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
}

// Close implements Fabric: it closes the ports it opened and deletes every
// namespace it made, and with them their veths and bridge.
func (f *NetnsFabric) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	ports := f.ports
	f.mu.Unlock()
	for _, p := range ports {
		p.Close()
	}
	var errs []error
	for _, name := range slices.Backward(f.made) {
		if err := deleteNamed(name); err != nil {
			errs = append(errs, err)
		}
	}
	if f.lock != nil {
		os.Remove(lockPath(f.suffix))
		f.lock.Close()
	}
	return errors.Join(errs...)
}
