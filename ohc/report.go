package ohc

import (
	"context"
	"maps"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// reportEvery is how often an OHC tells its controllers what its switch
// holds: operational state, so seconds are fine.
const reportEvery = 2 * time.Second

// Report tells every controller that knows this host what the programmer
// has programmed, by table, until ctx ends. Only what a successful
// reconcile put on the switch is reported; a controller that does not know
// the host (NotFound) is skipped.
func (a *Agent) Report(ctx context.Context, prog *Programmer) error {
	tick := time.NewTicker(reportEvery)
	defer tick.Stop()
	var last map[string]uint64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		st := prog.Stats()
		if st.Applied == 0 || st.LastError != nil {
			continue
		}
		entries := make(map[string]uint64, len(st.Desired))
		for t, n := range st.Desired {
			entries[t] = uint64(n)
		}
		if maps.Equal(entries, last) {
			continue
		}
		ok := true
		for _, addr := range a.o.Controllers {
			conn, err := a.conn(addr)
			if err != nil {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, reportEvery)
			_, err = p4meshv1.NewHostProgrammingClient(conn).Report(rctx, &p4meshv1.HostReport{Host: a.o.Host, Entries: entries})
			cancel()
			if err != nil && status.Code(err) != codes.NotFound {
				a.log.Debug("report to controller failed; retrying", "controller", addr, "err", err)
				ok = false
			}
		}
		if ok {
			last = entries
		}
	}
}
