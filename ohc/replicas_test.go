package ohc_test

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4rt"
	"github.com/p4mesh/p4mesh/watch"
)

// freeAddrs reserves n loopback addresses, none of them listening: the
// replicas of a replica set, standbys until one starts serving.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l.Addr().String())
		l.Close()
	}
	return out
}

// deleted sums what the programmer's reconciles deleted from the switch.
func deleted(changes map[string]p4rt.Change) int {
	n := 0
	for _, c := range changes {
		n += c.Deleted
	}
	return n
}

// snapshots is what controller c served as whole snapshots (first
// connections, and resumes that could not resume).
func snapshots(t *testing.T, c *testController) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(controller.NewCollector(c.srv))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "p4mesh_controller_watch_snapshots_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// TestAgentFollowsReplicaSetLeader runs c2 as a replica set of three
// addresses of which one serves at a time, as only an elected leader
// does. The OHC (--controller with the three) and c1 (whose directory
// lists them) sync from the leader; it stops, and another replica starts
// serving on its own address, built from the same store (the
// file the old leader released), as a new leader is from etcd. Every stream
// resumes there by revision: no RESET, no snapshot, no entry taken off
// the switch; and the new leader's changes reach the switch.
func TestAgentFollowsReplicaSetLeader(t *testing.T) {
	s := schema(t)
	addrs := freeAddrs(t, 4)
	c1 := &testController{name: "c1", addr: addrs[0], dir: t.TempDir()}
	replicas := addrs[1:]
	cfg1, cfg2 := testConfigs([]controller.ControllerEntry{
		{Name: "c1", Address: c1.addr, VPCs: []string{"red"}},
		{Name: "c2", Replicas: replicas, VPCs: []string{"blue"}},
	})
	leader := &testController{name: "c2", addr: replicas[1], dir: t.TempDir()}
	leader.start(t, cfg2)
	c1.start(t, cfg1)
	ts := startSwitch(t, "127.0.0.1:0")
	o := startAgentAt(t, ts.addr, 0, c1.addr, strings.Join(replicas, ","))

	before := eventually(t, s, ts.addr, "first programming from c1 and c2's leader", 20*time.Second, func(l []string) bool {
		return hasLine(l, redDest("10.2.0.11")) && hasLine(l, "port_vnet ingress_port=2 ") &&
			hasLine(l, "vnet_destination vni=200 dst_ip=10.1.0.11 ")
	})
	waitStats(t, o.agent, "every source synced", 20*time.Second, func(st ohc.AgentStats) bool { return st.Unsynced == 0 })
	streams := leader.srv.Stats().Subscribers // the OHC's and c1's
	st0 := o.agent.Stats()
	del0 := deleted(o.prog.Stats().TotalChanges)
	// c1 follows two streams at c2: c2's peer sides and the routes c2
	// exports to c1's VPC. The rest are the OHC's.
	const fromC1 = 2
	if streams < fromC1+1 {
		t.Fatalf("c2's leader serves %d streams; want the OHC's and c1's", streams)
	}

	// The leader's last commits (c1's peer sides arriving) may have moved
	// no item of a stream: PROGRESS tells its client the revision, at
	// most once a second. A failover inside that second resumes such a
	// client from below the new leader's base, which must RESET it: the
	// documented limit of resuming by revision, not what this test is
	// about. So the leader lives until every stream has been told.
	time.Sleep(2 * watch.DefaultProgressInterval)

	// Failover: the leader stops serving; the last replica is elected
	// and serves on its own address.
	leader.stop()
	// The replicas share the store (etcd, in production; here the file the
	// old leader released), so the new one starts at its revision.
	next := &testController{name: "c2", addr: replicas[2], dir: leader.dir}
	next.start(t, cfg2.Clone())
	deadline := time.Now().Add(20 * time.Second)
	for next.srv.Stats().Subscribers < streams {
		if time.Now().After(deadline) {
			t.Fatalf("the new leader serves %d streams after 20s, want the %d the old one served", next.srv.Stats().Subscribers, streams)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Each resumed stream is sent SYNCED after what it missed (nothing).
	waitStats(t, o.agent, "streams resumed at the new leader", 20*time.Second, func(st ohc.AgentStats) bool {
		return st.Synced >= st0.Synced+uint64(streams-fromC1) && st.Unsynced == 0
	})
	if st := o.agent.Stats(); st.Resets != st0.Resets {
		t.Errorf("the OHC got %d RESETs across the failover", st.Resets-st0.Resets)
	}
	if n := snapshots(t, next); n != 0 {
		t.Errorf("the new leader served %v snapshots; every stream should have resumed by revision", n)
	}
	if d := deleted(o.prog.Stats().TotalChanges); d != del0 {
		t.Errorf("the switch was sent %d deletes across the failover", d-del0)
	}
	if miss := minus(before, mustRead(t, s, ts.addr)); len(miss) > 0 {
		t.Errorf("entries gone from the switch across the failover: %q", miss)
	}
	if !slices.ContainsFunc(c1.srv.Peerings(), func(p controller.PeeringStatus) bool { return p.VPC == "red" && p.Active }) {
		t.Errorf("c1's peering with blue is not active after the failover: %+v", c1.srv.Peerings())
	}

	// The streams are live at the new leader: its change lands.
	next.apply(t, func(c *controller.Config) {
		c.Endpoints = append(c.Endpoints, endpoint("blue-3", "blue", "10.2.0.12", "b", 3, 3))
	})
	eventually(t, s, ts.addr, "the new leader's blue-3", 20*time.Second, func(l []string) bool { return hasLine(l, redDest("10.2.0.12")) })
	if d := deleted(o.prog.Stats().TotalChanges); d != del0 {
		t.Errorf("the switch was sent %d deletes", d-del0)
	}
}

func mustRead(t *testing.T, s *p4rt.Schema, addr string) []string {
	t.Helper()
	lines, err := readSwitch(t, s, addr)
	if err != nil {
		t.Fatal(err)
	}
	return lines
}
