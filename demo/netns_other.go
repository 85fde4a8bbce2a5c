//go:build !linux

package demo

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/p4mesh/p4mesh/dataplane"
)

var errNoNetns = errors.New("netns fabric: network namespaces are Linux only")

// NetnsFabric is the demo on network namespaces, which only Linux has; see
// netns.go.
type NetnsFabric struct{}

// NetnsAvailable reports that there are no network namespaces here.
func NetnsAvailable() error { return errNoNetns }

// NewNetnsFabric fails: there are no network namespaces here.
func NewNetnsFabric(*Topology, *slog.Logger) (*NetnsFabric, error) { return nil, errNoNetns }

// Name implements Fabric.
func (*NetnsFabric) Name() string { return "network namespaces (unavailable)" }

// Namespace is "" here.
func (*NetnsFabric) Namespace(string) string { return "" }

// Ports implements Fabric.
func (*NetnsFabric) Ports(string) (map[uint16]dataplane.Port, error) { return nil, errNoNetns }

// Ping implements Fabric.
func (*NetnsFabric) Ping(context.Context, VM, netip.Addr, int, time.Duration) (int, error) {
	return 0, errNoNetns
}

// PingEvery implements Fabric.
func (*NetnsFabric) PingEvery(context.Context, VM, netip.Addr, int, time.Duration, time.Duration) (PingRun, error) {
	return PingRun{}, errNoNetns
}

// Exec fails here.
func (*NetnsFabric) Exec(context.Context, string, ...string) ([]byte, error) { return nil, errNoNetns }

// Close implements Fabric.
func (*NetnsFabric) Close() error { return nil }

// FRRAvailable reports that FRR is not used here.
func FRRAvailable() error { return errNoNetns }

// FRRRouter is FRR as the demo's on-prem router, Linux only.
type FRRRouter struct{}

// StartFRR fails here.
func StartFRR(string) (*FRRRouter, error) { return nil, errNoNetns }

// Addr is nothing here.
func (*FRRRouter) Addr() netip.AddrPort { return netip.AddrPort{} }

// Announce does nothing here.
func (*FRRRouter) Announce(context.Context, netip.Prefix) error { return nil }

// Describe says nothing here.
func (*FRRRouter) Describe() string { return "" }

// Close does nothing here.
func (*FRRRouter) Close() {}
