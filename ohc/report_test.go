package ohc_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/ohc"
)

// countingReports is the report side of a controller, counting reports:
// the agent's reporting is what is under test, not the controller's.
type countingReports struct {
	p4meshv1.UnimplementedHostProgrammingServer
	n atomic.Int64
}

func (c *countingReports) Report(context.Context, *p4meshv1.HostReport) (*p4meshv1.HostReportAck, error) {
	c.n.Add(1)
	return &p4meshv1.HostReportAck{}, nil
}

// hangingReports is a controller that never answers a report.
type hangingReports struct {
	p4meshv1.UnimplementedHostProgrammingServer
}

func (hangingReports) Report(ctx context.Context, _ *p4meshv1.HostReport) (*p4meshv1.HostReportAck, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func serveReports(t *testing.T, srv p4meshv1.HostProgrammingServer) string {
	t.Helper()
	g := grpc.NewServer()
	p4meshv1.RegisterHostProgrammingServer(g, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// TestReportHeartbeat: an agent reports a switch that has not changed only
// while the host has a gateway duty, then every heartbeat (the duty's, or
// 500 ms when it names none) and from the moment the duty comes; when the
// duty ends, the unchanged switch is no longer reported.
func TestReportHeartbeat(t *testing.T) {
	ts := startSwitch(t, "127.0.0.1:0")
	o := startOHC(t, ts.addr, 1)
	o.converge(t, testView())

	ctl := &countingReports{}
	addr := serveReports(t, ctl)

	// An interval no test waits for: every report below is a heartbeat.
	a, err := ohc.NewAgent(ohc.AgentOptions{Host: "a", Controllers: []string{addr}, Programmer: o.p, ReportInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Report(ctx, o.p, nil); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	quiet := func(what string) {
		t.Helper()
		n := ctl.n.Load()
		time.Sleep(300 * time.Millisecond)
		if m := ctl.n.Load(); m != n {
			t.Errorf("%s: %d reports in 300ms, want none", what, m-n)
		}
	}
	atLeast := func(what string, n int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for ctl.n.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d reports, want %d", what, ctl.n.Load(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	quiet("no duty")

	ohc.SetDuties(a, []ohc.GatewayDuty{{Pool: "p", VPC: "blue", Heartbeat: time.Second}, {Pool: "q", VPC: "green", Heartbeat: 40 * time.Millisecond}})
	atLeast("a duty of 40ms", 5)

	ohc.SetDuties(a, nil)
	time.Sleep(100 * time.Millisecond) // a report in flight
	quiet("the duty ended")

	ohc.SetDuties(a, []ohc.GatewayDuty{{Pool: "p", VPC: "blue"}})
	n := ctl.n.Load()
	atLeast("the default heartbeat", n+3)
}

// TestReportHeartbeatPastAHungController: a controller that never answers
// delays a gateway's heartbeat to the others by about a heartbeat, not by
// the 2 s a report may otherwise take: the pool's controller must not take
// the gateway for dead because another controller hangs.
func TestReportHeartbeatPastAHungController(t *testing.T) {
	ts := startSwitch(t, "127.0.0.1:0")
	o := startOHC(t, ts.addr, 1)
	o.converge(t, testView())
	ctl := &countingReports{}
	a, err := ohc.NewAgent(ohc.AgentOptions{Host: "a", Controllers: []string{serveReports(t, hangingReports{}), serveReports(t, ctl)},
		Programmer: o.p, ReportInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Report(ctx, o.p, nil); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	ohc.SetDuties(a, []ohc.GatewayDuty{{Pool: "p", VPC: "blue", Heartbeat: 100 * time.Millisecond}})
	time.Sleep(2 * time.Second)
	// A report every 250 ms (the shortest deadline) or so; with a 2 s
	// deadline per controller in turn, one or two.
	if n := ctl.n.Load(); n < 5 {
		t.Errorf("%d reports reached the answering controller in 2 s, want at least 5", n)
	}
}
