package server

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/openconfig/gnmi/proto/gnmi"

	"github.com/p4mesh/p4mesh/controller"
	p4gnmi "github.com/p4mesh/p4mesh/gnmi"
)

// wholeLeaves is every leaf of the tree built whole from what the
// controller serves now but the RIBs': what a generation must hold (a
// subscription reads the RIB leaves it reaches itself, rib.go).
func wholeLeaves(t *testing.T, srv *Server, ctl *controller.Server) map[string]*leaf {
	t.Helper()
	d, err := p4gnmi.FromConfig(ctl.Config())
	if err != nil {
		t.Fatal(err)
	}
	p4gnmi.WithState(d, ctl.Peerings(), ctl.Stats())
	d.PopulateDefaults()
	m, err := srv.leaves(d)
	if err != nil {
		t.Fatal(err)
	}
	for k, l := range m {
		if place, _ := ribPlaceOf(l.path); place == ribIn {
			delete(m, k)
		}
	}
	return m
}

// leavesDiff says how got differs from want, "" if in nothing.
func leavesDiff(got, want map[string]*leaf) string {
	var out bytes.Buffer
	for k, l := range want {
		g, ok := got[k]
		switch {
		case !ok:
			fmt.Fprintf(&out, "missing %s = %s\n", k, l.ietf.GetJsonIetfVal())
		case !bytes.Equal(g.ietf.GetJsonIetfVal(), l.ietf.GetJsonIetfVal()) || !bytes.Equal(g.json.GetJsonVal(), l.json.GetJsonVal()):
			fmt.Fprintf(&out, "%s = %s, want %s\n", k, g.ietf.GetJsonIetfVal(), l.ietf.GetJsonIetfVal())
		}
	}
	for k, l := range got {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&out, "extra %s = %s\n", k, l.ietf.GetJsonIetfVal())
		}
	}
	return out.String()
}

// TestSnapshotFollowsChanges: after each of a random run of changes
// (endpoints added, changed, deleted; the load balancer's backends; a
// route's priority; now and then a whole Apply), the generation Subscribe serves from holds
// exactly the leaves of the tree built whole, and its link's changed set
// is exactly the leaves that differ from the generation before, though
// most generations were made from the endpoints and load balancers the
// change touched (controller.ConfigSince), not the whole tree.
func TestSnapshotFollowsChanges(t *testing.T) {
	srv, ctl, _ := fuzzServer(t)
	g, err := srv.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	prev := wholeLeaves(t, srv, ctl)
	if d := leavesDiff(flat(g), prev); d != "" {
		t.Fatalf("first generation:\n%s", d)
	}
	r := rand.New(rand.NewPCG(14, 2))
	var added []controller.Endpoint
	next, incremental := 0, 0
	for step := range 80 {
		var err error
		switch n := r.IntN(11); {
		case n < 4 || len(added) == 0:
			e := controller.Endpoint{ID: fmt.Sprintf("new%d", next), VPC: "red", Kind: controller.KindVM,
				IP:  netip.AddrFrom4([4]byte{10, 1, 1, byte(next)}),
				MAC: controller.MAC{2, 9, 0, 0, 0, byte(next)}, Host: "h2", Port: uint16(100 + next)}
			next++
			added = append(added, e)
			err = ctl.ApplyChange(&controller.Change{Endpoints: []controller.Endpoint{e}})
		case n < 6:
			i := r.IntN(len(added))
			added[i].Port += 100
			err = ctl.ApplyChange(&controller.Change{Endpoints: []controller.Endpoint{added[i]}})
		case n < 8:
			i := r.IntN(len(added))
			err = ctl.ApplyChange(&controller.Change{DeleteEndpoints: []string{added[i].ID}})
			added = append(added[:i], added[i+1:]...)
		case n < 9:
			lb, _ := ctl.Config().LoadBalancer("red-web")
			lb.Backends = append([]controller.LBBackend(nil), lb.Backends...)
			lb.Backends[0].Weight = uint32(1 + step)
			err = ctl.ApplyChange(&controller.Change{LoadBalancers: []controller.LoadBalancer{lb}})
		case n < 10: // a route, outside the endpoint and load balancer entries
			rt := ctl.Config().Routes[0]
			rt.Priority = uint32(step)
			err = ctl.ApplyChange(&controller.Change{Routes: []controller.Route{rt}})
		default:
			c := ctl.Config().Clone()
			c.VPCs[0].VNI = uint32(110 + step)
			err = ctl.Apply(c)
		}
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		before := g
		if g, err = srv.snapshot(); err != nil {
			t.Fatal(err)
		}
		if g == before {
			t.Fatalf("step %d: no new generation after a change", step)
		}
		if g.items.parent != nil {
			incremental++
		} else if step == 0 {
			t.Fatal("the first change, an endpoint added, rebuilt the whole tree")
		}
		want := wholeLeaves(t, srv, ctl)
		if d := leavesDiff(flat(g), want); d != "" {
			t.Fatalf("step %d: the generation differs from the whole tree:\n%s", step, d)
		}
		got := changedSince(before.link, g.link)
		wantChanged := map[string]*gnmi.Path{}
		diffLeaves(wantChanged, prev, want)
		if len(got) != len(wantChanged) {
			t.Fatalf("step %d: %d leaves changed, want %d: %v", step, len(got), len(wantChanged), keys(got))
		}
		for k := range wantChanged {
			if _, ok := got[k]; !ok {
				t.Fatalf("step %d: %s changed, not in the link's changed set", step, k)
			}
		}
		prev = want
	}
	t.Logf("%d of 80 generations made from the change alone", incremental)
	if incremental < 40 {
		t.Errorf("%d of 80 generations made from the change alone: the incremental path is not what is tested", incremental)
	}
}

