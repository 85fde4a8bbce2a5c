package controller

import (
	"context"
	"sync"
	"testing"

	"google.golang.org/grpc"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/watch"
)

// methodGate is a gate of one place that counts, by gRPC method, the
// bursts that went through it.
type methodGate struct {
	slots chan struct{}

	mu      sync.Mutex // guards entered
	entered map[string]int
}

func newMethodGate() *methodGate {
	return &methodGate{slots: make(chan struct{}, 1), entered: map[string]int{}}
}

func (g *methodGate) For(ctx context.Context) watch.Gate {
	m, _ := grpc.Method(ctx)
	return methodStream{g, m}
}

func (g *methodGate) count(method string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.entered[method]
}

type methodStream struct {
	g      *methodGate
	method string
}

func (s methodStream) Enter(ctx context.Context) error {
	select {
	case s.g.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	s.g.entered[s.method]++
	return nil
}

func (s methodStream) Leave()        { <-s.g.slots }
func (s methodStream) Progress(bool) {}

// Every kind of watch stream goes through ServerOptions.Gate, and with a
// gate of one place, streams whose clients read take turns and are all
// served.
func TestWatchStreamsGated(t *testing.T) {
	checkNoLeaks(t)
	g1, g2 := newMethodGate(), newMethodGate()
	l1, l2 := listen(t), listen(t)
	a1, a2 := l1.Addr().String(), l2.Addr().String()
	c1 := startCtl(t, "c1", l1, t.TempDir(), c1Config(t, a1, a2), func(o *ServerOptions) { o.Gate = g1.For })
	startCtl(t, "c2", l2, t.TempDir(), c2Config(t, a1, a2, true), func(o *ServerOptions) { o.Gate = g2.For })

	conn := dial(t, c1.addr)
	h1 := follow(t, conn, hostWatch, &p4meshv1.WatchRequest{Host: "h1"})
	dest := follow(t, conn, destWatch, &p4meshv1.WatchRequest{Host: "h1", Vpc: "red"})
	fwd := follow(t, conn, fwdWatch, &p4meshv1.WatchRequest{Host: "h1", Vpc: "red"})
	h1.waitFor(t, "peering red/blue active", func(v *watch.View) bool {
		return peeringOf(v, "red", "blue").GetActive()
	})
	dest.waitFor(t, "red's destinations", func(v *watch.View) bool { return v.Len() == 3 })
	fwd.waitFor(t, "red's forwarding", func(v *watch.View) bool { return v.Len() == 3 })

	for _, m := range []string{
		p4meshv1.HostProgramming_Watch_FullMethodName,
		p4meshv1.Connectivity_WatchDestinations_FullMethodName,
		p4meshv1.Connectivity_WatchForwarding_FullMethodName,
		p4meshv1.Peers_WatchPeerSides_FullMethodName,
	} {
		if g1.count(m) == 0 {
			t.Errorf("c1 served %s without its gate", m)
		}
	}
	if g2.count(p4meshv1.Peers_WatchPeerSides_FullMethodName) == 0 {
		t.Error("c2 served its peer sides without its gate")
	}
}
