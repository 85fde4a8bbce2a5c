package ohc_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

// The programmer against the real p4mesh-switch, in process, over loopback:
// P4Runtime on 127.0.0.1 and packets on in-memory ports.

// testSwitch is one p4mesh-switch process: ports 1 and 2 are red's VMs,
// port 10 the uplink.
type testSwitch struct {
	addr   string
	sw     *dataplane.Switch
	g      *grpc.Server
	vm1    *dataplane.MemPort
	uplink *dataplane.MemPort
	att    *dataplane.MemPort // port 5: red's VPN attachment in routeView
	cancel context.CancelFunc
	done   chan struct{}
}

// startSwitch starts an empty switch (no pipeline) serving on addr
// ("127.0.0.1:0" for a new port; an old address to play a restart).
func startSwitch(t *testing.T, addr string) *testSwitch {
	t.Helper()
	return startSwitchLogged(t, addr, nil)
}

// startSwitchLogged is startSwitch with onWrite (may be nil) called with
// every update the switch applies.
func startSwitchLogged(t testing.TB, addr string, onWrite func(*p4v1.Update)) *testSwitch {
	t.Helper()
	return startSwitchWith(t, addr, onWrite)
}

// startSwitchWith is startSwitchLogged with options for its gRPC server
// (interceptors that delay or drop RPCs).
func startSwitchWith(t testing.TB, addr string, onWrite func(*p4v1.Update), opts ...grpc.ServerOption) *testSwitch {
	t.Helper()
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	ts := &testSwitch{vm1: dataplane.NewMemPort(16), uplink: dataplane.NewMemPort(16), att: dataplane.NewMemPort(16), done: make(chan struct{})}
	ts.sw, err = dataplane.NewSwitch(dataplane.SwitchOptions{
		Server: dataplane.Options{P4Info: info, OnWrite: onWrite},
		Ports:  map[uint16]dataplane.Port{1: ts.vm1, 2: dataplane.NewMemPort(16), 5: ts.att, 10: ts.uplink},
	})
	if err != nil {
		t.Fatal(err)
	}
	var lis net.Listener
	for range 100 { // a restarted switch's port may take a moment to free
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = lis.Addr().String()
	ts.g = dataplane.NewGRPCServer(opts...)
	ts.sw.Server().Register(ts.g)
	go ts.g.Serve(lis)
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.sw.Run(ctx); close(ts.done) }()
	t.Cleanup(ts.stop)
	return ts
}

// stop ends the switch process; safe to call twice.
func (ts *testSwitch) stop() {
	ts.g.Stop()
	ts.cancel()
	<-ts.done
}

// testOHC is the part of an OHC process under test: a client and a
// programmer, each run in its own goroutine.
type testOHC struct {
	c      *p4rt.Client
	p      *ohc.Programmer
	cancel context.CancelFunc
	done   chan struct{}
	runErr error
}

func startOHC(t *testing.T, addr string, election uint64) *testOHC {
	t.Helper()
	return startOHCWith(t, addr, election, nil)
}

