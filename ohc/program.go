package ohc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/p4rt"
)

// Defaults of ProgrammerOptions.
const (
	// DefaultMinInterval paces reconciles: past a burst of passBurst,
	// views that arrive closer together are coalesced into one (the
	// latest), so a stream of endpoint changes costs one write per
	// interval, not one each.
	DefaultMinInterval = 20 * time.Millisecond
	// passBurst is how many passes may start back to back before the
	// interval applies. A lone change must not wait for the interval
	// after the pass of the change before it: one endpoint change reaches
	// a host as several events (its destination, where it lives, the
	// host's own programming for a local VM), and a view handed over for
	// each made the second pass of every change wait up to the whole
	// interval, the median of a change's time to its last host at 100k
	// endpoints (issue 14).
	passBurst = 3
	// DefaultResyncInterval is how often the programmer reconciles with no
	// change in sight, to repair drift (an entry someone else deleted, a
	// write lost with a connection).
	DefaultResyncInterval = time.Minute
	// electionPoll is how often the programmer looks at the client's
	// election count. Polling an atomic counter is cheap and, unlike
	// draining Client.Mastership, takes no events from the client's other
	// users.
	electionPoll = 50 * time.Millisecond
	// maxLoggedWarnings bounds the compile warnings logged per view; all of
	// them are in Stats.
	maxLoggedWarnings = 10
)

// ProgrammerOptions configure NewProgrammer.
type ProgrammerOptions struct {
	// Client is the connection to the switch. Required. The caller runs it
	// (Client.Run) and closes it: the connection outlives a programmer
	// restart and is shared with the OHC's other users of the switch
	// (packet-ins, gateway digests). The programmer only waits for it to be
	// primary and writes through it.
	Client *p4rt.Client
	// P4Info is the pipeline the switch must run. Required.
	P4Info *p4configv1.P4Info
	// Schema indexes P4Info; nil builds it from P4Info.
	Schema *p4rt.Schema
	// DeviceConfig is the target's device config for the pipeline push
	// (BMv2 JSON; nil for p4mesh-switch).
	DeviceConfig []byte
	// Logger receives reconcile results and failures; nil discards.
	Logger *slog.Logger
	// MinInterval paces passes once passBurst have started back to back
	// (default DefaultMinInterval).
	MinInterval time.Duration
	// ResyncInterval paces reconciles without a change (default
	// DefaultResyncInterval, jittered ±25%; negative disables them).
	// While the switch is known they run beside the changes, which do
	// not wait for them (resync.go).
	ResyncInterval time.Duration
	// Backoff paces retries of a failed reconcile (default 100ms doubling
	// to 10s, jittered).
	Backoff p4rt.Backoff
	// Capabilities are the target's (p4rt.LookupTarget); nil reads them
	// from P4Info alone. A view needing more entries than a table's size,
	// or more members than a profile's, is refused before anything is
	// written, as a view that does not compile is: the switch keeps the
	// last view that fit, and the error names every table over.
	Capabilities *p4rt.Capabilities
	// TableBudget lowers tables' budgets below their sizes, by table name
	// (vnet_destination: room for promoted entries of pool-mode peers, see
	// demand.go). A budget above a table's size is its size.
	TableBudget map[string]int
}

