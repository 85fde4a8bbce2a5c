package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// destServer serves WatchDestinations from a Table, the way the controller
// will, and can cut every open stream to simulate a broken connection.
type destServer struct {
	p4meshv1.UnimplementedConnectivityServer
	tab *Table

	mu   sync.Mutex
	cuts map[*context.CancelFunc]struct{}
	// opens records, per stream, the resume revision asked for and the
	// table's revision at that moment.
	opens [][2]uint64
}

var _ p4meshv1.ConnectivityServer = (*destServer)(nil)

func (s *destServer) WatchDestinations(req *p4meshv1.WatchRequest, ss grpc.ServerStreamingServer[p4meshv1.Event]) error {
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	s.mu.Lock()
	tab := s.tab // swapped by tests that simulate a controller restart
	s.cuts[&cancel] = struct{}{}
	s.opens = append(s.opens, [2]uint64{req.GetResumeRevision(), tab.Revision()})
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.cuts, &cancel)
		s.mu.Unlock()
	}()
	if err := tab.Serve(ctx, req.GetResumeRevision(), ss.Send, wrapDest); err != nil {
		return status.Errorf(codes.Unavailable, "watch destinations: %v", err)
	}
	if ss.Context().Err() == nil {
		return status.Error(codes.Unavailable, "stream cut by the test")
	}
	return nil
}

// cut ends every open stream from the server side.
func (s *destServer) cut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.cuts {
		(*c)()
	}
}

func (s *destServer) streams() [][2]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][2]uint64(nil), s.opens...)
}

// startServer runs srv on 127.0.0.1:0 and returns a client connected to it.
func startServer(t *testing.T, srv *destServer) p4meshv1.ConnectivityClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	p4meshv1.RegisterConnectivityServer(gs, srv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		<-served
	})
	return p4meshv1.NewConnectivityClient(conn)
}

// eventLog records every event Follow received, for checking revisions.
type eventLog struct {
	mu     sync.Mutex
	events []ev
	deltas int
}

func (l *eventLog) add(e *p4meshv1.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, summarize(e))
	if t := e.GetType(); t == p4meshv1.Event_PUT || t == p4meshv1.Event_DELETE {
		l.deltas++
	}
}

func (l *eventLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deltas
}

