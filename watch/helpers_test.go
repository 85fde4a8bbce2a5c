package watch

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// dest is a Destination item whose IP field doubles as a version marker.
func dest(vpc, ip string) *p4meshv1.Destination {
	return &p4meshv1.Destination{Vpc: vpc, Ip: ip}
}

// wrapDest is the wrap function for a table of Destinations.
func wrapDest(_ string, v proto.Message, ev *p4meshv1.Event) {
	ev.Value = &p4meshv1.Event_Destination{Destination: v.(*p4meshv1.Destination)}
}

// ev is an Event reduced to what tests compare.
type ev struct {
	Type string
	Rev  uint64
	Key  string
	IP   string // the Destination's ip, for PUTs
	More bool
}

func (e ev) String() string {
	s := fmt.Sprintf("%s@%d %s=%s", e.Type, e.Rev, e.Key, e.IP)
	if e.More {
		s += "+more"
	}
	return s
}

func summarize(e *p4meshv1.Event) ev {
	s := ev{Type: e.GetType().String(), Rev: e.GetRevision(), Key: e.GetKey(), More: e.GetMore()}
	if d := e.GetDestination(); d != nil {
		s.IP = d.GetIp()
	}
	return s
}

func put(rev uint64, key, ip string) ev { return ev{Type: "PUT", Rev: rev, Key: key, IP: ip} }
func del(rev uint64, key string) ev     { return ev{Type: "DELETE", Rev: rev, Key: key} }
func synced(rev uint64) ev              { return ev{Type: "SYNCED", Rev: rev} }
func reset(rev uint64) ev               { return ev{Type: "RESET", Rev: rev} }
func progress(rev uint64) ev            { return ev{Type: "PROGRESS", Rev: rev} }

// more marks a change event as not the last of its revision.
func more(e ev) ev { e.More = true; return e }

// subscription is a Serve call running in its own goroutine, its events
// delivered to a channel.
type subscription struct {
	events chan *p4meshv1.Event
	done   chan error
	cancel context.CancelFunc
}

// serve starts t.ServeFiltered (keep nil: Serve) from fromRev and stops it
// when the test ends.
func serve(t *testing.T, tab *Table, fromRev uint64, keep func(string, proto.Message) bool) *subscription {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &subscription{events: make(chan *p4meshv1.Event, 1<<16), done: make(chan error, 1), cancel: cancel}
	send := func(e *p4meshv1.Event) error {
		select {
		case s.events <- e:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	go func() {
		if keep == nil {
			s.done <- tab.Serve(ctx, fromRev, send, wrapDest)
		} else {
			s.done <- tab.ServeFiltered(ctx, fromRev, keep, send, wrapDest)
		}
	}()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop cancels the Serve call and checks it returned nil. Idempotent.
func (s *subscription) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case err, ok := <-s.done:
		if ok && err != nil {
			t.Errorf("Serve returned %v after cancel, want nil", err)
		}
		if ok {
			close(s.done)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context was cancelled")
	}
}

// expect reads len(want) events and compares them.
func (s *subscription) expect(t *testing.T, want ...ev) {
	t.Helper()
	var got []ev
	for range want {
		select {
		case e := <-s.events:
			got = append(got, summarize(e))
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out waiting for events\ngot  %v\nwant %v", got, want)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events\ngot  %v\nwant %v", got, want)
	}
}

// expectNone checks that no event is pending. It can only catch an event
// already sent, so callers first provoke a later, expected event: stream
// order then proves nothing came before it.
func (s *subscription) expectNone(t *testing.T) {
	t.Helper()
	select {
	case e := <-s.events:
		t.Fatalf("unexpected event %v", summarize(e))
	default:
	}
}

// checkNoLeaks fails the test if goroutines of this package or of gRPC
// outlive it. Call it first in a test, so its cleanup runs after the
// others (servers stopped, streams cancelled).
func checkNoLeaks(t *testing.T) {
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			leaked := leakedGoroutines()
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func leakedGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	stacks := strings.Split(string(buf), "\n\n")
	var out []string
	for _, s := range stacks[1:] { // stacks[0] is this goroutine
		if strings.Contains(s, "testing.tRunner(") {
			continue // a test function (this test's parents), not one it started
		}
		if strings.Contains(s, "p4mesh/p4mesh/watch.") || strings.Contains(s, "google.golang.org/grpc") {
			out = append(out, s)
		}
	}
	return out
}
