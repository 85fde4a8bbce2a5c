package watch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// testGate is one stream's use of a gate whose places (slots) the streams
// of a test share. It records how the table uses it, for check.
type testGate struct {
	slots chan struct{}

	mu             sync.Mutex // guards the fields below
	in, sending    bool
	enters, leaves int
	misuse         []string
}

var _ Gate = (*testGate)(nil)

func newTestGate(slots chan struct{}) *testGate { return &testGate{slots: slots} }

func (g *testGate) wrong(what string) { g.misuse = append(g.misuse, what) }

func (g *testGate) Enter(ctx context.Context) error {
	g.mu.Lock()
	if g.in {
		g.wrong("Enter while in the gate")
	}
	g.mu.Unlock()
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.in = true
	g.enters++
	return nil
}

func (g *testGate) Leave() {
	g.mu.Lock()
	if !g.in {
		g.wrong("Leave while not in the gate")
	}
	if g.sending {
		g.wrong("Leave while sending")
	}
	g.in = false
	g.leaves++
	g.mu.Unlock()
	<-g.slots
}

func (g *testGate) Progress(sending bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.in {
		g.wrong(fmt.Sprintf("Progress(%v) outside the gate", sending))
	}
	if sending == g.sending {
		g.wrong(fmt.Sprintf("Progress(%v) twice", sending))
	}
	g.sending = sending
}

// isIn reports whether the stream is in the gate.
func (g *testGate) isIn() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.in
}

// check fails the test if the stream, done, misused the gate or did not
// leave it; it returns how many times it entered.
func (g *testGate) check(t *testing.T) int {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range g.misuse {
		t.Error(m)
	}
	if g.in || g.enters != g.leaves {
		t.Errorf("after Serve returned: in the gate %v, entered %d times, left %d", g.in, g.enters, g.leaves)
	}
	return g.enters
}

// With a gate of one place, a second stream sends nothing until the first
// has caught up, and neither stops the producer.
func TestGateOneStreamAtATime(t *testing.T) {
	checkNoLeaks(t)
	tab := NewTable("dest", Options{Epoch: 100})
	tab.Put("a", dest("red", "1"))
	tab.Put("b", dest("red", "2"))
	slots := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// order is every event sent, by either stream, as "A PUT@102 a".
	var mu sync.Mutex
	var order []string
	events := func(name string, hold <-chan struct{}) func(*p4meshv1.Event) error {
		first := true
		return func(e *p4meshv1.Event) error {
			if first {
				first = false
				<-hold
			}
			mu.Lock()
			defer mu.Unlock()
			order = append(order, name+" "+summarize(e).String())
			return nil
		}
	}
	sent := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), order...)
	}

	holdA := make(chan struct{})
	ga, gb := newTestGate(slots), newTestGate(slots)
	doneA, doneB := make(chan error, 1), make(chan error, 1)
	go func() { doneA <- tab.ServeGated(ctx, 0, ga, events("A", holdA), wrapDest) }()
	waitUntil(t, "A in the gate", ga.isIn)
	open := make(chan struct{})
	close(open)
	go func() { doneB <- tab.ServeGated(ctx, 0, gb, events("B", open), wrapDest) }()
	waitUntil(t, "B served", func() bool { return tab.Subscribers() == 2 })

	// B waits for the gate; the producer does not wait for B.
	putDone := make(chan struct{})
	go func() {
		tab.Put("c", dest("red", "3"))
		close(putDone)
	}()
	select {
	case <-putDone:
	case <-time.After(10 * time.Second):
		t.Fatal("Put blocked while a stream waits for the gate")
	}
	time.Sleep(50 * time.Millisecond)
	if got := sent(); len(got) != 0 {
		t.Fatalf("sent while A held the gate in its first send: %v", got)
	}
	if n := tab.Stats().Snapshots; n != 1 {
		t.Errorf("%d snapshots taken, want A's alone: B takes one once in the gate", n)
	}

	close(holdA)
	want := []string{
		// A's snapshot at 102, then the change made meanwhile: all one
		// burst, A catching up only at 103.
		"A PUT@102 a=1", "A PUT@102 b=2", "A SYNCED@102 =", "A PUT@103 c=3",
		// Only then B, whose snapshot is at 103.
		"B PUT@103 a=1", "B PUT@103 b=2", "B PUT@103 c=3", "B SYNCED@103 =",
	}
	waitUntil(t, "both snapshots", func() bool { return len(sent()) >= len(want) })
	if got := sent(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sends\ngot  %v\nwant %v", got, want)
	}

	// A change wakes both; each enters again, one after the other.
	tab.Put("d", dest("red", "4"))
	waitUntil(t, "the change on both streams", func() bool { return len(sent()) == len(want)+2 })
	waitUntil(t, "both to leave the gate", func() bool { return !ga.isIn() && !gb.isIn() })
	cancel()
	for _, done := range []chan error{doneA, doneB} {
		if err := <-done; err != nil {
			t.Errorf("ServeGated = %v after cancel, want nil", err)
		}
	}
	if n := ga.check(t); n != 2 {
		t.Errorf("A entered %d times, want 2: the first burst and the change", n)
	}
	if n := gb.check(t); n != 2 {
		t.Errorf("B entered %d times, want 2", n)
	}
}

