//go:build !linux

package main

import (
	"errors"

	"github.com/p4mesh/p4mesh/dataplane"
)

// openPort fails: interface ports need AF_PACKET, which only Linux has. Use
// --mem-ports elsewhere.
func openPort(ifname string) (dataplane.Port, error) {
	return nil, errors.New("interface ports need Linux (AF_PACKET); use --mem-ports")
}
