package controller

import (
	"net/netip"
	"reflect"
	"testing"
)

// TestRIBReadsAgree: a RIB read a prefix at a time (RIBPrefix) or in
// parts (RIBPrefixes, RIBRange) is the RIB read whole (RIB), with ECMP
// sets, refused routes, statics and peer routes among its candidates.
func TestRIBReadsAgree(t *testing.T) {
	s := ribServer(t, func(c *Config) {
		c.Routes = append(c.Routes, Route{VPC: "red", Prefix: netip.MustParsePrefix("192.0.2.0/24"), NextHop: "red-vm", Priority: 5})
	})
	learn(t, s, "red", bgp("red-vpn1", "192.0.2.0/24", 100, 0, 65001), bgp("red-vpn1", "198.51.100.0/24", 100, 0, 65001),
		bgp("red-vpn2", "198.51.100.0/24", 100, 0, 65001), bgp("red-vpn1", "10.1.7.0/24", 100, 0, 65001))
	learn(t, s, "blue", bgp("blue-vpn", "203.0.113.0/24", 100, 0, 65002))
	for _, vpc := range []string{"red", "blue"} {
		whole := s.RIB(vpc)
		var one []Candidate
		ps := s.RIBPrefixes(vpc)
		for _, p := range ps {
			one = append(one, s.RIBPrefix(vpc, p)...)
		}
		if !reflect.DeepEqual(one, whole) {
			t.Errorf("%s a prefix at a time:\n%+v\nwhole:\n%+v", vpc, one, whole)
		}
		var parts []Candidate
		for lo := 0; lo < len(ps); lo += 2 {
			parts = append(parts, s.RIBRange(vpc, ps[lo:min(len(ps), lo+2)])...)
		}
		if !reflect.DeepEqual(parts, whole) {
			t.Errorf("%s in parts:\n%+v\nwhole:\n%+v", vpc, parts, whole)
		}
		if len(whole) < 2 {
			t.Errorf("%s's RIB has %d candidates: the test reads too little", vpc, len(whole))
		}
	}
	if got := s.RIBPrefix("red", netip.MustParsePrefix("9.9.9.0/24")); got != nil {
		t.Errorf("a prefix with no candidate: %v", got)
	}
	if got := s.RIBPrefixes("nosuch"); got != nil {
		t.Errorf("an unknown VPC's prefixes: %v", got)
	}
}
