//go:build !linux

package main

import (
	"errors"
	"log/slog"

	"github.com/p4mesh/p4mesh/dataplane"
)

// Port modes of --port-mode.
const (
	portModeMmap     = "mmap"
	portModeAFPacket = "afpacket"
	portModeXDP      = "xdp"
)

// openPort fails: interface ports need AF_PACKET, which only Linux has. Use
// --mem-ports elsewhere.
func openPort(ifname, mode string, log *slog.Logger) (dataplane.Port, string, error) {
	return nil, "", errors.New("interface ports need Linux (AF_PACKET); use --mem-ports")
}
