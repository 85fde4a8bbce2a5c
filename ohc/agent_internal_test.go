package ohc

import (
	"testing"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/watch"
)

// TestPartRevision: a part's items are rebuilt only after its streams
// change, and its revision moves only when the items do, so the agent
// hands the programmer a view only when something in it changed.
func TestPartRevision(t *testing.T) {
	s := &subscription{dest: &watch.View{}, fwd: &watch.View{}, lbs: &watch.View{}, routes: &watch.View{}}
	dest := func(ip string) *p4meshv1.Event {
		return &p4meshv1.Event{Type: p4meshv1.Event_PUT, Key: ip, Value: &p4meshv1.Event_Destination{Destination: &p4meshv1.Destination{Vpc: "red", Ip: ip}}}
	}
	fwd := func(ip, host string) *p4meshv1.Event {
		return &p4meshv1.Event{Type: p4meshv1.Event_PUT, Key: ip, Value: &p4meshv1.Event_Forwarding{Forwarding: &p4meshv1.Forwarding{Vpc: "red", Ip: ip, Mac: "02:00:00:00:00:01", HostIp: host}}}
	}
	k := subKey{vpc: "red"}
	build := func() (rev uint64, remote []RemoteEndpoint) {
		t.Helper()
		s.update(func(f *View) { s.addConnectivity(f, k) })
		return s.rev, s.frag.Remote["red"]
	}
	change := func(v *watch.View, ev *p4meshv1.Event) {
		v.Put(ev.GetKey(), ev)
		s.changes.Add(1)
	}

	change(s.dest, dest("10.1.0.2"))
	change(s.fwd, fwd("10.1.0.2", "192.168.0.2"))
	rev1, r := build()
	if len(r) != 1 || r[0].HostIP.String() != "192.168.0.2" {
		t.Fatalf("remote = %+v", r)
	}
	if rev, _ := build(); rev != rev1 {
		t.Errorf("no change: revision %d, then %d", rev1, rev)
	}
	// A destination whose forwarding has not come: no item, no new view.
	change(s.dest, dest("10.1.0.3"))
	if rev, r := build(); rev != rev1 || len(r) != 1 {
		t.Errorf("destination alone: revision %d (was %d), remote %+v", rev, rev1, r)
	}
	change(s.fwd, fwd("10.1.0.3", "192.168.0.3"))
	rev2, r := build()
	if rev2 == rev1 || len(r) != 2 || r[0].IP.String() != "10.1.0.2" {
		t.Errorf("forwarding came: revision %d (was %d), remote %+v", rev2, rev1, r)
	}
	// The endpoint moves: a new forwarding event for the same key.
	change(s.fwd, fwd("10.1.0.3", "192.168.0.4"))
	rev3, r := build()
	if rev3 == rev2 || len(r) != 2 || r[1].HostIP.String() != "192.168.0.4" {
		t.Errorf("moved: revision %d (was %d), remote %+v", rev3, rev2, r)
	}
	// Deleted.
	s.dest.Delete("10.1.0.3", 0)
	s.changes.Add(1)
	if rev, r := build(); rev == rev3 || len(r) != 1 {
		t.Errorf("deleted: revision %d (was %d), remote %+v", rev, rev3, r)
	}
}
