package ohc_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"

	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4rt"
)

// readGate holds the switch's Read RPCs while armed: each waits for a
// permit, so a test decides when a resync's read of the switch returns.
type readGate struct {
	armed   atomic.Bool
	entered chan struct{}
	permits chan struct{}
}

func (g *readGate) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if info.FullMethod == "/p4.v1.P4Runtime/Read" && g.armed.Load() {
		g.entered <- struct{}{}
		select {
		case <-g.permits:
		case <-ss.Context().Done():
			return ss.Context().Err()
		}
	}
	return h(srv, ss)
}

func (g *readGate) waitEntered(t *testing.T, what string) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatalf("no read of the switch began: %s", what)
	}
}

// TestResyncDoesNotDelayChanges: a periodic resync whose read of the
// switch is held does not hold up a change handed over meanwhile, repairs
// drift (an entry whose write was lost) when its read returns, and does
// not undo the change written while it read.
func TestResyncDoesNotDelayChanges(t *testing.T) {
	s := schema(t)
	gate := &readGate{entered: make(chan struct{}, 64), permits: make(chan struct{})}
	var drop atomic.Bool
	var dropped atomic.Int64
	dropWrites := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if info.FullMethod == "/p4.v1.P4Runtime/Write" && drop.Load() {
			dropped.Add(1)
			return &p4v1.WriteResponse{}, nil // lost: the writer sees success
		}
		return h(ctx, req)
	}
	var mu sync.Mutex
	var deletes []string
	inserts := 0
	ts := startSwitchWith(t, "127.0.0.1:0", func(u *p4v1.Update) {
		mu.Lock()
		defer mu.Unlock()
		switch u.GetType() {
		case p4v1.Update_DELETE:
			deletes = append(deletes, p4rt.Key(u.GetEntity()))
		case p4v1.Update_INSERT:
			inserts++
		}
	}, grpc.StreamInterceptor(gate.intercept), grpc.UnaryInterceptor(dropWrites))
	o := startOHCWith(t, ts.addr, 1, func(po *ohc.ProgrammerOptions) { po.ResyncInterval = 20 * time.Millisecond })
	v0 := testView()
	o.converge(t, v0)
	waitLines(t, s, o.c, wantLines(t, s, v0))

	gate.armed.Store(true)
	gate.waitEntered(t, "first resync")
	// Drift: the writes of remote endpoint X are lost.
	drop.Store(true)
	v1 := testView()
	v1.Remote["red"] = append(v1.Remote["red"], ohc.RemoteEndpoint{IP: ip("10.1.0.20"), MAC: mac("02:00:00:01:00:20"), HostIP: ip(hostB)})
	o.converge(t, v1)
	drop.Store(false)
	if dropped.Load() == 0 {
		t.Fatal("no write was dropped: no drift to repair")
	}
	gate.permits <- struct{}{} // the first resync (from before X) ends
	gate.waitEntered(t, "the resync after X")

	// Y comes while that resync's read is held: it must reach the
	// switch now, not after the read.
	v2 := testView()
	v2.Remote["red"] = append(v2.Remote["red"],
		ohc.RemoteEndpoint{IP: ip("10.1.0.20"), MAC: mac("02:00:00:01:00:20"), HostIP: ip(hostB)},
		ohc.RemoteEndpoint{IP: ip("10.1.0.21"), MAC: mac("02:00:00:01:00:21"), HostIP: ip(hostB)})
	mu.Lock()
	before := inserts
	mu.Unlock()
	o.p.Update(v2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := o.p.WaitConverged(ctx); err != nil {
		t.Fatalf("a change waited behind a resync whose read is held: %v", err)
	}
	mu.Lock()
	yIns := inserts - before
	mu.Unlock()
	if yIns == 0 {
		t.Fatal("Y converged without an insert on the switch")
	}

	// The held read returns: the resync writes X (its snapshot has it,
	// the switch lacks it) and leaves Y (written since its snapshot)
	// alone. The next resync's read begins only after it has finished.
	gate.permits <- struct{}{}
	gate.waitEntered(t, "the resync after the held one")
	gate.armed.Store(false)
	close(gate.permits)
	mu.Lock()
	got := inserts - before - yIns
	dels := append([]string(nil), deletes...)
	mu.Unlock()
	if got == 0 {
		t.Error("the resync did not write X's lost entries back")
	}
	if len(dels) > 0 {
		t.Errorf("the resync deleted %d entities (written while it read, or never meant to go): %q", len(dels), dels)
	}
	waitLines(t, s, o.c, wantLines(t, s, v2))
}

// TestLoneChangeDoesNotWaitForInterval: a change handed over right after
// the pass of the one before goes to the switch at once, as the second
// event of one endpoint change does (issue 14); MinInterval paces only a
// stream of changes past the burst. With an interval of 3 s, after an
// idle 2 intervals, two changes in a row: the second must not wait out
// the interval after the first's pass (it did, for the whole 3 s, before
// the burst).
func TestLoneChangeDoesNotWaitForInterval(t *testing.T) {
	s := schema(t)
	ts := startSwitchWith(t, "127.0.0.1:0", nil)
	const ivl = 3 * time.Second
	o := startOHCWith(t, ts.addr, 1, func(po *ohc.ProgrammerOptions) { po.MinInterval = ivl })
	v0 := testView()
	o.converge(t, v0)
	time.Sleep(2*ivl + ivl/6)
	v1 := testView()
	v1.Remote["red"] = append(v1.Remote["red"], ohc.RemoteEndpoint{IP: ip("10.1.0.20"), MAC: mac("02:00:00:01:00:20"), HostIP: ip(hostB)})
	o.converge(t, v1)
	v2 := testView()
	v2.Remote["red"] = append(slices.Clone(v1.Remote["red"]), ohc.RemoteEndpoint{IP: ip("10.1.0.21"), MAC: mac("02:00:00:01:00:21"), HostIP: ip(hostB)})
	o.p.Update(v2)
	ctx, cancel := context.WithTimeout(context.Background(), ivl*5/6)
	defer cancel()
	if err := o.p.WaitConverged(ctx); err != nil {
		t.Fatalf("the change right after another waited for the interval (%v): %v", ivl, err)
	}
	waitLines(t, s, o.c, wantLines(t, s, v2))
}