// startOHCWith is startOHC with the programmer's options edited by opt.
func startOHCWith(t testing.TB, addr string, election uint64, opt func(*ohc.ProgrammerOptions)) *testOHC {
	t.Helper()
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	c, err := p4rt.New(p4rt.Config{Addr: addr, DeviceID: 1, ElectionID: p4rt.ElectionID{Low: election},
		Backoff: p4rt.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	po := ohc.ProgrammerOptions{Client: c, P4Info: info, Logger: log,
		Backoff: p4rt.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}}
	if opt != nil {
		opt(&po)
	}
	p, err := ohc.NewProgrammer(po)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	o := &testOHC{c: c, p: p, cancel: cancel, done: make(chan struct{})}
	cdone := make(chan struct{})
	go func() { c.Run(ctx); close(cdone) }()
	go func() { o.runErr = p.Run(ctx); <-cdone; close(o.done) }()
	t.Cleanup(o.stop)
	return o
}

func (o *testOHC) stop() {
	o.cancel()
	<-o.done
}

func (o *testOHC) converge(t testing.TB, v *ohc.View) {
	t.Helper()
	o.p.Update(v)
	o.wait(t)
}

// wait waits until the switch holds the last view handed over.
func (o *testOHC) wait(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.p.WaitConverged(ctx); err != nil {
		t.Fatalf("not converged: %v (stats %+v, client %v)", err, o.p.Stats(), o.c.LastError())
	}
}

// switchLines reads every entry, member and group off the switch, rendered
// and sorted; ok is false if the read failed (the switch is restarting).
func switchLines(t *testing.T, s *p4rt.Schema, c *p4rt.Client) ([]string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	read := []*p4v1.Entity{{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{}}}}
	for _, name := range []string{"lb_selector", "route_selector", "gateway_selector"} {
		ap, err := s.ActionProfile(name)
		if err != nil {
			t.Fatal(err)
		}
		read = append(read,
			&p4v1.Entity{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: &p4v1.ActionProfileMember{ActionProfileId: ap.ID()}}},
			&p4v1.Entity{Entity: &p4v1.Entity_ActionProfileGroup{ActionProfileGroup: &p4v1.ActionProfileGroup{ActionProfileId: ap.ID()}}})
	}
	es, err := c.ReadAll(ctx, read)
	if err != nil {
		return nil, false
	}
	var out []string
	for _, e := range es {
		out = append(out, render(t, s, e))
	}
	slices.Sort(out)
	return out, true
}

// wantLines is what the switch should hold for v: the compiled entities
// without the default entry, which a wildcard read leaves out.
func wantLines(t *testing.T, s *p4rt.Schema, v *ohc.View) []string {
	t.Helper()
	lines, _ := compile(t, s, v)
	// Found before deleting: DeleteFunc moves the lines it keeps as it goes.
	def := withPrefix(lines, "local_host default")[0]
	lines = slices.DeleteFunc(lines, func(l string) bool { return l == def })
	slices.Sort(lines)
	return lines
}

