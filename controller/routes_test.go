package controller

import (
	"net/netip"
	"strings"
	"testing"
)

func TestChooseRoutes(t *testing.T) {
	p := netip.MustParsePrefix("172.16.0.0/12")
	c := &Config{Routes: []Route{
		{VPC: "red", Prefix: p, NextHop: "a", Priority: 200},
		{VPC: "red", Prefix: p, NextHop: "b", Priority: 100},
		{VPC: "red", Prefix: p, NextHop: "c", Priority: 100},
		{VPC: "red", Prefix: netip.MustParsePrefix("0.0.0.0/0"), Priority: 5},
		{VPC: "blue", Prefix: p, NextHop: "d", Priority: 300},
	}}
	got := c.ChooseRoutes()
	want := []struct {
		chosen bool
		reason string
	}{
		{false, "priority 200 loses to 100 (via b)"},
		{true, "lowest priority value (100) of 3"},
		{false, "same priority as the route via b, configured first"},
		{true, "the only route"},
		{true, "the only route"}, // another VPC's prefix is its own
	}
	for i, w := range want {
		if got[i].Chosen != w.chosen || !strings.Contains(got[i].Reason, w.reason) {
			t.Errorf("route %d: chosen %v, %q; want %v, %q", i, got[i].Chosen, got[i].Reason, w.chosen, w.reason)
		}
	}
}
