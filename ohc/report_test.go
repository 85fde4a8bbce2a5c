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

// TestReportHeartbeat: an agent reports a switch that has not changed only
// while the host has a gateway duty, then every heartbeat (the duty's, or
// 500 ms when it names none) and from the moment the duty comes; when the
// duty ends, the unchanged switch is no longer reported.
func TestReportHeartbeat(t *testing.T) {
	ts := startSwitch(t, "127.0.0.1:0")
	o := startOHC(t, ts.addr, 1)
	o.converge(t, testView())

	ctl := &countingReports{}
	g := grpc.NewServer()
	p4meshv1.RegisterHostProgrammingServer(g, ctl)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)

	// An interval no test waits for: every report below is a heartbeat.
	a, err := ohc.NewAgent(ohc.AgentOptions{Host: "a", Controllers: []string{lis.Addr().String()}, Programmer: o.p, ReportInterval: time.Hour})
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
