package bgp

import (
	"net/netip"
	"slices"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestWirePrefix: the wire-form reading of an NLRI agrees with
// unmarshalling it, and gives up (ok false) on what it does not handle.
func TestWirePrefix(t *testing.T) {
	for _, c := range []struct {
		prefix string
		bits   uint32
		want   string // "" : not read from the wire form
	}{
		{"11.0.0.0", 24, "11.0.0.0/24"},
		{"0.0.0.0", 0, "0.0.0.0/0"},
		{"255.255.255.255", 32, "255.255.255.255/32"},
		{"10.1.2.3", 16, "10.1.0.0/16"}, // host bits masked, as ParseAddr+Prefix does
		{"10.1.2.3", 33, ""},
		{"10.01.2.3", 24, ""},
		{"10.1.2", 24, ""},
		{"10.1.2.3.4", 24, ""},
		{"10.1.2.256", 24, ""},
		{"2001:db8::", 32, ""},
		{"", 0, ""},
	} {
		a, err := anypb.New(&api.IPAddressPrefix{Prefix: c.prefix, PrefixLen: c.bits})
		if err != nil {
			t.Fatal(err)
		}
		p, ok := wirePrefix(a.Value)
		if got := ""; ok {
			got = p.String()
			if got != c.want {
				t.Errorf("%s/%d: read %s, want %q", c.prefix, c.bits, got, c.want)
			}
		} else if c.want != "" {
			t.Errorf("%s/%d: not read, want %s", c.prefix, c.bits, c.want)
		}
	}
}

// TestDecoderSharesAttributes: paths of one event with the same attributes
// share one decoding; a path with other attributes gets its own.
func TestDecoderSharesAttributes(t *testing.T) {
	path := func(prefix string, med uint32, as ...uint32) *api.Path {
		nlri, _ := anypb.New(&api.IPAddressPrefix{Prefix: prefix, PrefixLen: 24})
		nh, _ := anypb.New(&api.NextHopAttribute{NextHop: "192.0.2.1"})
		m, _ := anypb.New(&api.MultiExitDiscAttribute{Med: med})
		asp, _ := anypb.New(&api.AsPathAttribute{Segments: []*api.AsSegment{{Type: api.AsSegment_AS_SEQUENCE, Numbers: as}}})
		return &api.Path{Nlri: nlri, Pattrs: []*anypb.Any{nh, m, asp}}
	}
	var d pathDecoder
	var got []Route
	for _, p := range []*api.Path{path("11.0.0.0", 10, 65001), path("11.0.1.0", 10, 65001), path("11.0.2.0", 20, 65001), path("11.0.3.0", 20, 65001, 65002)} {
		rt, _, err := d.decode(p)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rt)
	}
	want := []struct {
		prefix string
		med    uint32
		as     []uint32
	}{{"11.0.0.0/24", 10, []uint32{65001}}, {"11.0.1.0/24", 10, []uint32{65001}}, {"11.0.2.0/24", 20, []uint32{65001}}, {"11.0.3.0/24", 20, []uint32{65001, 65002}}}
	for i, w := range want {
		r := got[i]
		if r.Prefix != netip.MustParsePrefix(w.prefix) || r.MED != w.med || !slices.Equal(r.ASPath, w.as) || r.NextHop != netip.MustParseAddr("192.0.2.1") {
			t.Errorf("path %d: %+v, want %s MED %d AS path %v", i, r, w.prefix, w.med, w.as)
		}
	}
	if &got[0].ASPath[0] != &got[1].ASPath[0] {
		t.Error("paths with the same attributes do not share the decoded AS path")
	}
}
