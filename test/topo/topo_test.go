//go:build linux

package topo_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/p4mesh/p4mesh/test/topo"
)

func TestVethBetweenNamespaces(t *testing.T) {
	topo.RequireRoot(t)
	topo.RequireTool(t, "ping")
	a, b := topo.NewNetns(t, "ta"), topo.NewNetns(t, "tb")
	la, lb := topo.Veth(t, topo.End{NS: a, Name: "eth0"}, topo.End{NS: b, Name: "eth0"}, topo.VethOptions{MTU: 1400})
	if la.TxChecksum(t) || lb.TxChecksum(t) {
		t.Error("tx checksum offload still on")
	}
	la.AddAddr(t, netip.MustParsePrefix("198.18.0.1/24"))
	lb.AddAddr(t, netip.MustParsePrefix("198.18.0.2/24"))
	out := a.Run(t, "ping", "-c", "1", "-W", "2", "198.18.0.2")
	if !strings.Contains(out, "1 received") {
		t.Fatalf("ping: %s", out)
	}
	if got := a.Run(t, "cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"); strings.TrimSpace(got) != "1" {
		t.Errorf("disable_ipv6 = %q, want 1", got)
	}
	if got := a.Run(t, "ip", "link", "show", "eth0"); !strings.Contains(got, "mtu 1400") {
		t.Errorf("link: %s", got)
	}
}