// waitUntil polls cond for up to 30s; a failure names what was awaited.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFollowResumesOverGRPC cuts a real gRPC watch stream several times
// while the table keeps changing: each reconnect must resume from the last
// applied revision and receive exactly the changes it missed.
func TestFollowResumesOverGRPC(t *testing.T) {
	checkNoLeaks(t)
	// Generous buffer and log: this test is about resuming, so the client
	// must never be forced to resync, even under the race detector. The
	// log keeps no more changes than the table has items (a snapshot is
	// then no dearer), so items the writer leaves alone make room for what
	// a reconnect misses.
	tab := NewTable("destinations", Options{LogSize: 1 << 20, Buffer: 1 << 16})
	for i := range 100 {
		tab.Put(fmt.Sprintf("10.0.0.%d", i), dest("red", "init"))
	}
	idle := map[string]proto.Message{}
	for i := range 1 << 15 {
		idle[fmt.Sprintf("10.1.%d.%d", i>>8, i&255)] = dest("red", "idle")
	}
	tab.Commit(tab.Revision()+1, idle, nil)
	srv := &destServer{tab: tab, cuts: make(map[*context.CancelFunc]struct{})}
	client := startServer(t, srv)

	var (
		view    View
		log     eventLog
		changes atomic.Int64
	)
	h := view.Handler(func() { changes.Add(1) })
	h.OnEvent = log.add
	ctx, cancel := context.WithCancel(context.Background())
	followed := make(chan error, 1)
	go func() {
		followed <- Follow(ctx, "destinations", slog.New(slog.DiscardHandler),
			func(ctx context.Context, rev uint64) (Stream, error) {
				return client.WatchDestinations(ctx, &p4meshv1.WatchRequest{Vpc: "red", ResumeRevision: rev})
			}, h)
	}()
	waitUntil(t, "the first snapshot", view.Synced)

	// The writer runs throughout, so every cut and every backoff pause
	// misses changes the resumed stream has to deliver.
	stop := make(chan struct{})
	written := make(chan struct{})
	go func() {
		defer close(written)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			key := fmt.Sprintf("10.0.0.%d", i%150)
			if i%11 == 0 {
				tab.Delete(key)
			} else {
				tab.Put(key, dest("red", fmt.Sprint(i)))
			}
			if i%20 == 0 {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	const cuts = 3
	for c := range cuts {
		seen := log.count()
		waitUntil(t, "deltas before a cut", func() bool { return log.count() >= seen+200 })
		srv.cut()
		waitUntil(t, "a reconnect", func() bool { return len(srv.streams()) >= c+2 })
	}
	seen := log.count()
	waitUntil(t, "deltas after the last reconnect", func() bool { return log.count() >= seen+200 })
	close(stop)
	<-written
	final := tab.Revision()
	waitUntil(t, "the view to catch up", func() bool { return view.Revision() == final })

	cancel()
	if err := <-followed; err != nil {
		t.Errorf("Follow = %v, want nil after cancel", err)
	}

	// Streams 2..: resumed (never a snapshot) and something was missed.
	streams := srv.streams()
	if len(streams) != cuts+1 {
		t.Errorf("%d streams opened, want %d", len(streams), cuts+1)
	}
	missed := 0
	for i, s := range streams[1:] {
		if s[0] == 0 {
			t.Errorf("stream %d asked for a snapshot, want a resume", i+2)
		}
		if s[0] < s[1] {
			missed++
		}
	}
	if missed == 0 {
		t.Errorf("no reconnect missed a change (streams %v); the test proves nothing", streams)
	}

	// No gap, no duplicate: after the first SYNCED every PUT/DELETE is
	// exactly one revision after the previous one, and each resumed
	// stream's SYNCED is at the last revision applied.
	log.mu.Lock()
	events := log.events
	log.mu.Unlock()
	var rev uint64
	started := false
	for i, e := range events {
		switch e.Type {
		case "RESET":
			t.Fatalf("event %d: RESET; resuming must not need one", i)
		case "SYNCED":
			if started && e.Rev != rev {
				t.Fatalf("event %d: %v, want SYNCED at %d", i, e, rev)
			}
			started, rev = true, e.Rev
		default:
			if started && e.Rev != rev+1 {
				t.Fatalf("event %d: %v after revision %d: gap or duplicate", i, e, rev)
			}
			if started {
				rev = e.Rev
			}
		}
	}
	if rev != final {
		t.Errorf("last revision applied %d, table at %d", rev, final)
	}

	// And the view is the table.
	snap, _ := tab.Snapshot()
	items := view.Items()
	if len(items) != len(snap) {
		t.Errorf("view has %d items, table %d", len(items), len(snap))
	}
	for k, v := range snap {
		if !proto.Equal(items[k].GetDestination(), v) {
			t.Errorf("view %s = %v, table %v", k, items[k].GetDestination(), v)
		}
	}
	if changes.Load() == 0 {
		t.Error("onChange never called")
	}
}

// TestFollowRestartOverGRPC replaces the server's table with a new one, as
// a controller restart does: the client's revision is from another epoch,
// so it gets RESET and the new contents.
func TestFollowRestartOverGRPC(t *testing.T) {
	checkNoLeaks(t)
	old := NewTable("destinations", Options{})
	old.Put("a", dest("red", "1"))
	old.Put("b", dest("red", "2"))
	srv := &destServer{tab: old, cuts: make(map[*context.CancelFunc]struct{})}
	client := startServer(t, srv)

	var view View
	var resets atomic.Int32
	h := view.Handler(nil)
	h.OnEvent = func(e *p4meshv1.Event) {
		if e.GetType() == p4meshv1.Event_RESET {
			resets.Add(1)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	followed := make(chan error, 1)
	go func() {
		followed <- Follow(ctx, "destinations", nil, func(ctx context.Context, rev uint64) (Stream, error) {
			return client.WatchDestinations(ctx, &p4meshv1.WatchRequest{ResumeRevision: rev})
		}, h)
	}()
	waitUntil(t, "the first snapshot", func() bool { return view.Synced() && view.Len() == 2 })

	restarted := NewTable("destinations", Options{})
	restarted.Put("a", dest("red", "1"))
	restarted.Put("c", dest("red", "3"))
	srv.mu.Lock()
	srv.tab = restarted
	srv.mu.Unlock()
	srv.cut()
	waitUntil(t, "the restarted table's contents", func() bool {
		return view.Synced() && view.Revision() == restarted.Revision()
	})
	cancel()
	if err := <-followed; err != nil {
		t.Errorf("Follow = %v", err)
	}
	if resets.Load() != 1 {
		t.Errorf("%d RESETs, want 1", resets.Load())
	}
	items := view.Items()
	if len(items) != 2 || items["a"] == nil || items["c"] == nil {
		t.Errorf("view after the restart = %v, want a and c", items)
	}
}

// fakeStream replays scripted events, then fails with err.
type fakeStream struct {
	ctx    context.Context
	events []*p4meshv1.Event
	err    error // nil: block until ctx ends
}

func (s *fakeStream) Recv() (*p4meshv1.Event, error) {
	if len(s.events) > 0 {
		e := s.events[0]
		s.events = s.events[1:]
		return e, nil
	}
	if s.err != nil {
		return nil, s.err
	}
	<-s.ctx.Done()
	return nil, s.ctx.Err()
}

func event(typ p4meshv1.Event_Type, rev uint64, key string) *p4meshv1.Event {
	return &p4meshv1.Event{Type: typ, Revision: rev, Key: key}
}

// TestFollowProtocol drives Follow with scripted streams and checks which
// revision each reconnect resumes from and what the handler sees.
func TestFollowProtocol(t *testing.T) {
	checkNoLeaks(t)
	const (
		PUT    = p4meshv1.Event_PUT
		DELETE = p4meshv1.Event_DELETE
		SYNCED = p4meshv1.Event_SYNCED
		RESET  = p4meshv1.Event_RESET
	)
	broken := errors.New("connection reset")
	opens := []struct {
		openErr error
		events  []*p4meshv1.Event
		err     error // nil: the stream stays open
	}{
		// Breaks mid-snapshot: the half view must be dropped, and the
		// next stream must start from a snapshot again.
		{events: []*p4meshv1.Event{event(PUT, 10, "a"), event(PUT, 10, "b")}, err: broken},
		{openErr: errors.New("connection refused")},
		{events: []*p4meshv1.Event{event(PUT, 10, "a"), event(SYNCED, 10, ""), event(PUT, 11, "c")}, err: broken},
		// Resumed from 11; a DELETE applies, then the stream breaks.
		{events: []*p4meshv1.Event{event(DELETE, 12, "a"), event(SYNCED, 12, "")}, err: broken},
		// Resumed from 12 but the server cannot: RESET and a snapshot. An
		// event type from a newer server is skipped.
		{events: []*p4meshv1.Event{event(RESET, 30, ""), event(PUT, 30, "x"), event(99, 31, ""), event(SYNCED, 30, "")}},
	}
	var calls []string // written on Follow's goroutine only
	record := func(format string, args ...any) { calls = append(calls, fmt.Sprintf(format, args...)) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	open := func(sctx context.Context, rev uint64) (Stream, error) {
		record("open %d", rev)
		if n >= len(opens) {
			t.Errorf("open %d: no more scripted streams", n)
			cancel()
			return nil, errors.New("no more scripts")
		}
		o := opens[n]
		n++
		if o.openErr != nil {
			return nil, o.openErr
		}
		return &fakeStream{ctx: sctx, events: o.events, err: o.err}, nil
	}
	h := Handler{
		Put:    func(k string, e *p4meshv1.Event) { record("put %s %d", k, e.GetRevision()) },
		Delete: func(k string, rev uint64) { record("delete %s %d", k, rev) },
		Reset:  func() { record("reset") },
		Synced: func(rev uint64) {
			record("synced %d", rev)
			if rev == 30 {
				cancel() // the script is done
			}
		},
	}
	if err := Follow(ctx, "test", nil, open, h); err != nil {
		t.Fatalf("Follow = %v", err)
	}
	want := []string{
		"open 0", "put a 10", "put b 10",
		"reset", "open 0", // refused
		"open 0", "put a 10", "synced 10", "put c 11",
		"open 11", "delete a 12", "synced 12",
		"open 12", "reset", "put x 30", "synced 30",
	}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("calls\ngot  %q\nwant %q", calls, want)
	}
}

func TestBackoff(t *testing.T) {
	var b backoff
	ms := time.Millisecond
	wantCaps := []time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5000 * ms, 5000 * ms}
	for i, max := range wantCaps {
		d := b.next()
		if d < max/2 || d >= max {
			t.Errorf("retry %d: delay %v, want in [%v, %v)", i, d, max/2, max)
		}
	}
	b.reset()
	if d := b.next(); d < 25*ms || d >= 50*ms {
		t.Errorf("after reset: delay %v, want in [25ms, 50ms)", d)
	}
}

func TestViewHandler(t *testing.T) {
	var v View
	var changes int
	h := v.Handler(func() { changes++ })
	f := &follower{h: h}
	steps := []struct {
		ev          *p4meshv1.Event
		wantChanges int
		wantSynced  bool
		wantLen     int
	}{
		{event(p4meshv1.Event_PUT, 5, "a"), 0, false, 1}, // snapshot: no compile from half a view
		{event(p4meshv1.Event_PUT, 5, "b"), 0, false, 2},
		{event(p4meshv1.Event_SYNCED, 5, ""), 1, true, 2},
		{event(p4meshv1.Event_PUT, 6, "c"), 2, true, 3},
		{event(p4meshv1.Event_DELETE, 7, "a"), 3, true, 2},
		{event(p4meshv1.Event_DELETE, 8, "zz"), 4, true, 2}, // unknown key: harmless
		{event(p4meshv1.Event_RESET, 20, ""), 4, false, 0},
		{event(p4meshv1.Event_PUT, 20, "x"), 4, false, 1},
		{event(p4meshv1.Event_SYNCED, 20, ""), 5, true, 1},
	}
	for i, s := range steps {
		f.apply(s.ev)
		if changes != s.wantChanges || v.Synced() != s.wantSynced || v.Len() != s.wantLen {
			t.Errorf("step %d (%v): changes %d synced %v len %d, want %d %v %d",
				i, summarize(s.ev), changes, v.Synced(), v.Len(), s.wantChanges, s.wantSynced, s.wantLen)
		}
	}
	if v.Revision() != 20 || v.Get("x") == nil {
		t.Errorf("view at %d with %v", v.Revision(), v.Items())
	}
}