// A stream leaves the gate on every way out of Serve, and does not leave
// it when it never got in.
func TestGateLeftOnEveryPath(t *testing.T) {
	checkNoLeaks(t)
	tab := NewTable("dest", Options{Epoch: 1})
	tab.Put("a", dest("red", "1"))
	tab.Put("b", dest("red", "2"))
	boom := errors.New("boom")

	tests := []struct {
		name string
		// full: the gate's one place is taken by someone else throughout.
		full bool
		// send is the stream's send; ready is closed once the stream is
		// where the case wants it, then ctx is cancelled.
		send    func(ctx context.Context, ready chan<- struct{}) func(*p4meshv1.Event) error
		wantErr error
		enters  int
	}{
		{
			name: "cancelled waiting to enter",
			full: true,
			send: func(context.Context, chan<- struct{}) func(*p4meshv1.Event) error {
				return func(*p4meshv1.Event) error { panic("sent without the gate") }
			},
		},
		{
			name: "cancelled in a send",
			send: func(ctx context.Context, ready chan<- struct{}) func(*p4meshv1.Event) error {
				return func(*p4meshv1.Event) error {
					close(ready)
					<-ctx.Done()
					return ctx.Err()
				}
			},
			enters: 1,
		},
		{
			name: "send fails",
			send: func(context.Context, chan<- struct{}) func(*p4meshv1.Event) error {
				return func(*p4meshv1.Event) error { return boom }
			},
			wantErr: boom,
			enters:  1,
		},
		{
			name: "cancelled waiting for changes",
			send: func(_ context.Context, ready chan<- struct{}) func(*p4meshv1.Event) error {
				return func(e *p4meshv1.Event) error {
					if e.GetType() == p4meshv1.Event_SYNCED {
						close(ready)
					}
					return nil
				}
			},
			enters: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			slots := make(chan struct{}, 1)
			if tc.full {
				slots <- struct{}{}
			}
			g := newTestGate(slots)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ready := make(chan struct{})
			done := make(chan error, 1)
			go func() { done <- tab.ServeGated(ctx, 0, g, tc.send(ctx, ready), wrapDest) }()
			if tc.full {
				waitUntil(t, "the stream to start", func() bool { return tab.Subscribers() == 1 })
				time.Sleep(20 * time.Millisecond) // into Enter
				cancel()
			} else if tc.wantErr == nil {
				<-ready
				cancel()
			}
			err := <-done
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("ServeGated = %v, want %v", err, tc.wantErr)
			}
			if n := g.check(t); n != tc.enters {
				t.Errorf("entered %d times, want %d", n, tc.enters)
			}
			want := 0
			if tc.full {
				want = 1 // the other holder's
			}
			if len(slots) != want {
				t.Errorf("%d places taken after Serve returned, want %d", len(slots), want)
			}
		})
	}
}
