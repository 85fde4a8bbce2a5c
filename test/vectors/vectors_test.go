package vectors

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
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

// lateIO is the far side of an in-memory port whose frames come late: each
// again after delay (a copy), or only after delay.
type lateIO struct {
	memIO
	out chan []byte
}

func newLateIO(t *testing.T, p *dataplane.MemPort, delay time.Duration, copy bool) lateIO {
	l := lateIO{memIO: memIO{p}, out: make(chan []byte, 64)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for {
			select {
			case f := <-p.Output():
				if copy {
					l.out <- f
				}
				time.AfterFunc(delay, func() {
					select {
					case l.out <- f:
					case <-ctx.Done():
					}
				})
			case <-ctx.Done():
				return
			}
		}
	}()
	return l
}

func (l lateIO) Frames() <-chan []byte { return l.out }

// lateTarget runs a switch whose ports' frames come as newLateIO makes them.
func lateTarget(t *testing.T, delay time.Duration, copy bool) *Target {
	ports := map[uint16]dataplane.Port{}
	io := map[uint16]PortIO{}
	for _, n := range []uint16{1, 2, 3, 4} {
		p := dataplane.NewMemPort(64)
		ports[n], io[n] = p, newLateIO(t, p, delay, copy)
	}
	info, _ := p4.P4Info()
	return &Target{Client: startSwitch(t, ports), P4Info: info, Ports: io}
}

func loadCase(t *testing.T, name string) *Case {
	t.Helper()
	c, err := LoadFile("testdata/" + name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Run passed; want an error with %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("the error lacks %q:\n%v", p, err)
		}
	}
}

// TestRunReportsLateCopies: a copy of each frame, after the settle, fails
// the step the frame was for, the last one's included: the runner watches
// after the last step instead of leaving it to the next case to throw away.
func TestRunReportsLateCopies(t *testing.T) {
	tg := lateTarget(t, 100*time.Millisecond, true)
	tg.Settle = 50 * time.Millisecond
	tg.Tail = 200 * time.Millisecond
	err := Run(t.Context(), tg, loadCase(t, "02-local-vm"))
	wantErr(t, err, "02-local-vm step 0", "02-local-vm step 1 (TCP", "late: a second copy of the expected frame on port 2")
	t.Log(err)
}

// TestRunReportsLateFrames: a frame that comes after its step's timeout
// fails that step as late, not the step in whose window it came.
func TestRunReportsLateFrames(t *testing.T) {
	tg := lateTarget(t, 150*time.Millisecond, false)
	tg.Settle, tg.Timeout, tg.Tail = 20*time.Millisecond, 50*time.Millisecond, 400*time.Millisecond
	err := Run(t.Context(), tg, loadCase(t, "02-local-vm"))
	wantErr(t, err, "02-local-vm step 0 (step): late: the expected frame on port 2", "02-local-vm step 1 (TCP, with a DSCP: only the MAC and TTL change): late: the expected frame on port 2")
	if strings.Contains(err.Error(), "unexpected") || strings.Contains(err.Error(), "no frame") {
		t.Errorf("a late frame reported as missing or unexpected too:\n%v", err)
	}
	t.Log(err)
}

// TestRunReportsOutputAfterItsCase: what comes after a case's watch fails
// the next case on the target, named as the earlier case's.
func TestRunReportsOutputAfterItsCase(t *testing.T) {
	tg := lateTarget(t, 300*time.Millisecond, true)
	tg.Settle, tg.Tail = 20*time.Millisecond, 20*time.Millisecond
	if err := Run(t.Context(), tg, loadCase(t, "04-encap-peered")); err != nil {
		t.Fatalf("the copy came during the case: %v", err)
	}
	time.Sleep(400 * time.Millisecond)
	err := Run(t.Context(), tg, loadCase(t, "02-local-vm"))
	wantErr(t, err, "02-local-vm: 1 outputs came before the first step (late output of case 04-encap-peered")
	t.Log(err)
}
