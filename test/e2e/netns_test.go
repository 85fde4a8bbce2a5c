//go:build linux

package e2e

import (
	"context"
	"fmt"
	"math/big"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/demo"
	"github.com/p4mesh/p4mesh/internal/testenv"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

// requireNetns skips the test (fails it in CI) unless the netns fabric can
// run: root, and ip and ping to run the VMs' pings.
func requireNetns(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t, "network namespaces, veths and AF_PACKET sockets")
	testenv.NeedTool(t, "ip", "the VMs' namespaces (ip netns exec)")
	testenv.NeedTool(t, "ping", "the VMs' pings")
}

var received = regexp.MustCompile(`(\d+) received`)

// pingIn runs the kernel's ping in vm's namespace and returns the replies.
func pingIn(t *testing.T, f *demo.NetnsFabric, vm string, args ...string) int {
	t.Helper()
	out, _ := f.Exec(t.Context(), vm, append([]string{"ping", "-n"}, args...)...)
	m := received.FindSubmatch(out)
	if m == nil {
		t.Fatalf("ping %v in %s: no summary:\n%s", args, vm, out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestMeshNetns runs the demo on network namespaces with the kernel's ping:
// peering, isolation, anti-spoofing, changes through a controller and
// hitless restarts, and limited pull.
func TestMeshNetns(t *testing.T) {
	requireNetns(t)
	topo := demo.DemoTopology([2]string{"", ""})
	f, err := demo.NewNetnsFabric(topo, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	log := newWriteLog(t)
	m, err := demo.Start(t.Context(), demo.Options{Fabric: f, DataDir: t.TempDir(), Logger: logger(t), SwitchOptions: log.hook})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	waitPing(t, m, "red-1", "10.2.0.10", 3) // across the peering, h1 -> h2
	waitPing(t, m, "red-1", "10.1.0.11", 3) // within red, h1 -> h3
	waitPing(t, m, "blue-1", "10.1.0.10", 3)
	if n, err := m.Ping(t.Context(), "red-1", netip.MustParseAddr("10.3.0.10"), 2); err != nil || n != 0 {
		t.Errorf("red-1 -> green-1 (not peered): %d replies, %v; want none", n, err)
	}

	t.Run("spoofed source dropped", func(t *testing.T) {
		if out, err := f.Exec(t.Context(), "red-1", "ip", "addr", "add", "10.1.0.99/32", "dev", "eth0"); err != nil {
			t.Fatalf("add spoofed address: %v: %s", err, out)
		}
		defer f.Exec(context.Background(), "red-1", "ip", "addr", "del", "10.1.0.99/32", "dev", "eth0")
		// The echo requests die at h1's ingress, in vm_source_guard: they
		// are counted as drops on red-1's port.
		stats := m.Switches["h1"].PortStats(topo.VM("red-1").Port)
		dropped := stats.Dropped.Load()
		if n := pingIn(t, f, "red-1", "-I", "10.1.0.99", "-c", "2", "-W", "1", "10.2.0.10"); n != 0 {
			t.Errorf("ping from the spoofed 10.1.0.99: %d replies; want none", n)
		}
		if d := stats.Dropped.Load() - dropped; d < 2 {
			t.Errorf("h1 dropped %d packets from red-1 during the spoofed ping; want the 2 echo requests", d)
		}
		if n := pingIn(t, f, "red-1", "-c", "2", "-W", "1", "10.2.0.10"); n != 2 {
			t.Errorf("ping from red-1's own address: %d/2 replies", n)
		}
	})

	t.Run("endpoint added and deleted", func(t *testing.T) {
		b2 := topo.VM("blue-2")
		if n, _ := m.Ping(t.Context(), "red-1", b2.IP, 1); n != 0 {
			t.Fatal("blue-2 answered before it was configured")
		}
		if err := m.Apply("c2", func(c *controller.Config) {
			c.Endpoints = append(c.Endpoints, controller.Endpoint{ID: b2.ID, VPC: b2.VPC, Kind: controller.KindVM, IP: b2.IP,
				MAC: mustMAC(b2.MAC.String()), Host: b2.Host, Port: b2.Port})
		}); err != nil {
			t.Fatal(err)
		}
		waitPing(t, m, "red-1", b2.IP.String(), 3)

		if err := m.Apply("c2", func(c *controller.Config) {
			c.Endpoints = slices.DeleteFunc(c.Endpoints, func(e controller.Endpoint) bool { return e.ID == b2.ID })
		}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for _, h := range topo.Hosts {
			for hasDestination(t, m, h.ID, b2.IP.String()) {
				if time.Now().After(deadline) {
					t.Fatalf("%s still has a vnet_destination entry for the deleted blue-2", h.ID)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		if n, _ := m.Ping(t.Context(), "red-1", b2.IP, 1); n != 0 {
			t.Error("blue-2 still answers after it was deleted")
		}
	})

	t.Run("restarts are hitless", func(t *testing.T) {
		// The kernel's ping every 10ms from red-1 (h1) to blue-1 (h2),
		// across the peering and the underlay, loses nothing while c1,
		// then h1's OHC restart; and no switch is told to delete.
		log.watchDeletes(t, "across the restarts")
		c1Streams := steadySubscribers(t, m, "c1")
		acrossRestart(t, m, "red-1", "10.2.0.10", "c1's restart", func() {
			if err := m.RestartController("c1"); err != nil {
				t.Error(err)
			}
			resynced(t, m, "c1", c1Streams)
		})
		acrossRestart(t, m, "red-1", "10.2.0.10", "h1's OHC restart", func() {
			m.StopOHC("h1")
			m.StartOHC(t.Context(), "h1")
			ohcsIdle(t, m, "h1")
		})
		waitPing(t, m, "red-1", "10.2.0.10", 3)
	})

	t.Run("limited pull", func(t *testing.T) {
		green := uint32(0)
		for _, v := range topo.Configs["c1"].VPCs {
			if v.Name == "green" {
				green = v.VNI
			}
		}
		if green == 0 {
			t.Fatal("no green VPC in the topology")
		}
		for _, h := range []string{"h1", "h2"} {
			for _, e := range entriesWithVNI(t, m, h, green, "vnet_destination", "tunnel_term", "vnet_source_check") {
				t.Errorf("%s holds a green (VNI %d) entry: %s", h, green, e)
			}
		}
		// h3 hosts green-1, so it does hold green: the check above would
		// catch a lookup that matched nothing.
		if len(entriesWithVNI(t, m, "h3", green, "vnet_destination")) == 0 {
			t.Error("h3 hosts green-1 but holds no green vnet_destination entry: the VNI lookup is wrong")
		}
	})
}

// entriesWithVNI returns host's entries in tables whose vni match field is
// vni, with the field resolved through the P4Info.
func entriesWithVNI(t *testing.T, m *demo.Mesh, host string, vni uint32, tables ...string) []string {
	t.Helper()
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	s, err := p4rt.NewSchema(info)
	if err != nil {
		t.Fatal(err)
	}
	es, err := m.Entries(host)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, name := range tables {
		tbl, err := s.Table(name)
		if err != nil {
			t.Fatal(err)
		}
		field, err := tbl.Field("vni")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es[name] {
			if v, ok := matchValue(e, field.GetId()); ok && v == uint64(vni) {
				out = append(out, fmt.Sprintf("%s %v", name, e.GetMatch()))
			}
		}
	}
	return out
}

// matchValue is the exact value of match field id in e, as a number.
func matchValue(e *p4v1.TableEntry, id uint32) (uint64, bool) {
	for _, f := range e.GetMatch() {
		if f.GetFieldId() == id {
			return new(big.Int).SetBytes(f.GetExact().GetValue()).Uint64(), true
		}
	}
	return 0, false
}
