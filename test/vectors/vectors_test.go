package vectors

import (
	"context"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

// memIO is the far side of an in-memory switch port.
type memIO struct{ p *dataplane.MemPort }

func (m memIO) Send(f []byte) error {
	m.p.Inject(f)
	return nil
}

func (m memIO) Frames() <-chan []byte { return m.p.Output() }

// startSwitch runs p4mesh-switch in-process with the given ports and a
// P4Runtime server on loopback, and returns a primary client for it.
func startSwitch(t *testing.T, ports map[uint16]dataplane.Port) *p4rt.Client {
	t.Helper()
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sw, err := dataplane.NewSwitch(dataplane.SwitchOptions{Server: dataplane.Options{P4Info: info, Logger: log}, Ports: ports})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := dataplane.NewGRPCServer()
	sw.Server().Register(g)
	go g.Serve(lis)
	done := make(chan struct{})
	go func() { sw.Run(ctx); close(done) }()

	c, err := p4rt.New(p4rt.Config{Addr: lis.Addr().String(), DeviceID: 1, ElectionID: p4rt.ElectionID{Low: 1}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cdone := make(chan struct{})
	go func() { c.Run(ctx); close(cdone) }()
	t.Cleanup(func() {
		cancel()
		<-cdone
		g.Stop()
		<-done
	})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := c.WaitPrimary(wctx); err != nil {
		t.Fatalf("not primary: %v (%v)", err, c.LastError())
	}
	return c
}

func loadCases(t *testing.T) []*Case {
	t.Helper()
	cases, err := Load("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return cases
}

// TestVectorsInMemory plays every vector against p4mesh-switch on
// in-memory ports, programmed over P4Runtime on loopback.
func TestVectorsInMemory(t *testing.T) {
	ports := map[uint16]dataplane.Port{}
	io := map[uint16]PortIO{}
	for _, n := range []uint16{1, 2, 3, 4} {
		p := dataplane.NewMemPort(64)
		ports[n], io[n] = p, memIO{p}
	}
	c := startSwitch(t, ports)
	info, _ := p4.P4Info()
	target := &Target{Client: c, P4Info: info, Ports: io}
	for _, vc := range loadCases(t) {
		t.Run(vc.Name, func(t *testing.T) {
			if err := Run(context.Background(), target, vc); err != nil {
				t.Error(err)
			}
		})
	}
}