func waitLines(t *testing.T, s *p4rt.Schema, c *p4rt.Client, want []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, ok := switchLines(t, s, c)
		if ok && slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("switch holds\n%q\nwant\n%q", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// udpFrame is red-vm1 sending a UDP datagram to dst through its gateway.
func udpFrame(dst string) []byte { return udpFrameFrom(redVM1MAC, "10.1.0.2", dst) }

// udpFrameFrom is a UDP datagram from src (with MAC srcMAC) to dst, sent to
// red's gateway MAC.
func udpFrameFrom(srcMAC, src, dst string) []byte {
	payload := []byte("p4mesh")
	f := append(append([]byte{}, mac("02:00:00:01:00:01")...), mac(srcMAC)...)
	f = binary.BigEndian.AppendUint16(f, 0x0800)
	iph := []byte{0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0}
	binary.BigEndian.PutUint16(iph[2:], uint16(20+8+len(payload)))
	iph = append(iph, ip(src).AsSlice()...)
	iph = append(iph, ip(dst).AsSlice()...)
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(iph[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(iph[10:], ^uint16(sum))
	f = append(f, iph...)
	f = binary.BigEndian.AppendUint16(f, 40000)
	f = binary.BigEndian.AppendUint16(f, 7000)
	f = binary.BigEndian.AppendUint16(f, uint16(8+len(payload)))
	f = binary.BigEndian.AppendUint16(f, 0)
	return append(f, payload...)
}

// checkTunnel injects a frame from red-vm1 to blue's VM and checks the VXLAN
// frame on the uplink: to host B with blue's VNI, the inner frame addressed
// to the VM's MAC with its TTL decremented once.
func checkTunnel(t *testing.T, ts *testSwitch) {
	t.Helper()
	in := udpFrame("10.2.1.5")
	ts.vm1.Inject(in)
	var out []byte
	select {
	case out = <-ts.uplink.Output():
	case <-time.After(5 * time.Second):
		t.Fatalf("no frame on the uplink (switch dropped %d)", ts.sw.Dropped.Load())
	}
	if len(out) != 14+20+8+8+len(in) {
		t.Fatalf("uplink frame of %d bytes, want %d: %x", len(out), 14+20+8+8+len(in), out)
	}
	eth, outerIP, udp, vxlan, inner := out[:14], out[14:34], out[34:42], out[42:50], out[50:]
	if !bytes.Equal(eth[:6], mac(uplinkMAC)) || !bytes.Equal(eth[6:12], mac(hostAMAC)) {
		t.Errorf("outer Ethernet %x, want to the uplink router from host A", eth)
	}
	if src, dst := netip.AddrFrom4([4]byte(outerIP[12:16])), netip.AddrFrom4([4]byte(outerIP[16:20])); src != ip(hostA) || dst != ip(hostB) {
		t.Errorf("outer IP %v -> %v, want %s -> %s", src, dst, hostA, hostB)
	}
	if port := binary.BigEndian.Uint16(udp[2:]); port != 4789 {
		t.Errorf("outer UDP port %d, want 4789", port)
	}
	if vni := binary.BigEndian.Uint32(vxlan[4:]) >> 8; vxlan[0] != 0x08 || vni != 200 {
		t.Errorf("VXLAN flags %#x VNI %d, want 0x08 and blue's 200", vxlan[0], vni)
	}
	if !bytes.Equal(inner[:6], mac(blueVMMAC)) {
		t.Errorf("inner destination MAC %x, want blue's VM %s", inner[:6], blueVMMAC)
	}
	if ttl := inner[14+8]; ttl != 63 {
		t.Errorf("inner TTL %d, want 63", ttl)
	}
	if !bytes.Equal(inner[14+16:14+20], ip("10.2.1.5").AsSlice()) || !bytes.Equal(inner[14+20:], in[14+20:]) {
		t.Errorf("inner packet changed beyond MAC and TTL: %x", inner)
	}
}

func TestProgrammerAgainstSwitch(t *testing.T) {
	s := schema(t)
	ts := startSwitch(t, "127.0.0.1:0")
	o := startOHC(t, ts.addr, 1)

	// Programmed from nothing: pipeline pushed, every entry in.
	v1 := testView()
	o.converge(t, v1)
	waitLines(t, s, o.c, wantLines(t, s, v1))
	st := o.p.Stats()
	if st.PipelinePushes != 1 || st.Applied != 1 || st.Desired["vnet_destination"] != 4 || len(st.Warnings) != 1 {
		t.Errorf("stats after the first view: %+v", st)
	}
	checkTunnel(t, ts)

	// An endpoint goes away: exactly its entries are deleted.
	v2 := testView()
	v2.Local = v2.Local[:1] // red-vm2 leaves
	v2.LBs[0].Backends = v2.LBs[0].Backends[:1]
	o.converge(t, v2)
	waitLines(t, s, o.c, wantLines(t, s, v2))
	got, _ := switchLines(t, s, o.c)
	for _, l := range got {
		if bytes.Contains([]byte(l), []byte("10.1.0.3")) || bytes.Contains([]byte(l), []byte("ingress_port=2")) {
			t.Errorf("entry of the removed endpoint still on the switch: %q", l)
		}
	}
	if c := o.p.Stats().LastChanges; c["port_vnet"].Deleted != 1 || c["vnet_destination"].Deleted != 1 || c["lb_selector"].Deleted != 1 {
		t.Errorf("last changes %+v: want one port_vnet, vnet_destination and member deleted", c)
	}

	// The OHC restarts (new client, new programmer, same switch): it finds
	// the pipeline and every entry in place and writes nothing.
	o.stop()
	if o.runErr != nil {
		t.Errorf("programmer Run returned %v", o.runErr)
	}
	writes := ts.sw.Server().Stats().Writes
	o2 := startOHC(t, ts.addr, 2)
	o2.converge(t, v2)
	if st := o2.p.Stats(); st.PipelinePushes != 0 || st.Reconciles == 0 || len(st.TotalChanges) != 0 {
		t.Errorf("restarted OHC: %+v; want no pipeline push and no change", st)
	}
	if w := ts.sw.Server().Stats().Writes; w != writes {
		t.Errorf("restarted OHC sent %d Write RPCs, want none", w-writes)
	}
	waitLines(t, s, o2.c, wantLines(t, s, v2))
	checkTunnel(t, ts)

	// The switch restarts, empty: the programmer notices the new
	// arbitration, pushes the pipeline and programs everything again.
	ts.stop()
	ts2 := startSwitch(t, ts.addr)
	waitLines(t, s, o2.c, wantLines(t, s, v2))
	if st := o2.p.Stats(); st.PipelinePushes != 1 {
		t.Errorf("after the switch restart: %d pipeline pushes, want 1", st.PipelinePushes)
	}
	checkTunnel(t, ts2)
}

func TestProgrammerBadView(t *testing.T) {
	s := schema(t)
	ts := startSwitch(t, "127.0.0.1:0")
	o := startOHC(t, ts.addr, 1)
	good := testView()
	o.converge(t, good)

	// A view that does not compile is reported and leaves the switch as it
	// was, then the next good view goes in.
	bad := testView()
	bad.Local[0].VPC = "purple"
	o.p.Update(bad)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.p.WaitConverged(ctx); !errors.Is(err, ohc.ErrBadView) {
		t.Fatalf("WaitConverged after a bad view = %v, want ErrBadView", err)
	}
	if st := o.p.Stats(); st.Errors != 1 || !errors.Is(st.LastError, ohc.ErrBadView) || st.Applied != 1 {
		t.Errorf("stats after a bad view: %+v", st)
	}
	waitLines(t, s, o.c, wantLines(t, s, good))

	// The switch restarts meanwhile: it gets the last good view back, not
	// nothing.
	ts.stop()
	startSwitch(t, ts.addr)
	waitLines(t, s, o.c, wantLines(t, s, good))

	next := testView()
	next.Local = next.Local[:1]
	next.LBs[0].Backends = next.LBs[0].Backends[:1]
	o.converge(t, next)
	waitLines(t, s, o.c, wantLines(t, s, next))
}

// TestProgrammerRefusesOverBudget: a view needing more entries than a
// table's size (here a target budget of 4 vnet_destination entries) is
// refused before anything is written, naming the table; the switch keeps
// the last view that fit, and the next one that fits goes in exactly.
func TestProgrammerRefusesOverBudget(t *testing.T) {
	s := schema(t)
	ts := startSwitch(t, "127.0.0.1:0")
	const table = "VpcIngress.vnet_destination"
	o := startOHCWith(t, ts.addr, 1, func(po *ohc.ProgrammerOptions) {
		caps, err := p4rt.FromP4Info(po.P4Info)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := caps.TableSize[table]; !ok {
			t.Fatalf("no table %s in the P4Info", table)
		}
		caps.TableSize[table] = 4
		po.Capabilities = caps
		// Resyncs while over budget must not write the refused view.
		po.ResyncInterval = 50 * time.Millisecond
	})
	fits := testView()
	o.converge(t, fits)
	if n := o.p.Stats().Desired["vnet_destination"]; n != 4 {
		t.Fatalf("the test view has %d vnet_destination entries; the budget is set for 4", n)
	}
	writes := ts.sw.Server().Stats().Writes

	over := testView()
	over.Remote["blue"] = append(over.Remote["blue"], ohc.RemoteEndpoint{IP: ip("10.2.1.6"), MAC: mac("02:00:00:02:01:06"), HostIP: ip(hostB)})
	o.p.Update(over)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := o.p.WaitConverged(ctx)
	var be *p4rt.BudgetError
	if !errors.Is(err, ohc.ErrBadView) || !errors.As(err, &be) || len(be.Over) != 1 || be.Over[0].Table != table || be.Over[0].Want != 5 {
		t.Fatalf("WaitConverged over budget = %v; want ErrBadView naming %s, 5 of 4", err, table)
	}
	time.Sleep(300 * time.Millisecond) // several resyncs
	if w := ts.sw.Server().Stats().Writes; w != writes {
		t.Errorf("%d Write RPCs for a view over budget, want none", w-writes)
	}
	waitLines(t, s, o.c, wantLines(t, s, fits))

	// Back within budget, by another way than undoing the change: the
	// switch gets exactly that view, not the delta from the refused one.
	next := testView()
	next.Remote["blue"] = append(next.Remote["blue"], ohc.RemoteEndpoint{IP: ip("10.2.1.6"), MAC: mac("02:00:00:02:01:06"), HostIP: ip(hostB)})
	next.Local = next.Local[:1]
	next.LBs[0].Backends = next.LBs[0].Backends[:1]
	o.converge(t, next)
	waitLines(t, s, o.c, wantLines(t, s, next))
}

func TestProgrammerCoalesces(t *testing.T) {
	ts := startSwitch(t, "127.0.0.1:0")
	o := startOHC(t, ts.addr, 1)
	// Many views in a burst: Update never blocks, the last one wins, and
	// far fewer reconciles than views run.
	var last *ohc.View
	for i := range 50 {
		last = testView()
		last.Routes = append(last.Routes, ohc.Route{VPC: "red", Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 50, byte(i), 0}), 24)})
		o.p.Update(last)
	}
	o.converge(t, last) // hands it over once more: generation 51
	waitLines(t, schema(t), o.c, wantLines(t, schema(t), last))
	if st := o.p.Stats(); st.Reconciles > 10 || st.Generation != 51 {
		t.Errorf("50 views in a burst: %d reconciles, generation %d", st.Reconciles, st.Generation)
	}
}

func TestNewProgrammerErrors(t *testing.T) {
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	c, err := p4rt.New(p4rt.Config{Addr: "127.0.0.1:1", DeviceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := ohc.NewProgrammer(ohc.ProgrammerOptions{P4Info: info}); err == nil {
		t.Error("no client: no error")
	}
	if _, err := ohc.NewProgrammer(ohc.ProgrammerOptions{Client: c}); err == nil {
		t.Error("no P4Info: no error")
	}
	other, _ := p4.P4Info()
	other.Tables = other.Tables[:1]
	if _, err := ohc.NewProgrammer(ohc.ProgrammerOptions{Client: c, P4Info: other}); err == nil {
		t.Error("a P4Info without vpc_peering.p4's tables: no error")
	}
}

// withoutBlue is v without what blue's connectivity stream brings: its
// endpoints and load balancer, as when blue's controller is down. The
// peering with blue is red's controller's, and stays.
func withoutBlue(v *ohc.View) *ohc.View {
	delete(v.Remote, "blue")
	v.LBs = slices.DeleteFunc(v.LBs, func(lb ohc.LoadBalancer) bool { return lb.VPC == "blue" })
	return v
}

// withoutRedVM2 is v after red-vm2 was deleted.
func withoutRedVM2(v *ohc.View) *ohc.View {
	v.Local = v.Local[:1]
	v.LBs[0].Backends = v.LBs[0].Backends[:1]
	return v
}

// minus is the lines of a that are not in b.
func minus(a, b []string) []string {
	return slices.DeleteFunc(slices.Clone(a), func(l string) bool { return slices.Contains(b, l) })
}

// holds checks that the switch holds every line of want.
func holds(t *testing.T, s *p4rt.Schema, c *p4rt.Client, what string, want []string) {
	t.Helper()
	got, ok := switchLines(t, s, c)
	if !ok {
		t.Fatalf("%s: switch not readable", what)
	}
	if miss := minus(want, got); len(miss) > 0 {
		t.Errorf("%s: switch lacks %q", what, miss)
	}
}

// TestProgrammerPartialViews: an OHC that restarts while one source of its
// view (blue's controller) is down programs the others' news at once, and
// keeps the entries it cannot explain (blue's, and red-vm2's, deleted while
// the OHC was down: the switch cannot tell them apart) until the view is
// whole again. A deletion it can explain goes at once; a restarted switch
// gets the partial view at once.
func TestProgrammerPartialViews(t *testing.T) {
	s := schema(t)
	ts := startSwitch(t, "127.0.0.1:0")
	o := startOHC(t, ts.addr, 1)
	full := testView()
	o.converge(t, full)
	blue := minus(wantLines(t, s, full), wantLines(t, s, withoutBlue(testView())))
	redVM2 := withPrefix(minus(wantLines(t, s, full), wantLines(t, s, withoutRedVM2(testView()))), "port_vnet")
	if len(blue) == 0 || len(redVM2) != 1 {
		t.Fatalf("blue's lines %q, red-vm2's port %q", blue, redVM2)
	}
	o.stop()

	// The OHC restarts with blue's source down; meanwhile red-vm2 was
	// deleted and red-new created.
	o2 := startOHC(t, ts.addr, 2)
	partial := func(blueToo bool, redNew bool) *ohc.View {
		v := withoutRedVM2(testView())
		if !blueToo {
			v = withoutBlue(v)
		}
		if redNew {
			v.Remote["red"] = append(v.Remote["red"], ohc.RemoteEndpoint{IP: ip("10.1.0.20"), MAC: mac("02:00:00:01:00:20"), HostIP: ip(hostB)})
		}
		return v
	}
	p1 := partial(false, true)
	o2.p.UpdatePartial(p1, []string{"blue"})
	o2.wait(t)
	holds(t, s, o2.c, "red-new programmed", wantLines(t, s, p1))
	holds(t, s, o2.c, "blue's entries kept", blue)
	holds(t, s, o2.c, "unexplained red-vm2 kept", redVM2)
	if st := o2.p.Stats(); st.Held == 0 || !slices.Equal(st.Missing, []string{"blue"}) || st.Errors != 0 {
		t.Errorf("after a partial view: held %d, missing %q, errors %d (%v)", st.Held, st.Missing, st.Errors, st.LastError)
	}

	// red-new goes again: its source is heard from, so that is at once.
	p2 := partial(false, false)
	o2.p.UpdatePartial(p2, []string{"blue"})
	o2.wait(t)
	got, _ := switchLines(t, s, o2.c)
	if l := slices.IndexFunc(got, func(l string) bool { return strings.Contains(l, "10.1.0.20") }); l >= 0 {
		t.Errorf("deleted red-new still on the switch: %q", got[l])
	}
	holds(t, s, o2.c, "blue's entries kept after a deletion", blue)

	// blue's stream comes back while another source is still missing:
	// its entries, kept on the switch, are taken back without a write
	// failing on them.
	p3 := partial(true, false)
	o2.p.UpdatePartial(p3, []string{"green"})
	o2.wait(t)
	holds(t, s, o2.c, "blue back", wantLines(t, s, p3))
	holds(t, s, o2.c, "unexplained red-vm2 still kept", redVM2)
	if st := o2.p.Stats(); st.Errors != 0 {
		t.Errorf("taking kept entries back: %d errors (%v)", st.Errors, st.LastError)
	}

	// The switch restarts, empty, while the view is partial: pipeline
	// and everything the view calls for, at once; nothing else.
	ts.stop()
	ts2 := startSwitch(t, ts.addr)
	waitLines(t, s, o2.c, wantLines(t, s, p3))

	// Once the view is whole again, the full reconcile prunes what
	// nobody explains: red-vm2, put back and then deleted while the OHC
	// was down.
	o2.stop()
	o3 := startOHC(t, ts2.addr, 3)
	o3.converge(t, full)
	o3.stop()
	o4 := startOHC(t, ts2.addr, 4)
	o4.p.UpdatePartial(withoutBlue(withoutRedVM2(testView())), []string{"blue"})
	o4.wait(t)
	holds(t, s, o4.c, "red-vm2 kept", redVM2)
	whole := withoutRedVM2(testView())
	o4.converge(t, whole)
	waitLines(t, s, o4.c, wantLines(t, s, whole))
	if st := o4.p.Stats(); st.Held != 0 || len(st.Missing) != 0 {
		t.Errorf("after a whole view: held %d, missing %q", st.Held, st.Missing)
	}
}
