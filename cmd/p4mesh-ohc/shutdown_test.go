package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/p4"
)

// stopBound is how soon after SIGTERM an idle OHC must have exited: a
// requirement (a restart right after must not overlap the old process), not
// a performance figure.
const stopBound = time.Second

// syncBuffer is a log sink the OHC writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveSwitch serves an in-process p4mesh-switch on loopback and returns its
// P4Runtime address.
func serveSwitch(t *testing.T) string {
	t.Helper()
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	sw, err := dataplane.NewSwitch(dataplane.SwitchOptions{
		Server: dataplane.Options{P4Info: info},
		Ports:  map[uint16]dataplane.Port{1: dataplane.NewMemPort(16)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, func(g *grpc.Server) { sw.Server().Register(g) }, func(ctx context.Context) { sw.Run(ctx) })
}

// serveController serves an in-process controller of red-blue.yaml (c1,
// which programs h1) on loopback and returns its address.
func serveController(t *testing.T) string {
	t.Helper()
	cfg, err := controller.LoadFile("../../controller/testdata/red-blue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	store, err := controller.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	ctl, err := controller.NewServer(controller.ServerOptions{Auth: identity.Auth{Insecure: true}, Store: store, PeerGrace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, ctl.Register, func(ctx context.Context) { ctl.Run(ctx) })
}

func serve(t *testing.T, register func(*grpc.Server), run func(context.Context)) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	register(g)
	go g.Serve(lis)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { run(ctx); close(done) }()
	t.Cleanup(func() {
		g.Stop()
		cancel()
		<-done
	})
	return lis.Addr().String()
}

// TestStopWithinBound stops an OHC that is primary on its switch and
// follows its controller: its streams are its own, client side, and end
// with it within stopBound.
func TestStopWithinBound(t *testing.T) {
	sw, ctl := serveSwitch(t), serveController(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var logs syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--host", "h1", "--controller", ctl, "--switch", sw, "--metrics-addr", "127.0.0.1:0"}, &logs)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), `msg="switch reconciled"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the OHC never programmed its switch:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	start := time.Now()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("run = %d after cancel, want 0:\n%s", code, logs.String())
		}
		if took := time.Since(start); took > stopBound {
			t.Errorf("run returned %v after cancel, want within %v:\n%s", took, stopBound, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("run did not return after cancel:\n%s", logs.String())
	}
}
