//go:build linux

package main

import (
	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/dataplane/afpacket"
)

// The AF_PACKET port is what --port binds; this keeps it a dataplane.Port.
var _ dataplane.Port = (*afpacket.Port)(nil)

// openPort binds a P4 port to a Linux interface.
func openPort(ifname string) (dataplane.Port, error) {
	return afpacket.Open(ifname)
}