// ProgrammerStats describe what the programmer did, for metrics and tests.
type ProgrammerStats struct {
	// Generation counts the views handed to Update; Applied is the
	// generation the switch last converged to (0: none yet).
	Generation, Applied uint64
	// LastReconcile is when the last successful reconcile started, and
	// LastDuration how long it took (read-back, diff and writes).
	LastReconcile time.Time
	LastDuration  time.Duration
	// LastChanges are the writes of the last reconcile that wrote anything,
	// and TotalChanges those of all reconciles, by table or profile name.
	LastChanges, TotalChanges map[string]p4rt.Change
	// Desired counts the entities of the last view that compiled, by table
	// or profile name.
	Desired map[string]int
	// Warnings are that view's compile warnings (items left out).
	Warnings []string
	// Reconciles counts successful reconciles (including ones that wrote
	// nothing), PipelinePushes the pipelines pushed (after a switch
	// restart, or the first time), Errors failed compiles and reconciles.
	Reconciles, PipelinePushes, Errors uint64
	// LastError is the last failure, nil after a success.
	LastError error
	// Compiles counts the views compiled whole, IncrementalCompiles those
	// compiled from what changed (see Compiler.CompileChange): most
	// should be incremental when endpoints come and go elsewhere.
	Compiles, IncrementalCompiles uint64
	// LastConvergence is how long the last applied view took from Update
	// to being on the switch (compile, coalescing, diff and writes).
	LastConvergence time.Duration
	// Missing are the sources the view last applied lacks (see
	// UpdatePartial). Held counts the entries left on the switch meanwhile
	// because no view explains them: they may be those sources'. Both are
	// empty once a whole view is applied.
	Missing []string
	Held    int
	// Demand is the on-demand programming of pool-mode peers, and
	// PeerPackets the packets sent to them by pair "vpc/peer_vpc"
	// (HostReport.peer_packets).
	Demand      DemandStats
	PeerPackets map[string]uint64
}

// Programmer programs one switch with the OHC's view. It is handed whole
// views (Update) and makes the tables and selectors it owns on the switch
// equal to the latest one by reconciliation: read back, diff, write only the
// difference. Because it never replays events, a restart of the OHC writes
// nothing where nothing changed, and a restarted switch gets everything back.
type Programmer struct {
	client   *p4rt.Client
	info     *p4configv1.P4Info
	devCfg   []byte
	schema   *p4rt.Schema
	cookie   uint64
	rec      *p4rt.Reconciler
	log      *slog.Logger
	minIvl   time.Duration
	resync   time.Duration
	backoff  p4rt.Backoff
	tableIDs map[string]string // owner name (as the reconciler reports it) → short name
	caps     *p4rt.Capabilities
	// entries and members count the compiler's desired table entries (a
	// default entry is not one) by table and action profile members by
	// profile, full names, kept from each compile's delta: the budget
	// check costs the change, not the view. Run's goroutine alone.
	entries, members map[string]int
	// overBudget: the last compile was refused for its size.
	overBudget bool
	// dem withholds pool-mode peers' destinations until promoted.
	dem *demand

	// wake has room for one signal: Update never blocks, and any number of
	// updates between two reconciles wake Run once.
	wake chan struct{}

	// Run's goroutine alone uses these: whether the switch is known to
	// hold what the compiler's generation knownGen compiled (the last
	// successful pass's), in which term as primary (the client's election
	// count), and whether the next pass must read it back.
	known     bool
	knownGen  uint64
	knownTerm uint64
	fullNext  bool
	// held are the entities on the switch, by p4rt.Key, that partial
	// views left alone because no view explained them; accounted says
	// whether a full pass has sorted the switch's entities into explained
	// and held yet (before that, nothing unexplained may be deleted).
	held      map[string]*p4v1.Entity
	accounted bool
	// compiler keeps the entries of the last compile for the next one.
	compiler *Compiler
	// aside is the periodic resync running beside the deltas (resync.go).
	aside *asideResync

	mu sync.Mutex
	// mu guards the following fields.
	view    *View
	missing []string // the sources view lacks (UpdatePartial)
	// change is what changed from the view Run compiled last to view:
	// the changes of every view handed over since, merged.
	change    ViewChange
	gen       uint64
	started   bool
	failed    uint64 // generation whose compile failed (0: none)
	failErr   error
	stats     ProgrammerStats
	changed   chan struct{} // closed (and replaced) when Applied or failed change
	compiled  *compiled     // the compile of the latest generation Run saw
	good      *compiled     // the latest compile without error
	updatedAt time.Time     // when generation gen was handed over
}

