package ohc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/ohc"
)

// BenchmarkChangeDuringResync: how long one remote endpoint change takes
// from UpdateChange to being on the switch (the in-process p4mesh-switch
// over loopback gRPC) while periodic resyncs run back to back
// (ResyncInterval 10ms, shorter than a resync at these sizes): the worst
// case of a change arriving while the programmer re-reads and re-diffs its
// whole switch. n remote endpoints as in BenchmarkCompileChange; the change
// adds the endpoint, then removes it, and so on. reconciles/op is how many
// reconciles (the change's and the resyncs) completed per change.
func BenchmarkChangeDuringResync(b *testing.B) {
	for _, n := range []int{1_000, 4_000, 15_000} {
		b.Run(fmt.Sprintf("remote=%d", n), func(b *testing.B) {
			without, with, k := changeViews(n)
			ts := startSwitchWith(b, "127.0.0.1:0", nil)
			o := startOHCWith(b, ts.addr, 1, func(po *ohc.ProgrammerOptions) { po.ResyncInterval = 10 * time.Millisecond })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			o.p.Update(without)
			if err := o.p.WaitConverged(ctx); err != nil {
				b.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // resyncs under way
			views := [2]*ohc.View{with, without}
			ch := ohc.ViewChange{Remote: []ohc.RemoteKey{k}}
			before := o.p.Stats().Reconciles
			i := 0
			for b.Loop() {
				o.p.UpdateChange(views[i%2], nil, ch)
				if err := o.p.WaitConverged(ctx); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(o.p.Stats().Reconciles-before)/float64(i), "reconciles/op")
		})
	}
}
