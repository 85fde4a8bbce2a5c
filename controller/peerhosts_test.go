package controller

import (
	"slices"
	"testing"
	"unsafe"
)

// TestPeerHostListsShare checks that peer sides of one VPC with the same
// hosts share one list, that a side whose hosts differ keeps its own
// (and the sides before it theirs), and that the ids are the model's
// strings where it has them.
func TestPeerHostListsShare(t *testing.T) {
	m := newModel(&Config{})
	m.putEndpoint(Endpoint{ID: "e1", VPC: "red", Host: "h1", Port: 1})
	// The decoded sides' own strings, not the model's.
	h1 := string([]byte("h1"))
	sh := peerHostLists{}
	a := sh.share("blue", []string{h1, "h2"}, &m.names)
	b := sh.share("blue", []string{"h1", "h2"}, &m.names)
	if !slices.Equal(a, []string{"h1", "h2"}) || !slices.Equal(b, a) {
		t.Fatalf("shared lists %v and %v, want [h1 h2]", a, b)
	}
	if &a[0] != &b[0] {
		t.Errorf("two sides of blue with the same hosts hold two lists")
	}
	if unsafe.StringData(a[0]) != unsafe.StringData(m.names.name(m.names.num["h1"])) {
		t.Errorf("host h1 of a side is not the model's string")
	}
	c := sh.share("blue", []string{"h1", "h3"}, &m.names)
	if !slices.Equal(c, []string{"h1", "h3"}) || !slices.Equal(a, []string{"h1", "h2"}) {
		t.Errorf("after blue's hosts changed: new side %v (want [h1 h3]), old side %v (want [h1 h2])", c, a)
	}
	if d := sh.share("green", []string{"h1", "h3"}, &m.names); &d[0] == &c[0] {
		t.Errorf("green's side shares blue's list")
	}
	if e := sh.share("blue", nil, &m.names); len(e) != 0 {
		t.Errorf("a side with no hosts has %v", e)
	}
}
