package e2e

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/demo"
)

// One controller down must not stop the programming of what the others
// own (issue 9). In the demo, c1 owns red and green and c2 owns blue.

// converged is how long programming from a live controller may take, OHC
// or switch restart included: the programming waits for no one, so this is
// a generous bound on the work, not a wait for the dead controller.
const converged = 2 * time.Second

// switchEntries reads host's switch with P4Runtime, each entry as text
// without its counters (pings move them).
func switchEntries(t *testing.T, m *demo.Mesh, host string) []string {
	t.Helper()
	es, err := m.Entries(host)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for table, tes := range es {
		for _, te := range tes {
			te = proto.CloneOf(te)
			te.CounterData = nil
			out = append(out, table+" "+prototext.MarshalOptions{}.Format(te))
		}
	}
	slices.Sort(out)
	return out
}

// within polls host's switch until ok holds, for at most d.
func within(t *testing.T, m *demo.Mesh, host, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			es, err := m.Entries(host)
			t.Fatalf("%s: not within %v; %s holds %d tables' entries (%v)", what, d, host, len(es), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func redEndpoint(id, ip, host string, port uint16) controller.Endpoint {
	return controller.Endpoint{ID: id, VPC: "red", Kind: controller.KindVM, IP: netip.MustParseAddr(ip),
		MAC: mustMAC("02:aa:00:00:00:" + strings.Split(ip, ".")[3]), Host: host, Port: port}
}

// TestControllerDownOHCRestart: with c2 down, h1's OHC restarts without
// a ping to c2's blue-1 lost or a switch told to delete. It programs a red
// endpoint c1 adds at once, and a red endpoint c1 deletes goes at once,
// while every entry it had stays as it was; c2 comes back and what it
// changes lands.
func TestControllerDownOHCRestart(t *testing.T) {
	m, topo, log := startMemMeshLogged(t)
	waitPing(t, m, "red-1", "10.2.0.10", 3) // h1 -> h2, red to blue
	before := switchEntries(t, m, "h1")

	mark := log.mark()
	m.StopController("c2")
	acrossRestart(t, m, "red-1", "10.2.0.10", "h1's OHC restart with c2 down", func() {
		m.StopOHC("h1")
		m.StartOHC(t.Context(), "h1")
		ohcsIdle(t, m, "h1")
	})
	// red-3 (on h3, port 5: not cabled, only its entries matter here).
	if err := m.Apply("c1", func(c *controller.Config) {
		c.Endpoints = append(c.Endpoints, redEndpoint("red-3", "10.1.0.12", "h3", 5))
	}); err != nil {
		t.Fatal(err)
	}
	within(t, m, "h1", "red-3 on h1 with c2 down", converged, func() bool { return hasDestination(t, m, "h1", "10.1.0.12") })
	after := switchEntries(t, m, "h1")
	if gone := slices.DeleteFunc(slices.Clone(before), func(e string) bool { return slices.Contains(after, e) }); len(gone) > 0 {
		t.Errorf("h1 lost or changed %d entries with c2 down and its OHC restarted:\n%s", len(gone), strings.Join(gone, "\n"))
	}
	waitPing(t, m, "red-1", "10.2.0.10", 3) // blue-1, c2's, still reached
	log.noDeletes(t, mark, "with c2 down and h1's OHC restarted")

	// A deletion c1 makes goes at once.
	if err := m.Apply("c1", func(c *controller.Config) {
		c.Endpoints = slices.DeleteFunc(c.Endpoints, func(e controller.Endpoint) bool { return e.ID == "red-3" })
	}); err != nil {
		t.Fatal(err)
	}
	within(t, m, "h1", "red-3 deleted on h1 with c2 down", converged, func() bool { return !hasDestination(t, m, "h1", "10.1.0.12") })
	if got := switchEntries(t, m, "h1"); !slices.Equal(got, before) {
		t.Errorf("h1 after red-3 came and went: %d entries, want the %d it had", len(got), len(before))
	}

	// c2 comes back, and adds blue-2 (h3): h1 programs it.
	if err := m.RestartController("c2"); err != nil {
		t.Fatal(err)
	}
	b2 := topo.VM("blue-2")
	if err := m.Apply("c2", func(c *controller.Config) {
		c.Endpoints = append(c.Endpoints, controller.Endpoint{ID: b2.ID, VPC: b2.VPC, Kind: controller.KindVM, IP: b2.IP,
			MAC: mustMAC(b2.MAC.String()), Host: b2.Host, Port: b2.Port})
	}); err != nil {
		t.Fatal(err)
	}
	waitPing(t, m, "red-1", "10.2.0.11", 3)
}

// TestControllerDownHostRestart: with c2 down, h3's switch restarts
// empty: its OHC, which still has c2's last state, gives it everything
// back. Then h3 restarts whole, switch and OHC: the switch gets its
// pipeline and everything c1 owns at once, so red-2 and green-1 are
// reachable again without c2; c2 comes back and blue lands too.
func TestControllerDownHostRestart(t *testing.T) {
	m, _ := startMemMesh(t)
	waitPing(t, m, "red-1", "10.1.0.11", 3) // h1 -> h3
	waitPing(t, m, "red-2", "10.2.0.10", 3) // h3 -> h2

	m.StopController("c2")
	if err := m.RestartSwitch("h3"); err != nil {
		t.Fatal(err)
	}
	within(t, m, "h3", "h3's switch reprogrammed with c2 down", converged, func() bool {
		_, err := m.Entries("h3")
		return err == nil && hasDestination(t, m, "h3", "10.1.0.10") && hasDestination(t, m, "h3", "10.2.0.10")
	})
	waitPing(t, m, "red-2", "10.2.0.10", 3) // c2's last state, from the OHC

	m.StopOHC("h3")
	if err := m.RestartSwitch("h3"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Entries("h3"); err == nil {
		t.Fatal("the restarted switch has a pipeline before any OHC gave it one")
	}
	m.StartOHC(t.Context(), "h3")
	within(t, m, "h3", "h3 programmed with c2 down", converged, func() bool {
		_, err := m.Entries("h3")
		return err == nil && hasDestination(t, m, "h3", "10.1.0.10") && hasDestination(t, m, "h3", "10.3.0.10")
	})
	waitPing(t, m, "red-1", "10.1.0.11", 3)

	// A deletion c1 makes goes at once here too: red-1 leaves red.
	if err := m.Apply("c1", func(c *controller.Config) {
		c.Endpoints = slices.DeleteFunc(c.Endpoints, func(e controller.Endpoint) bool { return e.ID == "red-1" })
	}); err != nil {
		t.Fatal(err)
	}
	within(t, m, "h3", "red-1 deleted on h3 with c2 down", converged, func() bool { return !hasDestination(t, m, "h3", "10.1.0.10") })

	if err := m.RestartController("c2"); err != nil {
		t.Fatal(err)
	}
	waitPing(t, m, "red-2", "10.2.0.10", 3)
}
