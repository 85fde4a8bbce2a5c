package e2e

import (
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/demo"
	"github.com/p4mesh/p4mesh/ohc"
)

// Gateway pool of the tests: c2 owns blue, and g1, g2 serve it.
const (
	poolName      = "gw"
	poolHealth    = time.Second
	poolHeartbeat = 200 * time.Millisecond
	poolIdle      = 2 * time.Second
	// h1's vnet_destination budget while on demand: red-1 and red-2 (its
	// own VPC's, required) and one promoted destination of blue, which
	// exports two.
	onDemandBudget = 3
)

var (
	blue1 = netip.MustParseAddr("10.2.0.10")
	blue2 = netip.MustParseAddr("10.2.0.11")
)

// gatewayTopology is the demo with two gateway hosts, g1 and g2, a pool of
// them serving blue, and blue-2 configured so that blue exports two
// destinations to red.
func gatewayTopology(addrs [2]string) *demo.Topology {
	t := demo.DemoTopology(addrs)
	for i, id := range []string{"g1", "g2"} {
		t.Hosts = append(t.Hosts, demo.Host{ID: id, IP: netip.AddrFrom4([4]byte{192, 168, 0, byte(11 + i)}),
			MAC: net.HardwareAddr{0x02, 0xfe, 0, 0, 0, byte(0x11 + i)}})
	}
	mac := func(m net.HardwareAddr) controller.MAC {
		c, err := controller.ParseMAC(m.String())
		if err != nil {
			panic(err)
		}
		return c
	}
	for _, c := range t.Configs {
		// Every host again, with a /32 to every other host: the gateways
		// are hosts of the underlay like the others.
		c.Hosts = nil
		for _, h := range t.Hosts {
			hc := controller.Host{ID: h.ID, UnderlayIP: h.IP, MAC: mac(h.MAC), UplinkPort: 1}
			for _, o := range t.Hosts {
				if o.ID != h.ID {
					hc.UnderlayRoutes = append(hc.UnderlayRoutes, controller.UnderlayRoute{
						Prefix: netip.PrefixFrom(o.IP, 32), Port: 1, SrcMAC: mac(h.MAC), DstMAC: mac(o.MAC)})
				}
			}
			c.Hosts = append(c.Hosts, hc)
		}
	}
	c2 := t.Configs["c2"]
	b2 := t.VM("blue-2")
	c2.Endpoints = append(c2.Endpoints, controller.Endpoint{ID: b2.ID, VPC: b2.VPC, Kind: controller.KindVM, IP: b2.IP,
		MAC: mac(b2.MAC), Host: b2.Host, Port: b2.Port})
	c2.GatewayPools = []controller.GatewayPool{{Name: poolName, Members: []string{"g1", "g2"}, VPCs: []string{"blue"},
		HealthTimeout: poolHealth, Heartbeat: poolHeartbeat, IdleTimeout: poolIdle}}
	return t
}

// TestGatewayPoolMem and TestGatewayPoolNetns run issue 13's story on a
// pool of two gateways: on demand through the pool within a budget, a
// gateway killed under a ping, demotion when idle, and the load trigger.
func TestGatewayPoolMem(t *testing.T) {
	topo := gatewayTopology([2]string{"", ""})
	f := demo.NewMemFabric(topo)
	t.Cleanup(func() { f.Close() })
	gatewayStory(t, f)
}

