//go:build linux

package afpacket

import (
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtool ioctl ABI (linux/ethtool.h, linux/sockios.h).
const (
	siocEthtool  = 0x8946
	ethtoolGGRO  = 0x2b
	ethtoolSGRO  = 0x2c
	ethtoolGFlag = 0x25
	ethtoolSFlag = 0x26
	ethFlagLRO   = 1 << 15
)

type ethtoolValue struct{ cmd, data uint32 }

type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtool runs one ETHTOOL_G*/S* value command on interface ifname through
// socket fd (any socket of the interface's namespace).
func ethtool(fd int, ifname string, cmd, data uint32) (uint32, error) {
	v := ethtoolValue{cmd: cmd, data: data}
	var ifr ifreqData
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), siocEthtool, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&v)
	if errno != 0 {
		return 0, os.NewSyscallError("ioctl SIOCETHTOOL", errno)
	}
	return v.data, nil
}

// coalescing is what receive coalescing was on an interface before the port
// turned it off, to put back on Close.
type coalescing struct {
	gro, lro bool
}

// disableCoalescing turns GRO and LRO off on the interface: a switch port
// must see the frames that were on the wire, not the super-frames the
// receive path merges them into (DPDK's af_packet PMD and OVS ask the same
// of their users). The port segments what still arrives merged, so an
// interface that refuses is not an error; the cost is only a merge and a
// split per burst.
func disableCoalescing(fd int, ifname string) coalescing {
	var was coalescing
	if v, err := ethtool(fd, ifname, ethtoolGGRO, 0); err == nil && v != 0 {
		if _, err := ethtool(fd, ifname, ethtoolSGRO, 0); err == nil {
			was.gro = true
		}
	}
	if v, err := ethtool(fd, ifname, ethtoolGFlag, 0); err == nil && v&ethFlagLRO != 0 {
		if _, err := ethtool(fd, ifname, ethtoolSFlag, v&^ethFlagLRO); err == nil {
			was.lro = true
		}
	}
	return was
}

// restore turns back on what disableCoalescing turned off.
func (c coalescing) restore(fd int, ifname string) {
	if c.gro {
		ethtool(fd, ifname, ethtoolSGRO, 1)
	}
	if c.lro {
		if v, err := ethtool(fd, ifname, ethtoolGFlag, 0); err == nil {
			ethtool(fd, ifname, ethtoolSFlag, v|ethFlagLRO)
		}
	}
}
