package ohc

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// defaultReportInterval is AgentOptions.ReportInterval's default.
const defaultReportInterval = 2 * time.Second

// DefaultHeartbeat is how often a host with a gateway duty reports when
// the duty names no heartbeat: the pool's controller takes a gateway out
// of the pool when its reports stop for the pool's health timeout.
const DefaultHeartbeat = 500 * time.Millisecond

// minReportTimeout bounds how short a heartbeat makes a report's deadline:
// a controller busy for a moment should not turn every report into a
// failure.
const minReportTimeout = 250 * time.Millisecond

// setHeartbeat sets the report heartbeat for the host's gateway duties:
// the shortest of theirs, 0 for none.
func (a *Agent) setHeartbeat(duties []GatewayDuty) {
	var hb time.Duration
	for _, d := range duties {
		h := d.Heartbeat
		if h <= 0 {
			h = DefaultHeartbeat
		}
		if hb == 0 || h < hb {
			hb = h
		}
	}
	if a.heartbeat.Swap(int64(hb)) != int64(hb) {
		select {
		case a.reportKick <- struct{}{}:
		default:
		}
	}
}

// Report tells every controller that knows this host what the programmer
// has programmed, by table, and whether the OHC is primary on its switch
// (role; nil leaves that out), every ReportInterval until ctx ends. Only
// what a successful reconcile put on the switch is reported while primary;
// once the switch has made the OHC a backup, that is reported at once,
// with the entries last reported. A controller that does not know the host
// (NotFound) is skipped.
//
// A report that says nothing new is not sent, except while the host has a
// gateway duty: then one goes every heartbeat (the shortest duty's,
// DefaultHeartbeat when it names none), changed or not, since the pool's
// controller takes the silence of a gateway for its death. A gateway
// whose switch holds nothing yet reports nothing, so it does not join a
// pool before it can forward.
func (a *Agent) Report(ctx context.Context, prog *Programmer, role *SwitchRole) error {
	every := func() time.Duration {
		if hb := time.Duration(a.heartbeat.Load()); hb > 0 && hb < a.o.ReportInterval {
			return hb
		}
		return a.o.ReportInterval
	}
	tick := time.NewTimer(every())
	defer tick.Stop()
	var changed <-chan struct{}
	if role != nil {
		changed = role.changed
	}
	var last *p4meshv1.HostReport // what every controller accepted last
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-changed:
		case <-a.reportKick:
		}
		tick.Reset(every())
		r := a.hostReport(prog, role, last)
		if r == nil || proto.Equal(r, last) && a.heartbeat.Load() == 0 {
			continue
		}
		timeout := defaultReportInterval
		if hb := time.Duration(a.heartbeat.Load()); hb > 0 {
			timeout = min(max(hb, minReportTimeout), defaultReportInterval)
		}
		if a.send(ctx, r, timeout) {
			last = r
		}
	}
}

// send sends r to every controller at once and reports whether each took
// it (or does not know the host). Each send may take up to timeout (about
// a heartbeat while on duty): a controller that hangs then delays the next
// report by no more than that, so the pool's controller does not take a
// gateway for dead because another controller is slow.
func (a *Agent) send(ctx context.Context, r *p4meshv1.HostReport, timeout time.Duration) bool {
	var (
		wg     sync.WaitGroup
		failed atomic.Bool
	)
	for _, addr := range a.o.Controllers {
		conn, err := a.conn(addr)
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, timeout)
			_, err := p4meshv1.NewHostProgrammingClient(conn).Report(rctx, r)
			cancel()
			if err != nil && status.Code(err) != codes.NotFound {
				a.log.Debug("report to controller failed; retrying", "controller", addr, "err", err)
				failed.Store(true)
			}
		}()
	}
	wg.Wait()
	return !failed.Load()
}

// hostReport is what there is to report now, nil for nothing: the
// programmer's entries once a reconcile has put them on the switch; as a
// backup (the switch refuses our writes, what it holds is no longer ours
// to vouch for) the entries of the last report.
func (a *Agent) hostReport(prog *Programmer, role *SwitchRole, last *p4meshv1.HostReport) *p4meshv1.HostReport {
	r := &p4meshv1.HostReport{Host: a.o.Host}
	if role != nil {
		if primary, known := role.Primary(); known {
			r.SwitchPrimary = proto.Bool(primary)
			if !primary {
				r.Entries = last.GetEntries()
				return r
			}
		}
	}
	st := prog.Stats()
	if st.Applied == 0 || st.LastError != nil {
		return nil
	}
	r.Entries = make(map[string]uint64, len(st.Desired))
	for t, n := range st.Desired {
		r.Entries[t] = uint64(n)
	}
	r.PeerPackets = st.PeerPackets
	return r
}
