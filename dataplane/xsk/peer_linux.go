//go:build linux

package xsk

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A veth hands its peer's frames over as the peer's stack built them: with
// TX checksum offload on there, a TCP or UDP checksum is only seeded
// (CHECKSUM_PARTIAL), and the skb says so. An XDP program cannot read that
// (no kfunc reports it), and what it redirects to an AF_XDP socket would
// go out of the switch with a wrong checksum, where the afpacket ports
// complete it from PACKET_VNET_HDR. So on a veth the port checks the peer
// first and is refused while the peer offloads checksums (the switch then
// falls back to mmap and says why). A NIC receives final checksums from
// the wire, so the check is for veth only.

// ethtool commands (linux/ethtool.h).
const (
	ethtoolGDrvInfo = 0x03
	ethtoolGTxCsum  = 0x16
)

// ethtoolIoctl runs one SIOCETHTOOL command on ifname through fd with data
// as its buffer (its first 4 bytes the command).
func ethtoolIoctl(fd int, ifname string, data unsafe.Pointer) error {
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [24 - unsafe.Sizeof(uintptr(0))]byte
	}
	copy(ifr.name[:], ifname)
	ifr.data = data
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), siocEthtool, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(data)
	if errno != 0 {
		return errno
	}
	return nil
}

// driver is the interface's driver name (ETHTOOL_GDRVINFO), "" if unknown.
func driver(fd int, ifname string) string {
	var info [196]byte // struct ethtool_drvinfo: cmd, then driver[32]
	*(*uint32)(unsafe.Pointer(&info[0])) = ethtoolGDrvInfo
	if ethtoolIoctl(fd, ifname, unsafe.Pointer(&info[0])) != nil {
		return ""
	}
	d := info[4:36]
	if i := bytes.IndexByte(d, 0); i >= 0 {
		d = d[:i]
	}
	return string(d)
}

// checkVethPeer returns an error when ifname, of driver veth, has a peer
// that sends partial checksums, or a peer it cannot find to ask. The
// caller's thread is in ifname's namespace.
func checkVethPeer(fd int, ifname string) error {
	if driver(fd, ifname) != "veth" {
		return nil
	}
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("veth peer: %w", err)
	}
	peer := l.Attrs().ParentIndex
	on, err := txChecksum(peer, l.Attrs().NetNsID)
	if err != nil {
		return fmt.Errorf("veth peer (index %d) not found to check its TX checksum offload: %w", peer, err)
	}
	if on {
		return errors.New("the veth peer has TX checksum offload on: its stack's TCP/UDP checksums arrive partial, and an XDP program cannot tell them from final ones (turn it off on the peer: ethtool -K PEER tx off)")
	}
	return nil
}

// txChecksum reports whether interface index idx of the namespace with id
// nsid (relative to the caller's; -1: the caller's own) has TX checksum
// offload on.
func txChecksum(idx, nsid int) (bool, error) {
	if nsid < 0 {
		return txChecksumHere(idx)
	}
	nsFD, err := findNetns(nsid)
	if err != nil {
		return false, err
	}
	defer unix.Close(nsFD)
	type result struct {
		on  bool
		err error
	}
	ch := make(chan result, 1)
	// As inNetns: a fresh locked thread, left locked (and so ended) if it
	// cannot return to its namespace.
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(nsFD, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		on, err := txChecksumHere(idx)
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{on, err}
	}()
	r := <-ch
	return r.on, r.err
}

// txChecksumHere is txChecksum in the caller's thread's namespace.
func txChecksumHere(idx int) (bool, error) {
	l, err := netlink.LinkByIndex(idx)
	if err != nil {
		return false, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	v := [2]uint32{ethtoolGTxCsum, 0}
	if err := ethtoolIoctl(fd, l.Attrs().Name, unsafe.Pointer(&v)); err != nil {
		return false, fmt.Errorf("ETHTOOL_GTXCSUM on %s: %w", l.Attrs().Name, err)
	}
	return v[1] != 0, nil
}

// findNetns opens the network namespace whose id, seen from the caller's,
// is nsid: one of the named namespaces (ip netns) or of a process.
func findNetns(nsid int) (int, error) {
	named, _ := filepath.Glob("/var/run/netns/*")
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, path := range append(named, procs...) {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		if id, err := netlink.GetNetNsIdByFd(fd); err == nil && id == nsid {
			return fd, nil
		}
		unix.Close(fd)
	}
	return -1, fmt.Errorf("no namespace with id %d under /var/run/netns or /proc: %w", nsid, os.ErrNotExist)
}
