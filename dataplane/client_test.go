package dataplane_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

// The p4rt client against the real p4mesh-switch server, over loopback.

type switchProc struct {
	addr string
	sw   *dataplane.Switch
	g    *grpc.Server
}

// startSwitch starts p4mesh-switch's server on addr ("127.0.0.1:0" for a
// new port); stop it to emulate the process going away.
func startSwitch(t testing.TB, addr string) *switchProc {
	t.Helper()
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	sw, err := dataplane.NewSwitch(dataplane.SwitchOptions{Server: dataplane.Options{P4Info: info}})
	if err != nil {
		t.Fatal(err)
	}
	var lis net.Listener
	for range 50 { // the old listener's port may take a moment to free
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	g := dataplane.NewGRPCServer()
	sw.Server().Register(g)
	go g.Serve(lis)
	p := &switchProc{addr: lis.Addr().String(), sw: sw, g: g}
	t.Cleanup(p.stop)
	return p
}

func (p *switchProc) stop() { p.g.Stop() }

type client struct {
	*p4rt.Client
	cancel context.CancelFunc
	done   chan struct{}
}

func dial(t testing.TB, addr string, election uint64) *client {
	t.Helper()
	c, err := p4rt.New(p4rt.Config{Addr: addr, DeviceID: 1, ElectionID: p4rt.ElectionID{Low: election},
		Backoff: p4rt.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cl := &client{Client: c, cancel: cancel, done: make(chan struct{})}
	go func() { c.Run(ctx); close(cl.done) }()
	t.Cleanup(cl.stop)
	return cl
}

func (c *client) stop() {
	c.cancel()
	<-c.done
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func schema(t testing.TB) (*p4rt.Schema, *p4configv1.P4Info) {
	t.Helper()
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	s, err := p4rt.NewSchema(info)
	if err != nil {
		t.Fatal(err)
	}
	return s, info
}

func pushPipeline(t testing.TB, c *client, info *p4configv1.P4Info) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitPrimary(ctx); err != nil {
		t.Fatalf("not primary: %v (%v)", err, c.LastError())
	}
	cookie, _ := p4rt.Cookie(info, nil)
	if _, err := c.SetPipeline(ctx, info, nil, cookie, p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT); err != nil {
		t.Fatal(err)
	}
}

// destinations builds n vnet_destination entries as updates of type typ.
func destinations(t testing.TB, s *p4rt.Schema, n int, host string, typ p4v1.Update_Type) []*p4v1.Update {
	t.Helper()
	out := make([]*p4v1.Update, n)
	for i := range n {
		a := p4rt.Call("encap_to_host", p4rt.P("dst_vni", p4rt.Uint(7)), p4rt.P("host_ip", p4rt.Addr(host)), p4rt.P("dmac", p4rt.HW("02:00:00:00:00:02")))
		te, err := s.TableEntry(p4rt.Entry{Table: "vnet_destination", Action: &a, Match: []p4rt.Match{
			p4rt.Exact("vni", p4rt.Uint(7)),
			p4rt.Exact("dst_ip", p4rt.IP(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))),
		}})
		if err != nil {
			t.Fatal(err)
		}
		out[i], _ = p4rt.Update(typ, te)
	}
	return out
}

func countEntries(t testing.TB, c *client, s *p4rt.Schema, table string) int {
	t.Helper()
	tbl, err := s.Table(table)
	if err != nil {
		t.Fatal(err)
	}
	es, err := c.ReadAll(context.Background(), []*p4v1.Entity{{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{TableId: tbl.ID()}}}})
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func TestClientArbitrationAndFailover(t *testing.T) {
	s, info := schema(t)
	sw := startSwitch(t, "127.0.0.1:0")
	a := dial(t, sw.addr, 2)
	pushPipeline(t, a, info)
	if err := a.Write(context.Background(), destinations(t, s, 10, "192.168.0.2", p4v1.Update_INSERT)); err != nil {
		t.Fatal(err)
	}

	b := dial(t, sw.addr, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if b.IsPrimary() || !a.IsPrimary() {
		t.Fatalf("primary: a %v, b %v; want a only", a.IsPrimary(), b.IsPrimary())
	}
	var we *p4rt.WriteError
	err := b.Write(ctx, destinations(t, s, 1, "192.168.0.9", p4v1.Update_MODIFY))
	if !errors.As(err, &we) || we.Codes()[codes.PermissionDenied] != 1 {
		t.Fatalf("backup write = %v; want PERMISSION_DENIED", err)
	}

	// The primary fails. The backup is not promoted (the switch remembers
	// the highest id, spec §5); a standby that takes over arbitrates
	// with a higher id, and finds the tables as the old primary left them.
	a.stop()
	waitFor(t, "the backup to hear there is no primary", func() bool {
		for {
			select {
			case m := <-b.Mastership():
				if m.Status == codes.NotFound {
					return true
				}
			default:
				return false
			}
		}
	})
	c := dial(t, sw.addr, 3)
	waitFor(t, "the standby to become primary", c.IsPrimary)
	if b.IsPrimary() {
		t.Error("the old backup is primary too")
	}
	if n := countEntries(t, c, s, "vnet_destination"); n != 10 {
		t.Errorf("after failover the table holds %d entries; want the 10 written before", n)
	}
	if err := c.Write(context.Background(), destinations(t, s, 10, "192.168.0.3", p4v1.Update_MODIFY)); err != nil {
		t.Errorf("new primary write: %v", err)
	}
}

func TestClientBatching10k(t *testing.T) {
	s, info := schema(t)
	sw := startSwitch(t, "127.0.0.1:0")
	c := dial(t, sw.addr, 1)
	pushPipeline(t, c, info)
	if err := c.Write(context.Background(), destinations(t, s, 10_000, "192.168.0.2", p4v1.Update_INSERT)); err != nil {
		t.Fatal(err)
	}
	if n := countEntries(t, c, s, "vnet_destination"); n != 10_000 {
		t.Errorf("read back %d entries; want 10000", n)
	}
	if st := sw.sw.Server().Stats(); st.Writes < 10 {
		t.Errorf("server saw %d WriteRequests; want 10 batches of 1000", st.Writes)
	}
}

func TestClientPerUpdateErrors(t *testing.T) {
	s, info := schema(t)
	sw := startSwitch(t, "127.0.0.1:0")
	c := dial(t, sw.addr, 1)
	pushPipeline(t, c, info)
	ctx := context.Background()
	ups := destinations(t, s, 1500, "192.168.0.2", p4v1.Update_INSERT)
	if err := c.Write(ctx, ups[:1000]); err != nil {
		t.Fatal(err)
	}
	// Every update but 1, 999 and 1200 is bad: duplicates of the first
	// 1000, and modifies/deletes of entries that do not exist.
	batch := []*p4v1.Update{ups[0], ups[1000]}
	missing := destinations(t, s, 1, "192.168.9.9", p4v1.Update_MODIFY)[0]
	missing.Entity.GetTableEntry().Match[1].GetExact().Value = []byte{11, 0, 0, 1}
	batch = append(batch, missing)
	bad := destinations(t, s, 1, "192.168.0.2", p4v1.Update_INSERT)[0]
	bad.Entity.GetTableEntry().Match[0].GetExact().Value = []byte{1, 0, 0, 0} // 32 bits in a 24-bit field
	batch = append(batch, bad, ups[1001])

	err := c.Write(ctx, batch)
	var we *p4rt.WriteError
	if !errors.As(err, &we) {
		t.Fatalf("Write = %v; want a WriteError", err)
	}
	want := map[int]codes.Code{0: codes.AlreadyExists, 2: codes.NotFound, 3: codes.OutOfRange}
	if len(we.Failed) != len(want) {
		t.Errorf("%d failed updates; want %d: %v", len(we.Failed), len(want), we)
	}
	for _, f := range we.Failed {
		if want[f.Index] != f.Code {
			t.Errorf("update %d failed with %s (%s); want %s", f.Index, f.Code, f.Message, want[f.Index])
		}
	}
	if n := countEntries(t, c, s, "vnet_destination"); n != 1002 {
		t.Errorf("table holds %d entries; want 1002 (the good updates applied)", n)
	}
}

// TestReconcileAcrossRestarts: a reconcile after the writer restarts writes
// nothing; after the switch process restarts (empty, no pipeline) the client
// reconnects, pushes the pipeline and the reconcile restores every entry.
func TestReconcileAcrossRestarts(t *testing.T) {
	s, info := schema(t)
	sw := startSwitch(t, "127.0.0.1:0")
	addr := sw.addr
	desired := make([]*p4v1.Entity, 0, 2000)
	for _, u := range destinations(t, s, 2000, "192.168.0.2", p4v1.Update_INSERT) {
		desired = append(desired, u.Entity)
	}
	reconcile := func(c *client) p4rt.Result {
		t.Helper()
		r := &p4rt.Reconciler{Schema: s, Device: c, Tables: []string{"vnet_destination"}}
		res, err := r.Reconcile(context.Background(), desired)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	c := dial(t, addr, 1)
	pushPipeline(t, c, info)
	if got := reconcile(c).Total(); got.Inserted != 2000 {
		t.Fatalf("first reconcile %+v; want 2000 inserts", got)
	}

	// The writer restarts: same pipeline (the push is skipped), nothing
	// to write, the switch untouched.
	c.stop()
	before := sw.sw.Server().Stats().Writes
	c = dial(t, addr, 1)
	pushPipeline(t, c, info)
	if res := reconcile(c); !res.Empty() {
		t.Errorf("reconcile after a client restart changed %s", res)
	}
	if after := sw.sw.Server().Stats().Writes; after != before {
		t.Errorf("%d Writes after a client restart; want none", after-before)
	}

	// The switch process restarts: it comes back empty.
	arbitrations := c.Stats().Arbitrations
	sw.stop()
	sw = startSwitch(t, addr)
	waitFor(t, "the client to re-arbitrate with the new switch", func() bool {
		return c.Stats().Arbitrations > arbitrations && c.IsPrimary()
	})
	pushPipeline(t, c, info)
	if got := reconcile(c).Total(); got.Inserted != 2000 {
		t.Errorf("reconcile after a switch restart %+v; want 2000 inserts", got)
	}
	if n := countEntries(t, c, s, "vnet_destination"); n != 2000 {
		t.Errorf("switch holds %d entries; want 2000", n)
	}
}

// BenchmarkWriteLoopback is P4Runtime writes into p4mesh-switch over
// loopback gRPC through the p4rt client, by batch size.
func BenchmarkWriteLoopback(b *testing.B) {
	s, info := schema(b)
	for _, batch := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			sw := startSwitch(b, "127.0.0.1:0")
			c, err := p4rt.New(p4rt.Config{Addr: sw.addr, DeviceID: 1, ElectionID: p4rt.ElectionID{Low: 1}, MaxBatch: batch, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { c.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			cl := &client{Client: c}
			pushPipeline(b, cl, info)
			n := 20_000
			if batch == 1 {
				n = 2_000
			}
			ins := destinations(b, s, n, "192.168.0.2", p4v1.Update_INSERT)
			del := destinations(b, s, n, "192.168.0.2", p4v1.Update_DELETE)
			b.ResetTimer()
			entries := 0
			for i := 0; b.Loop(); i++ {
				ups := ins
				if i%2 == 1 {
					ups = del
				}
				if err := c.Write(ctx, ups); err != nil {
					b.Fatal(err)
				}
				entries += n
			}
			b.ReportMetric(float64(entries)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
