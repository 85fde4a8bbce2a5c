package sendgate

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/watch"
)

// from is the context of a call from an unauthenticated client at addr.
func from(addr string) context.Context {
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		panic(err)
	}
	return peer.NewContext(context.Background(), &peer.Peer{Addr: a})
}

// entering is an Enter in progress.
type entering struct {
	g    watch.Gate
	done chan error
}

func enter(ctx context.Context, g *Gate) *entering {
	e := &entering{g: g.For(ctx), done: make(chan error, 1)}
	go func() { e.done <- e.g.Enter(ctx) }()
	return e
}

// in reports whether the Enter returned, failing the test if it failed.
func (e *entering) in(t *testing.T) bool {
	t.Helper()
	select {
	case err := <-e.done:
		if err != nil {
			t.Fatalf("Enter: %v", err)
		}
		e.done <- nil
		return true
	default:
		return false
	}
}

func waitStats(t *testing.T, g *Gate, want Stats) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for g.Stats() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Stats = %+v, want %+v", g.Stats(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// A peer holds at most StreamsPerPeer places; the others wait, and the
// gate's own places go to peers in the order they asked.
func TestPlacesPerPeerAndOverall(t *testing.T) {
	g := New(Options{Streams: 3, StreamsPerPeer: 2})
	a, b, c := from("10.0.0.1:1000"), from("10.0.0.2:1000"), from("10.0.0.3:1000")

	a1, a2 := enter(a, g), enter(a, g)
	waitStats(t, g, Stats{Sending: 2})
	a3 := enter(a, g)
	b1 := enter(b, g)
	waitStats(t, g, Stats{Sending: 3, Waiting: 1})
	if a3.in(t) {
		t.Fatal("a third stream of one peer entered with StreamsPerPeer 2")
	}
	if !b1.in(t) {
		t.Fatal("another peer's stream did not enter while there was room")
	}
	c1 := enter(c, g)
	waitStats(t, g, Stats{Sending: 3, Waiting: 2})

	// a1 leaving frees a place of a and one of the gate: c1 asked for the
	// gate's first, so it gets it; a3 gets a's and waits for the gate's.
	a1.g.Leave()
	waitStats(t, g, Stats{Sending: 3, Waiting: 1})
	if !c1.in(t) || a3.in(t) {
		t.Fatalf("after a stream of a left: c1 in %v, a3 in %v; want c1, which asked first", c1.in(t), a3.in(t))
	}
	b1.g.Leave()
	waitStats(t, g, Stats{Sending: 3})
	if !a3.in(t) {
		t.Fatal("a3 did not enter")
	}
	for _, e := range []*entering{a2, a3, c1} {
		e.g.Leave()
	}
	waitStats(t, g, Stats{})
	if n := len(g.peers); n != 0 {
		t.Errorf("%d peers remembered with no stream, want none", n)
	}
}

// A stream that stops waiting gives back the place of its peer it took,
// and a peer is forgotten with its last stream.
func TestEnterCancelled(t *testing.T) {
	a, b := from("10.0.0.1:1000"), from("10.0.0.2:1000")
	t.Run("waiting for the gate", func(t *testing.T) {
		g := New(Options{Streams: 2, StreamsPerPeer: 2})
		b1, a1 := enter(b, g), enter(a, g)
		waitStats(t, g, Stats{Sending: 2})
		ctx, cancel := context.WithCancel(a)
		a2 := enter(ctx, g) // takes a's second place, waits for the gate's
		waitStats(t, g, Stats{Sending: 2, Waiting: 1})
		cancel()
		if err := <-a2.done; err == nil {
			t.Fatal("Enter succeeded after its context ended")
		}
		b1.g.Leave()
		a3 := enter(a, g) // needs a's second place
		waitStats(t, g, Stats{Sending: 2})
		if !a3.in(t) {
			t.Fatal("a cancelled Enter kept its peer's place")
		}
		a1.g.Leave()
		a3.g.Leave()
		if n := len(g.peers); n != 0 {
			t.Errorf("%d peers remembered with no stream, want none", n)
		}
	})
	t.Run("waiting for its peer's place", func(t *testing.T) {
		g := New(Options{Streams: 2, StreamsPerPeer: 1})
		a1 := enter(a, g)
		waitStats(t, g, Stats{Sending: 1})
		ctx, cancel := context.WithCancel(a)
		a2 := enter(ctx, g)
		waitStats(t, g, Stats{Sending: 1, Waiting: 1})
		cancel()
		if err := <-a2.done; err == nil {
			t.Fatal("Enter succeeded after its context ended")
		}
		waitStats(t, g, Stats{Sending: 1})
		a1.g.Leave()
		if n := len(g.peers); n != 0 {
			t.Errorf("%d peers remembered with no stream, want none", n)
		}
	})
}

