//go:build linux

package main

import (
	"log/slog"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/dataplane/afpacket"
	"github.com/p4mesh/p4mesh/dataplane/xsk"
)

// The ports --port binds; this keeps them dataplane.Ports, the ring one
// batched both ways.
var (
	_ dataplane.Port        = (*afpacket.Port)(nil)
	_ dataplane.Port        = (*afpacket.Ring)(nil)
	_ dataplane.BatchReader = (*afpacket.Ring)(nil)
	_ dataplane.BatchWriter = (*afpacket.Ring)(nil)
	_ dataplane.BatchReader = (*xsk.Port)(nil)
	_ dataplane.BatchWriter = (*xsk.Port)(nil)
)

// Port modes of --port-mode.
const (
	portModeMmap     = "mmap"
	portModeAFPacket = "afpacket"
	portModeXDP      = "xdp"
)

// openRing opens a ring port; a test replaces it to see the fallback.
var openRing = func(ifname string) (*afpacket.Ring, error) {
	return afpacket.OpenRing(ifname, afpacket.RingOptions{})
}

// openPort binds a P4 port to a Linux interface in the given mode and
// returns the mode it got: xdp falls back to mmap where the XDP program
// cannot be attached or the socket bound, mmap to afpacket where the kernel
// refuses a ring, each with one warning naming the interface (log's
// attribute) and saying why.
func openPort(ifname, mode string, log *slog.Logger) (dataplane.Port, string, error) {
	if mode == portModeXDP {
		x, xerr := xsk.Open(ifname, xsk.Options{})
		if xerr == nil {
			log.Info("AF_XDP port", "xdp", x.Mode())
			return x, portModeXDP, nil
		}
		log.Warn("AF_XDP unavailable; port falls back to mmap", "err", xerr)
		mode = portModeMmap
	}
	if mode == portModeMmap {
		r, rerr := openRing(ifname)
		if rerr == nil {
			return r, portModeMmap, nil
		}
		p, err := afpacket.Open(ifname)
		if err != nil {
			return nil, "", err
		}
		log.Warn("PACKET_MMAP ring unavailable; port falls back to afpacket (a socket call per frame)", "err", rerr)
		return p, portModeAFPacket, nil
	}
	p, err := afpacket.Open(ifname)
	return p, portModeAFPacket, err
}
