package controller

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// gather scrapes reg and returns each sample's value by metric name and
// "stream" label ("" when none).
func gather(t *testing.T, reg *prometheus.Registry) map[string]map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for _, mf := range mfs {
		vals := map[string]float64{}
		for _, m := range mf.GetMetric() {
			label := ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "stream" {
					label = lp.GetValue()
				}
			}
			// A gauge or a counter: the other's getter returns 0.
			vals[label] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
		out[mf.GetName()] = vals
	}
	return out
}

func TestCollector(t *testing.T) {
	checkNoLeaks(t)
	c1, c2 := twoControllers(t, true)
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(c1.srv))

	eventually(t, "peering active", func() bool { return c1.srv.Stats().ActivePeerings == 1 })
	// c2 follows c1's peer sides, and once its side of the peering is
	// active, the routes red exports to blue.
	eventually(t, "c2 following c1", func() bool { return c2.srv.Stats().ActivePeerings == 1 && c1.srv.Stats().Subscribers == 2 })
	dest := watchRaw(t, dial(t, c1.addr), destWatch, &p4meshv1.WatchRequest{Host: "h1", Vpc: "red"})
	dest.snapshot(t)

	bad := c1Config(t, c1.addr, c2.addr)
	bad.VPCs[0].VNI = 0
	if err := c1.srv.Apply(bad); err == nil {
		t.Fatal("Apply of VNI 0 accepted")
	}
	if err := c1.srv.Apply(c1Config(t, c1.addr, c2.addr)); err != nil {
		t.Fatal(err)
	}

	got := gather(t, reg)
	for _, w := range []struct {
		name, stream string
		want         float64
	}{
		// red and green's own views, and red under "all".
		{"p4mesh_controller_published_services", "", 3},
		{"p4mesh_controller_hosts", "", 3},
		{"p4mesh_controller_peerings", "", 1},
		{"p4mesh_controller_peerings_active", "", 1},
		{"p4mesh_controller_config_applies_total", "", 1},
		{"p4mesh_controller_config_apply_errors_total", "", 1},
		{"p4mesh_controller_watch_subscribers", "destinations", 1},
		// c2's peer route manager imports what red exports to blue.
		{"p4mesh_controller_watch_subscribers", "routes", 1},
		// c2 follows c1's peer sides.
		{"p4mesh_controller_watch_subscribers", "peers", 1},
		// red (3 endpoints) twice, green (1) once.
		{"p4mesh_controller_watch_items", "destinations", 7},
		{"p4mesh_controller_watch_items", "peers", 1},
		{"p4mesh_controller_watch_snapshots_total", "destinations", 1},
		{"p4mesh_controller_watch_resyncs_forced_total", "destinations", 0},
	} {
		v, ok := got[w.name][w.stream]
		if !ok || v != w.want {
			t.Errorf("%s{stream=%q} = %v (present %v), want %v", w.name, w.stream, v, ok, w.want)
		}
	}
}
