//go:build linux

package main

import (
	"log/slog"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/dataplane/afpacket"
)

// The ports --port binds; this keeps them dataplane.Ports, the ring one
// batched both ways.
var (
	_ dataplane.Port        = (*afpacket.Port)(nil)
	_ dataplane.Port        = (*afpacket.Ring)(nil)
	_ dataplane.BatchReader = (*afpacket.Ring)(nil)
	_ dataplane.BatchWriter = (*afpacket.Ring)(nil)
)

// Port modes of --port-mode.
const (
	portModeMmap     = "mmap"
	portModeAFPacket = "afpacket"
)

// openRing opens a ring port; a test replaces it to see the fallback.
var openRing = func(ifname string) (*afpacket.Ring, error) {
	return afpacket.OpenRing(ifname, afpacket.RingOptions{})
}

// openPort binds a P4 port to a Linux interface in the given mode and
// returns the mode it got: mmap falls back to afpacket, with a warning
// saying why, where the kernel refuses a ring.
func openPort(ifname, mode string, log *slog.Logger) (dataplane.Port, string, error) {
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
