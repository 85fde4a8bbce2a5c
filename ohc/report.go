package ohc

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// defaultReportInterval is AgentOptions.ReportInterval's default.
const defaultReportInterval = 2 * time.Second

// Report tells every controller that knows this host what the programmer
// has programmed, by table, and whether the OHC is primary on its switch
// (role; nil leaves that out), every ReportInterval until ctx ends. Only
// what a successful reconcile put on the switch is reported while primary;
// once the switch has made the OHC a backup, that is reported at once,
// with the entries last reported. A controller that does not know the host
// (NotFound) is skipped.
func (a *Agent) Report(ctx context.Context, prog *Programmer, role *SwitchRole) error {
	tick := time.NewTicker(a.o.ReportInterval)
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
		}
		r := a.hostReport(prog, role, last)
		if r == nil || proto.Equal(r, last) {
			continue
		}
		ok := true
		for _, addr := range a.o.Controllers {
			conn, err := a.conn(addr)
			if err != nil {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, defaultReportInterval)
			_, err = p4meshv1.NewHostProgrammingClient(conn).Report(rctx, r)
			cancel()
			if err != nil && status.Code(err) != codes.NotFound {
				a.log.Debug("report to controller failed; retrying", "controller", addr, "err", err)
				ok = false
			}
		}
		if ok {
			last = r
		}
	}
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