// Without a connection tracker a stall is logged, once per blocked send.
func TestStallLoggedOnce(t *testing.T) {
	var logs syncBuffer
	g := New(Options{StallTimeout: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	s := g.For(from("10.0.0.1:1000"))
	if err := s.Enter(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Progress(true)
	time.Sleep(60 * time.Millisecond)
	g.closeStalled()
	g.closeStalled()
	if n := strings.Count(logs.String(), "not reading"); n != 1 || g.Stats().Stalls != 1 {
		t.Fatalf("%d log lines and %d stalls after one blocked send, want 1:\n%s", n, g.Stats().Stalls, logs.String())
	}
	if !strings.Contains(logs.String(), "peer=conn:10.0.0.1:1000") {
		t.Errorf("the log does not name the peer:\n%s", logs.String())
	}
	// A send that returns in time is no stall.
	s.Progress(false)
	s.Progress(true)
	g.closeStalled()
	s.Progress(false)
	time.Sleep(60 * time.Millisecond)
	g.closeStalled()
	s.Leave()
	if n := g.Stats().Stalls; n != 1 {
		t.Errorf("%d stalls, want the one", n)
	}
}

// destServer serves WatchDestinations from a table through a gate, as the
// controller does.
type destServer struct {
	p4meshv1.UnimplementedConnectivityServer
	tab  *watch.Table
	gate *Gate
}

func (s destServer) WatchDestinations(_ *p4meshv1.WatchRequest, st grpc.ServerStreamingServer[p4meshv1.Event]) error {
	ctx := st.Context()
	wrap := func(_ string, v proto.Message, ev *p4meshv1.Event) {
		ev.Value = &p4meshv1.Event_Destination{Destination: v.(*p4meshv1.Destination)}
	}
	return s.tab.ServeGated(ctx, 0, s.gate.For(ctx), st.Send, wrap)
}

// A client that stops reading has its connection closed once a send has
// been blocked for StallTimeout, and its places in the gate come back; a
// client that reads, on another connection, is not disturbed.
func TestStalledClientDisconnected(t *testing.T) {
	// 5,000 destinations are about 300 KiB of events: more than gRPC queues
	// for a stream (64 KiB) and a client that does not read takes in (its
	// window, fixed at 64 KiB below).
	const items = 5000
	tab := watch.NewTable("dest", watch.Options{Epoch: 1})
	for i := range items {
		tab.Put(fmt.Sprintf("k%05d", i), &p4meshv1.Destination{Vpc: "red", Ip: fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&255, i&255), Endpoint: fmt.Sprintf("vm-%05d", i)})
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := Track(lis)
	var logs syncBuffer
	g := New(Options{Streams: 4, StreamsPerPeer: 2, StallTimeout: 300 * time.Millisecond, Conns: conns,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.Run(ctx)
	gs := grpc.NewServer()
	p4meshv1.RegisterConnectivityServer(gs, destServer{tab: tab, gate: g})
	go gs.Serve(conns)
	defer gs.Stop()

	dial := func(opts ...grpc.DialOption) p4meshv1.ConnectivityClient {
		cc, err := grpc.NewClient(lis.Addr().String(), append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return p4meshv1.NewConnectivityClient(cc)
	}
	idle := dial(grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	var stalled []grpc.ServerStreamingClient[p4meshv1.Event]
	for range 3 { // two take the peer's places, the third waits
		st, err := idle.WatchDestinations(ctx, &p4meshv1.WatchRequest{})
		if err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, st)
	}
	waitStats(t, g, Stats{Sending: 2, Waiting: 1})

	reader, err := dial().WatchDestinations(ctx, &p4meshv1.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := readSnapshot(t, reader); n != items {
		t.Fatalf("reading client: %d PUTs before SYNCED, want %d", n, items)
	}

	// The idle connection is closed; nothing is left in the gate. Its
	// two streams stall a moment apart: one tick may see both, or the
	// first alone, closing the connection under the other.
	deadline := time.Now().Add(10 * time.Second)
	for st := g.Stats(); st.Sending != 0 || st.Waiting != 0 || st.Stalls == 0; st = g.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("Stats = %+v, want the idle client's streams stalled and gone", st)
		}
		time.Sleep(time.Millisecond)
	}
	for i, st := range stalled {
		if err := drain(st); err == nil {
			t.Errorf("stalled stream %d: no error once its connection was closed", i)
		}
	}
	if n := conns.Len(); n != 1 {
		t.Errorf("%d connections open, want the reader's", n)
	}
	out := logs.String()
	if n := strings.Count(out, "level=WARN msg=\"watch client not reading: a send has been blocked past the stall timeout; closed its connection\" peer=conn:"); n != 1 {
		t.Errorf("%d WARNs about closing the idle connection, want 1:\n%s", n, out)
	}

	// The reader still gets changes.
	tab.Put("new", &p4meshv1.Destination{Vpc: "red", Ip: "10.255.0.1"})
	ev, err := reader.Recv()
	if err != nil || ev.GetKey() != "new" {
		t.Fatalf("reader after the eviction: %v, %v; want the PUT of new", ev, err)
	}
	if n := g.Stats().Stalls; n > 2 {
		t.Errorf("%d stalls, want at most the idle client's 2", n)
	}
}

// readSnapshot reads st until SYNCED and returns how many PUTs came first.
func readSnapshot(t *testing.T, st grpc.ServerStreamingClient[p4meshv1.Event]) int {
	t.Helper()
	n := 0
	for {
		ev, err := st.Recv()
		if err != nil {
			t.Fatalf("after %d PUTs: %v", n, err)
		}
		if ev.GetType() == p4meshv1.Event_SYNCED {
			return n
		}
		n++
	}
}

// drain reads st until it fails and returns the error.
func drain(st grpc.ServerStreamingClient[p4meshv1.Event]) error {
	for {
		if _, err := st.Recv(); err != nil {
			return err
		}
	}
}

// syncBuffer is a bytes.Buffer that a logger and a test may share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