func TestGatewayPoolNetns(t *testing.T) {
	requireNetns(t)
	f, err := demo.NewNetnsFabric(gatewayTopology([2]string{"", ""}), logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	gatewayStory(t, f)
}

func gatewayStory(t *testing.T, f demo.Fabric) {
	var budget atomic.Int64
	budget.Store(onDemandBudget)
	m, err := demo.Start(t.Context(), demo.Options{Fabric: f, DataDir: t.TempDir(), Logger: logger(t), Topology: gatewayTopology,
		OHCOptions: func(host string, o *ohc.DaemonOptions) {
			if host == "h1" {
				o.TableBudget = map[string]int{"vnet_destination": int(budget.Load())}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)

	waitPing(t, m, "red-1", "10.1.0.11", 3) // h1 is programmed
	waitFor(t, 10*time.Second, "red -> blue through pool gw with both gateways live", func() bool {
		ps := peeringOf(m, "c1", "red", "blue")
		return ps.Mode == "pool" && ps.GatewayPool == poolName && slices.Equal(livePool(m), []string{"g1", "g2"})
	})
	// Traffic a gateway forwards is all it transmits: it has no VMs.
	forwarded := func() uint64 {
		var n uint64
		for _, g := range []string{"g1", "g2"} {
			if sw := m.Switches[g]; sw != nil {
				n += sw.PortStats(1).TxPackets.Load()
			}
		}
		return n
	}
	blueEntries := func() []netip.Addr { return destinations(t, m, "h1", "10.2.") }

	t.Run("on demand within the budget", func(t *testing.T) {
		before := forwarded()
		waitPing(t, m, "red-1", blue1.String(), 3)
		if forwarded() == before {
			t.Fatalf("red-1 reached blue-1 but no gateway forwarded anything")
		}
		waitFor(t, 5*time.Second, "blue-1 promoted to a direct entry on h1", func() bool {
			if _, err := m.Ping(t.Context(), "red-1", blue1, 1); err != nil {
				return false
			}
			return slices.Contains(blueEntries(), blue1)
		})
		before = forwarded()
		if n, err := m.Ping(t.Context(), "red-1", blue1, 5); err != nil || n != 5 {
			t.Fatalf("red-1 -> blue-1 after promotion: %d of 5 replies, %v", n, err)
		}
		if d := forwarded() - before; d != 0 {
			t.Errorf("after promotion the gateways still forwarded %d packets; want the direct path", d)
		}
		// blue-2 does not fit beside blue-1: it is reached through the
		// pool, then promoted in blue-1's place (least recently used).
		waitPing(t, m, "red-1", blue2.String(), 3)
		waitFor(t, 5*time.Second, "blue-2 promoted in place of blue-1", func() bool {
			m.Ping(t.Context(), "red-1", blue2, 1)
			e := blueEntries()
			return slices.Equal(e, []netip.Addr{blue2})
		})
		if n := len(destinations(t, m, "h1", "")); n > onDemandBudget {
			t.Errorf("h1 holds %d vnet_destination entries; budget %d", n, onDemandBudget)
		}
		if n, err := m.Ping(t.Context(), "red-1", blue1, 3); err != nil || n != 3 {
			t.Errorf("red-1 -> blue-1 once evicted: %d of 3 replies, %v; want it through the pool", n, err)
		}
	})

	t.Run("idle entries demoted", func(t *testing.T) {
		waitFor(t, poolIdle+5*time.Second, "h1's promoted entries demoted when idle", func() bool {
			return len(blueEntries()) == 0
		})
	})

	t.Run("gateway killed under a ping", func(t *testing.T) {
		// No promotion from here on: the ping must stay on the pool.
		if err := m.Apply("c2", func(c *controller.Config) { c.GatewayPools[0].PromotePackets = 1 << 30 }); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // the new threshold reaches h1 (c2 -> c1 -> h1)
		tx := func(g string) uint64 { return m.Switches[g].PortStats(1).TxPackets.Load() }
		g1, g2 := tx("g1"), tx("g2")
		const interval = 50 * time.Millisecond
		type result struct {
			run demo.PingRun
			err error
		}
		// The ping reports through done only: the test may end first.
		done := make(chan result, 1)
		go func() {
			run, err := m.PingEvery(t.Context(), "red-1", blue1, 120, interval)
			done <- result{run, err}
		}()
		time.Sleep(time.Second)
		victim, other := "g1", "g2"
		if tx("g2")-g2 > tx("g1")-g1 {
			victim, other = "g2", "g1"
		}
		if tx(victim) == map[string]uint64{"g1": g1, "g2": g2}[victim] {
			t.Fatalf("neither gateway forwarded red-1's ping")
		}
		killed := time.Now()
		m.StopOHC(victim)
		m.StopSwitch(victim)
		waitFor(t, poolHealth+3*time.Second, victim+" out of the pool", func() bool {
			return slices.Equal(livePool(m), []string{other})
		})
		t.Logf("%s out of the pool %v after it died", victim, time.Since(killed).Round(time.Millisecond))
		res := <-done
		if res.err != nil {
			t.Fatalf("ping: %v", res.err)
		}
		run := res.run
		t.Logf("ping across the failover: %v", run)
		if len(run.Lost) == 0 {
			t.Logf("no ping lost: the flow's packets between death and removal were few")
		}
		// What the pool promises: the dead gateway's flows are lost for
		// the health timeout plus the time to tell the hosts, no more.
		if out := run.Outage(); out > poolHealth+1500*time.Millisecond {
			t.Errorf("outage %v; want at most the health timeout %v plus 1.5 s", out, poolHealth)
		}
		// The ping goes on through the other gateway to its end.
		if len(run.Lost) > 0 && run.Lost[len(run.Lost)-1] > run.Sent-20 {
			t.Errorf("ping still losing requests at its end: %v", run)
		}
	})

	t.Run("load trigger", func(t *testing.T) {
		// Direct programming needs room for all of blue.
		budget.Store(16)
		m.StartOHC(t.Context(), "h1")
		if err := m.Apply("c2", func(c *controller.Config) {
			c.GatewayPools[0].DirectAbovePPS, c.GatewayPools[0].PoolBelowPPS = 10, 2
		}); err != nil {
			t.Fatal(err)
		}
		waitPing(t, m, "red-1", blue1.String(), 3)
		stop := make(chan struct{})
		pinged := make(chan struct{})
		go func() {
			defer close(pinged)
			for {
				select {
				case <-stop:
					return
				default:
				}
				m.PingEvery(t.Context(), "red-1", blue1, 20, 25*time.Millisecond) // 40 pps
			}
		}()
		waitFor(t, 15*time.Second, "red -> blue goes direct above 10 pps", func() bool {
			return peeringOf(m, "c1", "red", "blue").Mode == "direct"
		})
		t.Logf("direct: %s", peeringOf(m, "c1", "red", "blue").ModeReason)
		waitFor(t, 5*time.Second, "h1 holds all of blue", func() bool {
			return slices.Equal(blueEntries(), []netip.Addr{blue1, blue2})
		})
		close(stop)
		<-pinged
		waitFor(t, 15*time.Second, "red -> blue back to the pool when idle", func() bool {
			return peeringOf(m, "c1", "red", "blue").Mode == "pool"
		})
		t.Logf("pool: %s", peeringOf(m, "c1", "red", "blue").ModeReason)
		waitFor(t, 5*time.Second, "h1's unpromoted blue entries removed", func() bool {
			return len(blueEntries()) < 2
		})
	})
}

// peeringOf is ctl's state of the peering vpc -> peer.
func peeringOf(m *demo.Mesh, ctl, vpc, peer string) controller.PeeringStatus {
	for _, p := range m.Controllers[ctl].Peerings() {
		if p.VPC == vpc && p.PeerVPC == peer {
			return p
		}
	}
	return controller.PeeringStatus{}
}

// livePool is c2's live members of the pool.
func livePool(m *demo.Mesh) []string {
	for _, p := range m.Controllers["c2"].Stats().GatewayPools {
		if p.Name == poolName {
			return p.Live
		}
	}
	return nil
}

// destinations are the destination addresses of host's vnet_destination
// entries starting with prefix, sorted.
func destinations(t *testing.T, m *demo.Mesh, host, prefix string) []netip.Addr {
	t.Helper()
	es, err := m.Entries(host)
	if err != nil {
		t.Fatalf("read %s: %v", host, err)
	}
	var out []netip.Addr
	for _, e := range es["vnet_destination"] {
		for _, f := range e.GetMatch() {
			// Field 2 is dst_ip (the committed P4Info's id).
			if ex := f.GetExact(); ex != nil && len(ex.GetValue()) <= 4 && f.GetFieldId() == 2 {
				a := netip.AddrFrom4([4]byte(leftPad(ex.GetValue(), 4)))
				if prefix == "" || len(a.String()) >= len(prefix) && a.String()[:len(prefix)] == prefix {
					out = append(out, a)
				}
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func leftPad(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	return append(make([]byte, n-len(b)), b...)
}
