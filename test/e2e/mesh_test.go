// Package e2e runs p4mesh end to end: controllers, OHCs and switches
// together, on in-memory ports and (as root) on network namespaces.
package e2e

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/demo"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

func logger(t *testing.T) *slog.Logger {
	if os.Getenv("P4MESH_E2E_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// startMemMesh runs the demo topology on in-memory ports for the test.
func startMemMesh(t *testing.T) (*demo.Mesh, *demo.Topology) {
	t.Helper()
	topo := demo.DemoTopology([2]string{"", ""})
	f := demo.NewMemFabric(topo)
	t.Cleanup(func() { f.Close() })
	m, err := demo.Start(t.Context(), demo.Options{Fabric: f, DataDir: t.TempDir(), Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, topo
}

// waitPing pings until want replies of count come back or the deadline.
func waitPing(t *testing.T, m *demo.Mesh, vm string, dst string, want int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var got int
	for ctx.Err() == nil {
		n, err := m.Ping(ctx, vm, netip.MustParseAddr(dst), 3)
		if err == nil && n == 3 {
			return
		}
		got = n
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("ping %s -> %s: %d/3 replies; want %d", vm, dst, got, want)
}

func TestMeshInMemory(t *testing.T) {
	m, _ := startMemMesh(t)

	waitPing(t, m, "red-1", "10.2.0.10", 3) // across the peering, h1 -> h2
	waitPing(t, m, "red-1", "10.1.0.11", 3) // within red, h1 -> h3
	waitPing(t, m, "blue-1", "10.1.0.10", 3)
	if n, _ := m.Ping(t.Context(), "red-1", netip.MustParseAddr("10.3.0.10"), 3); n != 0 {
		t.Errorf("red-1 reached green-1 (not peered): %d replies", n)
	}
}

// TestMeshRestartsAndChanges: endpoints added and deleted through a
// controller reach every host without restarts; restarting a controller,
// an OHC, or both at once loses not one ping of a flow every 10ms, and no
// switch is told to delete anything meanwhile.
func TestMeshRestartsAndChanges(t *testing.T) {
	m, topo, log := startMemMeshLogged(t)
	waitPing(t, m, "red-1", "10.2.0.10", 3)

	// blue-2 is cabled on h3 but not configured: unreachable until c2 adds it.
	if n, _ := m.Ping(t.Context(), "red-1", netip.MustParseAddr("10.2.0.11"), 1); n != 0 {
		t.Fatal("an unconfigured endpoint answered")
	}
	b2 := topo.VM("blue-2")
	if err := m.Apply("c2", func(c *controller.Config) {
		c.Endpoints = append(c.Endpoints, controller.Endpoint{ID: b2.ID, VPC: b2.VPC, Kind: controller.KindVM, IP: b2.IP,
			MAC: mustMAC(b2.MAC.String()), Host: b2.Host, Port: b2.Port})
	}); err != nil {
		t.Fatal(err)
	}
	waitPing(t, m, "red-1", "10.2.0.11", 3)

	// red-1 (h1) to blue-2 (h3) crosses the peering and the underlay.
	mark := log.mark()
	c1Streams := steadySubscribers(t, m, "c1")
	acrossRestart(t, m, "red-1", "10.2.0.11", "c1's restart", func() {
		if err := m.RestartController("c1"); err != nil {
			t.Error(err)
		}
		resynced(t, m, "c1", c1Streams)
	})
	acrossRestart(t, m, "red-1", "10.2.0.11", "h1's OHC restart", func() {
		m.StopOHC("h1")
		m.StartOHC(t.Context(), "h1")
		ohcsIdle(t, m, "h1")
	})
	acrossRestart(t, m, "red-1", "10.2.0.11", "c1's restart with h1's OHC down", func() {
		m.StopOHC("h1")
		if err := m.RestartController("c1"); err != nil {
			t.Error(err)
		}
		m.StartOHC(t.Context(), "h1")
		resynced(t, m, "c1", c1Streams)
	})
	log.noDeletes(t, mark, "across the restarts")

	// Deleting blue-2 removes its entries on every host.
	if err := m.Apply("c2", func(c *controller.Config) {
		c.Endpoints = slices.DeleteFunc(c.Endpoints, func(e controller.Endpoint) bool { return e.ID == "blue-2" })
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, h := range []string{"h1", "h2", "h3"} {
		for hasDestination(t, m, h, "10.2.0.11") {
			if time.Now().After(deadline) {
				t.Fatalf("%s still has an entry for the deleted blue-2", h)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func mustMAC(s string) controller.MAC {
	m, err := controller.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func countEntries(t *testing.T, m *demo.Mesh, host string) int {
	t.Helper()
	es, err := m.Entries(host)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		n += len(e)
	}
	return n
}

// hasDestination reports whether host's vnet_destination has an entry for ip.
func hasDestination(t *testing.T, m *demo.Mesh, host, ip string) bool {
	t.Helper()
	es, err := m.Entries(host)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := p4.P4Info()
	s, _ := p4rt.NewSchema(info)
	tbl, _ := s.Table("vnet_destination")
	field, err := tbl.Field("dst_ip")
	if err != nil {
		t.Fatal(err)
	}
	want := netip.MustParseAddr(ip).As4()
	for _, e := range es["vnet_destination"] {
		for _, f := range e.GetMatch() {
			if f.GetFieldId() == field.GetId() && string(f.GetExact().GetValue()) == string(want[:]) {
				return true
			}
		}
	}
	return false
}

// TestExportPolicyOneSubnet: when blue exports only 10.2.1.0/24 to red, red's
// hosts receive and program no entry for blue-1 (10.2.0.10), and the data
// plane refuses traffic both ways: red-1 has no route to it, and blue-1's
// packets to red-1 fail red's source check.
func TestExportPolicyOneSubnet(t *testing.T) {
	m, _ := startMemMesh(t)
	waitPing(t, m, "red-1", "10.2.0.10", 3)

	if err := m.Apply("c2", func(c *controller.Config) {
		c.ExportPolicies = append(c.ExportPolicies, controller.ExportPolicy{Name: "one-subnet", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.2.1.0/24")}})
		c.Peerings[0].ExportPolicy = "one-subnet"
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for hasDestination(t, m, "h1", "10.2.0.10") {
		if time.Now().After(deadline) {
			t.Fatal("h1 still programs blue-1, which blue no longer exports to red")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n, _ := m.Ping(t.Context(), "red-1", netip.MustParseAddr("10.2.0.10"), 2); n != 0 {
		t.Errorf("red-1 reached blue-1 outside blue's export policy: %d replies", n)
	}
	if n, _ := m.Ping(t.Context(), "blue-1", netip.MustParseAddr("10.1.0.10"), 2); n != 0 {
		// red's source check drops the requests (and red-1 would have no
		// way back to 10.2.0.10 either).
		t.Errorf("blue-1 got replies from red-1 from outside what blue exports: %d", n)
	}
	// Red still exports everything to blue: blue's hosts keep red-1.
	if !hasDestination(t, m, "h2", "10.1.0.10") {
		t.Error("h2 lost red-1, which red still exports to blue")
	}
}

// TestControllerRestartWhilePeerDown: c2 (owner of blue) is down when c1
// restarts. c1 serves red's peering with blue from the side it saved, so
// no OHC drops blue's entries, and red keeps reaching blue: not one ping
// lost across the restart, and no switch told to delete anything from
// c2's stop to the end of the test.
func TestControllerRestartWhilePeerDown(t *testing.T) {
	m, _, log := startMemMeshLogged(t)
	waitPing(t, m, "red-1", "10.2.0.10", 3)

	log.watchDeletes(t, "from c2's stop to the end of the test")
	m.StopController("c2")
	c1Streams := steadySubscribers(t, m, "c1")
	acrossRestart(t, m, "red-1", "10.2.0.10", "c1's restart with c2 down", func() {
		if err := m.RestartController("c1"); err != nil {
			t.Error(err)
		}
		// The OHCs reconnect to c1, resynchronise and reconcile.
		resynced(t, m, "c1", c1Streams)
	})
	for _, p := range m.Controllers["c1"].Peerings() {
		if p.VPC == "red" && !p.Active {
			t.Errorf("c1 reports red->blue inactive (%s) with blue's side saved", p.Reason)
		}
	}
	waitPing(t, m, "red-1", "10.2.0.10", 3)
	if !hasDestination(t, m, "h1", "10.2.0.10") {
		t.Error("h1 dropped blue-1's entry when c1 restarted with c2 down")
	}
}