// compiled caches a view's compile, so a retry or a resync does not redo it.
// What it compiled is the compiler's Desired (for the latest good compile)
// and delta, what that compile changed in it.
type compiled struct {
	gen      uint64
	missing  []string // the sources the view lacks
	delta    Delta
	warnings []string
	err      error
	// evict are the promoted entries in delta.Gone that make room for
	// its Came: deleted first (see demand).
	evict []*p4v1.Entity
}

// errNoRetry marks a failure that retrying cannot fix (a view that does not
// compile): Run waits for the next view instead.
var errNoRetry = errors.New("not retried until the next view")

// NewProgrammer checks o and returns a programmer; Run starts it.
func NewProgrammer(o ProgrammerOptions) (*Programmer, error) {
	if o.Client == nil {
		return nil, errors.New("ohc: programmer: Client is required")
	}
	if o.P4Info == nil {
		return nil, errors.New("ohc: programmer: P4Info is required")
	}
	s := o.Schema
	if s == nil {
		var err error
		if s, err = p4rt.NewSchema(o.P4Info); err != nil {
			return nil, fmt.Errorf("ohc: programmer: %w", err)
		}
	}
	// The P4Info must be vpc_peering.p4's: fail here, not on every reconcile.
	names := map[string]string{}
	for _, n := range ownedTables {
		t, err := s.Table(n)
		if err != nil {
			return nil, fmt.Errorf("ohc: programmer: P4Info is not vpc_peering.p4's: %w", err)
		}
		names[t.Name()] = n
	}
	for _, n := range ownedProfiles {
		p, err := s.ActionProfile(n)
		if err != nil {
			return nil, fmt.Errorf("ohc: programmer: P4Info is not vpc_peering.p4's: %w", err)
		}
		names[p.Name()] = n
	}
	cookie, err := p4rt.Cookie(o.P4Info, o.DeviceConfig)
	if err != nil {
		return nil, fmt.Errorf("ohc: programmer: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MinInterval <= 0 {
		o.MinInterval = DefaultMinInterval
	}
	if o.ResyncInterval == 0 {
		o.ResyncInterval = DefaultResyncInterval
	}
	caps := o.Capabilities
	if caps == nil {
		if caps, err = p4rt.FromP4Info(o.P4Info); err != nil {
			return nil, fmt.Errorf("ohc: programmer: %w", err)
		}
	}
	caps, budget, err := applyBudgets(s, caps, o.TableBudget)
	if err != nil {
		return nil, fmt.Errorf("ohc: programmer: %w", err)
	}
	dem, err := newDemand(s, budget)
	if err != nil {
		return nil, fmt.Errorf("ohc: programmer: P4Info is not vpc_peering.p4's: %w", err)
	}
	return &Programmer{
		dem:      dem,
		caps:     caps,
		entries:  map[string]int{},
		members:  map[string]int{},
		client:   o.Client,
		info:     o.P4Info,
		devCfg:   o.DeviceConfig,
		schema:   s,
		cookie:   cookie,
		rec:      &p4rt.Reconciler{Schema: s, Device: o.Client, Tables: ownedTables, Profiles: ownedProfiles},
		log:      o.Logger,
		minIvl:   o.MinInterval,
		resync:   o.ResyncInterval,
		backoff:  o.Backoff,
		tableIDs: names,
		compiler: NewCompiler(s),
		wake:     make(chan struct{}, 1),
		changed:  make(chan struct{}),
	}, nil
}

// Update hands the programmer the whole intended view: every source of the
// OHC's state is in it, so whatever else the owned tables hold is stale and
// goes. It never blocks: the latest view wins, and views that arrive faster
// than the switch is reconciled are coalesced. v must not be modified
// afterwards.
//
// Until the first view, Run leaves the switch alone: an OHC that just
// restarted knows nothing yet, and reconciling an empty view would flush
// the switch.
func (p *Programmer) Update(v *View) { p.update(v, nil, ViewChange{Other: true}) }

// UpdatePartial hands over a view that lacks some sources: streams the OHC
// has had no snapshot of since it started (a controller that is down), named
// in missing for the log. What v calls for goes on the switch at once, and
// what an earlier view called for and v does not is deleted: a source that
// is heard from is followed. But the switch's entries may be a missing
// source's, and the switch does not say whose an entry is, so an entry that
// no view has explained since the programmer started is kept, not deleted,
// until a whole view comes (Update) and the full reconcile prunes what is
// still unexplained.
func (p *Programmer) UpdatePartial(v *View, missing []string) {
	p.update(v, slices.Clip(missing), ViewChange{Other: true})
}

// UpdateChange is Update (missing empty) or UpdatePartial with what
// changed from the view handed over before: the compiler then recompiles
// only that (see Compiler.CompileChange, whose conditions on v and ch
// apply), and the programmer writes only the entities that changed. Views
// handed over faster than they are compiled have their changes merged.
func (p *Programmer) UpdateChange(v *View, missing []string, ch ViewChange) {
	p.update(v, slices.Clip(missing), ch)
}

func (p *Programmer) update(v *View, missing []string, ch ViewChange) {
	p.mu.Lock()
	p.view = v
	p.missing = missing
	p.change.Merge(ch)
	p.gen++
	p.stats.Generation = p.gen
	p.updatedAt = time.Now()
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run programs the switch until ctx is done, then returns nil (cancellation
// is how it stops). Each pass waits until the client is primary, makes sure
// the switch runs the pipeline (SetPipeline with the P4Info and device
// config's cookie: skipped when the switch already runs it, so an OHC
// restart never flushes it) and reconciles the owned tables and selectors to
// the latest view, whole or partial (see UpdatePartial). A pass runs on a
// new view (at most every MinInterval), when the client has become primary
// again (a switch restart, a reconnect: the pipeline may be gone and the
// tables empty; another controller's term as primary: it may have written
// anything), every ResyncInterval, and after a failure, with jittered
// backoff.
func (p *Programmer) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.started {
		p.mu.Unlock()
		return errors.New("ohc: programmer: Run called more than once")
	}
	p.started = true
	p.mu.Unlock()

	poll := time.NewTicker(electionPoll)
	defer poll.Stop()
	digests := p.startDigests(ctx)
	defer digests()
	demandPoll := time.NewTimer(p.dem.pollInterval())
	defer demandPoll.Stop()
	var (
		resync      <-chan time.Time
		resyncTimer *time.Timer
	)
	if p.resync > 0 {
		resyncTimer = time.NewTimer(jitter(p.resync))
		defer resyncTimer.Stop()
		resync = resyncTimer.C
	}
	var (
		dirty    = true
		attempt  = 0
		retry    *time.Timer
		pace     = pacer{ivl: p.minIvl, burst: passBurst}
		seenTerm = p.client.Stats().Elections
	)
	defer func() {
		if p.aside != nil {
			<-p.aside.done // ctx is done or the client closed: it ends soon
		}
	}()
	stopRetry := func() {
		if retry != nil {
			retry.Stop()
			retry = nil
		}
	}
	defer stopRetry()
	for {
		if dirty && retry == nil {
			if wait := pace.wait(time.Now()); wait > 0 {
				// Coalesce: whatever arrives meanwhile rides along.
				t := time.NewTimer(wait)
			coalescing:
				for {
					select {
					case <-ctx.Done():
						t.Stop()
						return nil
					case <-p.dem.wake: // promotions do not wait
						p.demandDigests(ctx)
					case <-t.C:
						break coalescing
					}
				}
			}
			pace.start(time.Now())
			err := p.pass(ctx)
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, p4rt.ErrClosed) {
				return fmt.Errorf("ohc: programmer: %w", err)
			}
			switch {
			case err == nil || errors.Is(err, errNoRetry):
				dirty, attempt = false, 0
			default:
				d := p.backoff.Delay(attempt)
				attempt++
				p.log.Warn("switch reconcile failed; retrying", "err", err, "delay", d, "attempt", attempt)
				retry = time.NewTimer(d)
			}
		}
		var retryC <-chan time.Time
		if retry != nil {
			retryC = retry.C
		}
		var asideC <-chan asideResult
		if p.aside != nil {
			asideC = p.aside.done
		}
		select {
		case <-ctx.Done():
			return nil
		case <-p.wake:
			dirty = true
		case <-retryC:
			retry = nil
		case <-resync:
			resyncTimer.Reset(jitter(p.resync))
			// A change must not wait behind a resync: run it aside
			// when the switch is known (see resync.go).
			switch {
			case p.aside != nil: // still running
			case p.canAside():
				p.startAside(ctx)
			default:
				dirty, p.fullNext = true, true
			}
		case r := <-asideC:
			if p.finishAside(ctx, r) {
				dirty = true
			}
		case <-p.dem.wake:
			if p.demandDigests(ctx) {
				dirty = true
			}
		case <-demandPoll.C:
			if p.pollDemand(ctx) {
				dirty = true
			}
			demandPoll.Reset(p.dem.pollInterval())
		case <-poll.C:
			if term := p.client.Stats().Elections; term != seenTerm {
				// Primary again: on a new stream the switch may have
				// restarted, empty; on the same one another controller
				// was primary meanwhile. Go now, even if a retry was
				// pending; once per election, so a failing switch still
				// gets backoff.
				seenTerm = term
				dirty = true
				stopRetry()
			}
		}
	}
}

// pass is one reconcile of the latest view, or of the last view that
// compiled when the latest does not: the switch keeps (and after a restart
// gets back) the last good state rather than nothing or half a view.
func (p *Programmer) pass(ctx context.Context) error {
	if err := p.client.WaitPrimary(ctx); err != nil {
		return err
	}
	c, good := p.compile()
	if c == nil {
		return nil // no view yet: nothing is known, so nothing may be deleted
	}
	var bad, compileErr error
	if c.err != nil {
		compileErr = c.err
		bad = fmt.Errorf("%w: %w", c.err, errNoRetry)
		// Over budget, the compiler's Desired is the refused view: the
		// switch keeps what it holds, even through a resync (a switch
		// that restarts meanwhile stays empty until a view fits).
		if good == nil || p.overBudget {
			return bad
		}
		c = good
	}

	// What the switch holds is known when the last pass succeeded in the
	// same term as primary: then the diff is against that, without
	// reading the switch back. A new term (the switch may have restarted,
	// or another controller written), an error, or the periodic resync
	// asks for the full check; so does the first whole view after partial
	// ones, to prune what they kept.
	term := p.client.Stats().Elections
	partial := len(c.missing) > 0
	full := !p.known || term != p.knownTerm || p.fullNext || (!partial && len(p.held) > 0)
	pushed := false
	if full {
		var err error
		pushed, err = p.client.SetPipeline(ctx, p.info, p.devCfg, p.cookie, p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT)
		if err != nil {
			p.known = false
			return p.fail(fmt.Errorf("ohc: push pipeline: %w", err))
		}
		if pushed {
			p.mu.Lock()
			p.stats.PipelinePushes++
			p.mu.Unlock()
			p.log.Info("pipeline pushed to the switch; programming every entry", "cookie", p.cookie)
		}
	}

	start := time.Now()
	var res, pre p4rt.Result
	var err error
	if len(c.evict) > 0 && (full || c.gen != p.knownGen) {
		// Evicted promoted entries leave before anything comes: the
		// budget may be the table's very size. In a full pass they may
		// not be on the switch; the reconcile below sees to the rest.
		var gone []*p4v1.Entity
		gone, c.delta.Gone = c.evict, p.dem.without(c.delta.Gone, c.evict)
		c.evict = nil
		p.touch(gone)
		if pre, err = p.rec.Apply(ctx, gone, nil); err != nil && !full {
			p.known = false
			return p.fail(fmt.Errorf("ohc: delete evicted entries: %w", err))
		}
		err = nil
	}
	if full {
		if p.aside != nil {
			p.aside.stale = true
		}
		var keep func(*p4v1.Entity) bool
		if partial {
			keep = p.keep
		}
		var kept []*p4v1.Entity
		keep, adopted := p.adoptKeep(keep)
		res, kept, err = p.rec.ReconcileKeeping(ctx, p.dem.desired(p.compiler.Desired()), keep)
		kept = adopted(kept)
		if err == nil {
			p.hold(kept, c.missing)
		}
	} else if c.gen != p.knownGen {
		// The switch holds what the compile before c's compiled (every
		// successful compile is followed by a pass that writes it, or
		// the switch is not known), so c's delta is the difference:
		// what it took away is what the switch has and no longer
		// needs, what it brought is to be written. Its size is that of
		// the change, not of the view.
		gone, came := c.delta.Gone, c.delta.Came
		current, reclaimed := slices.Clip(gone), p.reclaim(came)
		for _, k := range reclaimed {
			current = append(current, p.held[k])
		}
		p.touch(current, came)
		res, err = p.rec.Apply(ctx, current, came)
		if err == nil {
			for _, k := range reclaimed {
				delete(p.held, k)
			}
		}
	}
	res = mergeResults(pre, res)
	took := time.Since(start)
	if err != nil {
		p.known = false
	} else {
		p.known, p.knownGen, p.knownTerm = true, c.gen, term
		if full {
			p.fullNext = false
			p.dem.enabled = p.dem.enabled && !pushed
		}
		p.demandAfterPass(ctx, full)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.count(res)
	if err != nil {
		p.stats.Errors++
		p.stats.LastError = err
		return fmt.Errorf("ohc: reconcile generation %d: %w", c.gen, err)
	}
	p.stats.Missing, p.stats.Held = c.missing, len(p.held)
	p.stats.Reconciles++
	p.stats.LastReconcile, p.stats.LastDuration = start, took
	p.stats.LastError = nil
	if c.gen > p.stats.Applied {
		p.stats.Applied = c.gen
		if c.gen == p.gen {
			p.stats.LastConvergence = time.Since(p.updatedAt)
		}
		p.notifyLocked()
	}
	if !res.Empty() {
		p.log.Info("switch reconciled", "generation", c.gen, "changes", res.String(), "took", took)
	} else {
		p.log.Debug("switch in sync", "generation", c.gen, "took", took)
	}
	if bad != nil {
		p.stats.LastError = compileErr // still the news
		return bad
	}
	return nil
}

// keep says whether a partial view's full pass must leave e, an entity the
// switch holds that the view does not explain, in place. Until a full pass
// has accounted for the switch, any such entity may be a missing source's
// (left by this OHC before it restarted): all are kept. After that, only
// the ones kept then still are: everything else that is unexplained was
// written by this programmer for a view that no longer wants it, or by
// someone else, and goes.
func (p *Programmer) keep(e *p4v1.Entity) bool {
	if !p.accounted {
		return true
	}
	_, ok := p.held[p4rt.Key(e)]
	return ok
}

// hold records the outcome of a successful full pass: the entities it kept
// (none when the view was whole).
func (p *Programmer) hold(kept []*p4v1.Entity, missing []string) {
	before := len(p.held)
	p.held = make(map[string]*p4v1.Entity, len(kept))
	for _, e := range kept {
		p.held[p4rt.Key(e)] = e
	}
	p.accounted = true
	switch {
	case len(kept) > 0 && len(kept) != before:
		p.log.Info("keeping switch entries no synced source explains, until every source syncs",
			"entries", len(kept), "waiting_for", missing)
	case len(kept) == 0 && before > 0 && len(missing) == 0:
		p.log.Info("every source synced; entries no source explains are pruned")
	}
}

// reclaim returns the keys of the held entities that came, entities a view
// now calls for, replace: those are on the switch already, so the
// incremental diff must see them there and modify them (or leave them)
// rather than insert them a second time.
func (p *Programmer) reclaim(came []*p4v1.Entity) []string {
	if len(p.held) == 0 {
		return nil
	}
	var ks []string
	for _, e := range came {
		if k := p4rt.Key(e); p.held[k] != nil {
			ks = append(ks, k)
		}
	}
	return ks
}

// compile returns the compile of the latest view, from the cache when the
// view has not changed (nil when there is no view yet), and the latest
// compile without error.
func (p *Programmer) compile() (latest, good *compiled) {
	p.mu.Lock()
	v, missing, gen, c, good, ch := p.view, p.missing, p.gen, p.compiled, p.good, p.change
	p.change = ViewChange{}
	p.mu.Unlock()
	if v == nil {
		return nil, nil
	}
	if c != nil && c.gen == gen {
		return c, good
	}
	c = &compiled{gen: gen, missing: missing}
	inc := p.compiler.inc.incremental
	c.warnings, c.err = p.compiler.CompileChange(v, ch)
	c.delta = p.compiler.Delta()
	incremental := p.compiler.inc.incremental != inc
	for i, w := range c.warnings {
		if i == maxLoggedWarnings {
			p.log.Warn("more compile warnings", "generation", gen, "count", len(c.warnings)-i)
			break
		}
		p.log.Warn("view item not programmed", "generation", gen, "warning", w)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.compiled = c
	if incremental {
		p.stats.IncrementalCompiles++
	} else {
		p.stats.Compiles++
	}
	if c.err != nil {
		p.log.Error("view does not compile; the switch keeps the last good view", "generation", gen, "err", c.err)
		p.stats.Errors++
		p.stats.LastError = c.err
		p.failed, p.failErr = gen, c.err
		p.notifyLocked()
		return c, p.good
	}
	c.delta = p.dem.filter(v, c.delta, p.compiler.Desired, !incremental)
	c.evict = p.dem.evicted
	p.stats.Demand = p.dem.st
	if err := p.budgetLocked(c.delta); err != nil {
		// The compiler has moved on to the refused view: its Desired is
		// that view, so nothing may be written until a view fits (see
		// pass), and then not as a delta from the refused one.
		c.err = err
		p.overBudget = true
		p.log.Error("view does not fit the pipeline's tables; the switch keeps the last view that did", "generation", gen, "err", err)
		p.stats.Errors++
		p.stats.LastError = err
		p.failed, p.failErr = gen, err
		p.notifyLocked()
		return c, p.good
	}
	if p.overBudget {
		p.overBudget, p.fullNext = false, true
	}
	p.good = c
	p.stats.Warnings = c.warnings
	// Counted from the delta, as the compile was: the same counts as
	// counting Desired, at the cost of the change.
	desired := maps.Clone(p.stats.Desired)
	if desired == nil {
		desired = map[string]int{}
	}
	for _, e := range c.delta.Gone {
		n := p.ownerName(e)
		if desired[n]--; desired[n] == 0 {
			delete(desired, n)
		}
	}
	for _, e := range c.delta.Came {
		desired[p.ownerName(e)]++
	}
	p.stats.Desired = desired
	return c, c
}

// budgetLocked counts d into the desired entries and members and checks
// them against the pipeline's sizes.
func (p *Programmer) budgetLocked(d Delta) error {
	count := func(e *p4v1.Entity, n int) {
		switch x := e.GetEntity().(type) {
		case *p4v1.Entity_TableEntry:
			if x.TableEntry.GetIsDefaultAction() {
				return
			}
			if t, err := p.schema.TableByID(x.TableEntry.GetTableId()); err == nil {
				p.entries[t.Name()] += n
			}
		case *p4v1.Entity_ActionProfileMember:
			if a, err := p.schema.ActionProfileByID(x.ActionProfileMember.GetActionProfileId()); err == nil {
				p.members[a.Name()] += n
			}
		}
	}
	for _, e := range d.Gone {
		count(e, -1)
	}
	for _, e := range d.Came {
		count(e, 1)
	}
	if err := p.caps.CheckBudget(p.entries, p.members); err != nil {
		return fmt.Errorf("%w: %w", ErrBadView, err)
	}
	return nil
}

// fail records a failure of a pass.
func (p *Programmer) fail(err error) error {
	p.mu.Lock()
	p.stats.Errors++
	p.stats.LastError = err
	p.mu.Unlock()
	return err
}

// count adds a reconcile's writes (also those of a failed one: they were
// attempted) to the stats. p.mu held.
func (p *Programmer) count(res p4rt.Result) {
	if res.Empty() {
		return
	}
	if p.stats.TotalChanges == nil {
		p.stats.TotalChanges = map[string]p4rt.Change{}
	}
	p.stats.LastChanges = map[string]p4rt.Change{}
	for n, c := range res.Changes {
		if short, ok := p.tableIDs[n]; ok {
			n = short
		}
		p.stats.LastChanges[n] = c
		t := p.stats.TotalChanges[n]
		t.Inserted += c.Inserted
		t.Modified += c.Modified
		t.Deleted += c.Deleted
		p.stats.TotalChanges[n] = t
	}
}

// ownerName is the short name of an entity's table or profile.
func (p *Programmer) ownerName(e *p4v1.Entity) string {
	var full string
	switch x := e.Entity.(type) {
	case *p4v1.Entity_TableEntry:
		if t, err := p.schema.TableByID(x.TableEntry.GetTableId()); err == nil {
			full = t.Name()
		}
	case *p4v1.Entity_ActionProfileMember:
		if a, err := p.schema.ActionProfileByID(x.ActionProfileMember.GetActionProfileId()); err == nil {
			full = a.Name()
		}
	case *p4v1.Entity_ActionProfileGroup:
		if a, err := p.schema.ActionProfileByID(x.ActionProfileGroup.GetActionProfileId()); err == nil {
			full = a.Name()
		}
	}
	if short, ok := p.tableIDs[full]; ok {
		return short
	}
	return full
}

// notifyLocked wakes WaitConverged callers. p.mu held.
func (p *Programmer) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Stats returns a snapshot of the programmer's counters.
func (p *Programmer) Stats() ProgrammerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.LastChanges = maps.Clone(s.LastChanges)
	s.TotalChanges = maps.Clone(s.TotalChanges)
	s.Desired = maps.Clone(s.Desired)
	s.Warnings = slices.Clone(s.Warnings)
	s.Missing = slices.Clone(s.Missing)
	s.PeerPackets = maps.Clone(s.PeerPackets)
	return s
}

// WaitConverged blocks until the switch holds the latest view handed to
// Update before the call (or a newer one), and returns nil; or returns the
// compile error of such a view, or ctx's error. With no view yet it returns
// nil at once. It is for tests and for callers that must know a change is in
// the data plane before they report it done.
func (p *Programmer) WaitConverged(ctx context.Context) error {
	p.mu.Lock()
	target := p.gen
	p.mu.Unlock()
	for {
		p.mu.Lock()
		applied, failed, failErr, ch := p.stats.Applied, p.failed, p.failErr, p.changed
		p.mu.Unlock()
		switch {
		case applied >= target:
			return nil
		case failed >= target:
			return failErr
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("ohc: waiting for generation %d (applied %d): %w", target, applied, ctx.Err())
		}
	}
}

// pacer lets burst passes start back to back and then one per ivl: a
// token bucket of burst tokens refilled one per ivl, kept as the time the
// bucket is full again (tat, the generic cell rate algorithm's
// theoretical arrival time). With burst 1 it is a plain minimum interval
// between starts.
type pacer struct {
	ivl   time.Duration
	burst int
	tat   time.Time
}

// wait is how long a pass that wants to start at now must wait.
func (p *pacer) wait(now time.Time) time.Duration {
	return max(p.tat.Add(-time.Duration(p.burst-1)*p.ivl).Sub(now), 0)
}

// start records a pass started at now.
func (p *pacer) start(now time.Time) {
	if p.tat.Before(now) {
		p.tat = now
	}
	p.tat = p.tat.Add(p.ivl)
}