func flat(g *generation) map[string]*leaf {
	m := map[string]*leaf{}
	g.each(func(k string, l *leaf) { m[k] = l })
	return m
}

func keys(m map[string]*gnmi.Path) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestEntryLeavesLayers: entry leaves patched over and over (layers,
// their merge past maxLayers, the flattening of a large merge) read as a
// plain map patched the same way.
func TestEntryLeavesLayers(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 3))
	want := map[string]map[string]*leaf{}
	base := map[string]map[string]*leaf{}
	for i := range 400 {
		k := fmt.Sprint("e", i)
		base[k] = map[string]*leaf{k: {}}
		want[k] = base[k]
	}
	e := &entryLeaves{m: base}
	merged, flattened := 0, 0
	for step := range 3000 {
		patch := map[string]map[string]*leaf{}
		for range 1 + r.IntN(3) {
			k := fmt.Sprint("e", r.IntN(600))
			if r.IntN(3) == 0 {
				patch[k] = nil
				delete(want, k)
			} else {
				patch[k] = map[string]*leaf{k: {}}
				want[k] = patch[k]
			}
		}
		before := e.depth
		e = e.with(patch)
		switch {
		case e.parent == nil:
			flattened++
		case e.depth < before:
			merged++
		}
		if e.depth >= maxLayers {
			t.Fatalf("step %d: %d layers", step, e.depth)
		}
		got := map[string]map[string]*leaf{}
		e.each(func(k string, ls map[string]*leaf) { got[k] = ls })
		if len(got) != len(want) {
			t.Fatalf("step %d: %d entries, want %d", step, len(got), len(want))
		}
		for k, ls := range want {
			if got[k][k] != ls[k] || e.get(k)[k] != ls[k] {
				t.Fatalf("step %d: entry %s is not the last one put", step, k)
			}
		}
		for i := range 600 {
			if k := fmt.Sprint("e", i); want[k] == nil && e.get(k) != nil {
				t.Fatalf("step %d: entry %s is gone but reads", step, k)
			}
		}
	}
	if merged == 0 || flattened == 0 {
		t.Errorf("%d merges, %d flattenings: both should happen", merged, flattened)
	}
}
