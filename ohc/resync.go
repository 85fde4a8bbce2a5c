package ohc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/p4rt"
)

// The periodic resync reads the whole switch back and diffs it with the
// whole desired state: at 100k entries that is hundreds of milliseconds of
// reading, decoding and hashing. Run's goroutine is the only writer, so a
// resync done inline makes every change that arrives meanwhile wait for it.
// When the switch is known (the last pass succeeded in the current term),
// the resync instead runs aside: Run snapshots the desired state, another
// goroutine reads the switch and diffs it against the snapshot, and Run,
// which went on applying deltas meanwhile, writes the diff afterwards. The
// diff is right for every entity no write touched since the snapshot: its
// desired state has not changed (every change to what the switch must hold
// is written, and recorded in touched, or the switch is not known and the
// whole aside is dropped), and the read saw what the switch holds of it,
// drift included. The touched entities were written moments ago from the
// current desired state; the next resync checks them.

// asideResync is a periodic resync running beside the deltas. Run's
// goroutine alone uses it.
type asideResync struct {
	done    chan asideResult
	start   time.Time
	term    uint64 // the client's election count at the snapshot
	touched map[string]struct{}
	// stale: an inline full pass ran meanwhile; it did the resync's work.
	stale bool
}

// asideResult is what the aside goroutine hands back: the writes the diff
// calls for, in Reconciler stage order.
type asideResult struct {
	stages [][]*p4v1.Update
	// pipeline: the switch no longer runs the programmer's pipeline.
	pipeline bool
	err      error
}

// canAside says whether the next resync may run aside: the switch holds
// what the last pass wrote, in this term, and nothing calls for the work
// only a full inline pass does (a pipeline push, pruning what partial
// views held, adopting promoted entries, the first view that fits again).
func (p *Programmer) canAside() bool {
	return p.aside == nil && p.known && !p.fullNext && p.accounted && len(p.held) == 0 &&
		!p.overBudget && !p.dem.adopting && p.client.Stats().Elections == p.knownTerm
}

// startAside snapshots the desired state and starts reading and diffing
// the switch in another goroutine.
func (p *Programmer) startAside(ctx context.Context) {
	// Desired is replaced, never edited, by later compiles, and the
	// entities in it are not modified: the goroutine may read them.
	desired := p.dem.desired(p.compiler.Desired())
	a := &asideResync{done: make(chan asideResult, 1), start: time.Now(), term: p.knownTerm, touched: map[string]struct{}{}}
	p.aside = a
	go func() { a.done <- p.readAside(ctx, desired) }()
}

// readAside is the aside goroutine: the pipeline check and the read and
// diff of a full pass, with the writes captured rather than sent.
func (p *Programmer) readAside(ctx context.Context, desired []*p4v1.Entity) asideResult {
	cur, ok, err := p.client.GetPipelineCookie(ctx)
	if err != nil {
		return asideResult{err: fmt.Errorf("ohc: resync: pipeline cookie: %w", err)}
	}
	if !ok || cur != p.cookie {
		return asideResult{pipeline: true}
	}
	dev := &captureDevice{Device: p.client}
	rec := &p4rt.Reconciler{Schema: p.schema, Device: dev, Tables: ownedTables, Profiles: ownedProfiles}
	if _, _, err := rec.ReconcileKeeping(ctx, desired, nil); err != nil {
		return asideResult{err: fmt.Errorf("ohc: resync: %w", err)}
	}
	return asideResult{stages: dev.stages}
}

// captureDevice reads from the switch and keeps the writes.
type captureDevice struct {
	p4rt.Device
	stages [][]*p4v1.Update
}

func (d *captureDevice) Write(_ context.Context, updates []*p4v1.Update) error {
	d.stages = append(d.stages, updates)
	return nil
}

// touch records entities written while a resync runs aside.
func (p *Programmer) touch(sets ...[]*p4v1.Entity) {
	if p.aside == nil {
		return
	}
	for _, es := range sets {
		for _, e := range es {
			p.aside.touched[p4rt.Key(e)] = struct{}{}
		}
	}
}

// finishAside writes what an aside resync found, less the entities written
// since its snapshot, and says whether a pass must follow.
func (p *Programmer) finishAside(ctx context.Context, r asideResult) bool {
	a := p.aside
	p.aside = nil
	switch {
	case r.err != nil:
		if ctx.Err() != nil {
			return false
		}
		p.log.Warn("switch resync failed; reconciling inline", "err", r.err)
		p.fullNext = true
		return true
	case r.pipeline:
		// Pushed by a full pass, which also reprograms everything.
		p.log.Warn("switch runs another pipeline; reprogramming it")
		p.known = false
		return true
	case a.stale || !p.known || p.overBudget || len(p.held) > 0 ||
		p.knownTerm != a.term || p.client.Stats().Elections != a.term:
		// A full pass ran or is due: it does, or did, this resync's work.
		return false
	case !p.client.IsPrimary():
		// Another controller is primary: nothing is written until this
		// one is again, and then the new term reads the switch afresh.
		p.fullNext = true
		return true
	}
	var res p4rt.Result
	add := func(u *p4v1.Update) {
		if res.Changes == nil {
			res.Changes = map[string]p4rt.Change{}
		}
		n := p.ownerName(u.GetEntity())
		c := res.Changes[n]
		switch u.GetType() {
		case p4v1.Update_INSERT:
			c.Inserted++
		case p4v1.Update_MODIFY:
			c.Modified++
		case p4v1.Update_DELETE:
			c.Deleted++
		}
		res.Changes[n] = c
	}
	var err error
	skipped := 0
	for _, stage := range r.stages {
		out := stage[:0:0]
		for _, u := range stage {
			if _, ok := a.touched[p4rt.Key(u.GetEntity())]; ok {
				skipped++
				continue
			}
			out = append(out, u)
		}
		if len(out) == 0 {
			continue
		}
		for _, u := range out {
			add(u)
		}
		if err = p.client.Write(ctx, out); err != nil {
			break
		}
	}
	took := time.Since(a.start)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.count(res)
	if err != nil {
		p.known = false
		p.stats.Errors++
		p.stats.LastError = fmt.Errorf("ohc: resync: %w", err)
		p.log.Warn("switch resync write failed; reconciling", "err", err)
		return true
	}
	p.stats.Reconciles++
	p.stats.LastReconcile, p.stats.LastDuration = a.start, took
	p.stats.LastError = nil
	if !res.Empty() {
		p.log.Info("switch drift repaired", "changes", res.String(), "written_meanwhile", len(a.touched), "left_to_next_resync", skipped, "took", took)
	} else {
		p.log.Debug("switch in sync (resync)", "written_meanwhile", len(a.touched), "took", took)
	}
	return false
}

// jitter spreads resyncs over ±25% of the interval: OHCs started together
// (a rollout, a benchmark's sampled hosts in one process) would otherwise read
// their switches back all at once, every interval, and a change arriving
// then finds every CPU busy with them.
func jitter(d time.Duration) time.Duration {
	return d*3/4 + rand.N(d/2+1)
}
