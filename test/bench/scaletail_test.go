package bench

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"runtime/metrics"
	"runtime/trace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4rt"
	"github.com/p4mesh/p4mesh/store"
)

// What a slow change waits for (issue 14): the p99 of BenchmarkScale is
// one or two changes of a hundred, so averages and CPU profiles say
// little about it. The probes below timestamp each step of every change
// from the outside of the parts (a store.Backend wrapper, gRPC
// interceptors, runtime/metrics), so the harness measures the code as
// shipped, and -scale.breakdown prints the steps of the slowest changes
// and the percentiles of each step.
var (
	scaleBreakdown = flag.Int("scale.breakdown", 0, "BenchmarkScale: log the step-by-step timing of this many of the slowest changes (by last host), and each step's percentiles")
	scaleTrace     = flag.String("scale.trace", "", "BenchmarkScale: keep a runtime/trace flight recording of the slowest change (by last host) in this file")
)

// stamp is one event: when, and what.
type stamp struct {
	at   time.Time
	what string
}

// probeLog is a part's events, in time order.
type probeLog struct {
	mu sync.Mutex
	ev []stamp
}

func (l *probeLog) add(what string) { l.addAt(time.Now(), what) }

func (l *probeLog) addAt(at time.Time, what string) {
	l.mu.Lock()
	l.ev = append(l.ev, stamp{at, what})
	l.mu.Unlock()
}

// since is the events at or after t, and forgets the earlier ones.
func (l *probeLog) since(t time.Time) []stamp {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, _ := slices.BinarySearchFunc(l.ev, t, func(s stamp, t time.Time) int { return s.at.Compare(t) })
	l.ev = l.ev[i:]
	return slices.Clone(l.ev)
}

// first is the first event named what at or after t.
func first(ev []stamp, what string, t time.Time) (time.Time, bool) {
	for _, s := range ev {
		if s.what == what && !s.at.Before(t) {
			return s.at, true
		}
	}
	return time.Time{}, false
}

// timedBackend times a controller's store commits (the bbolt
// transaction, its fsyncs, and the wait in the group-commit queue).
type timedBackend struct {
	store.Backend
	log *probeLog
}

func (b timedBackend) Commit(ctx context.Context, ops []store.Op) (uint64, error) {
	b.log.add("commit-start")
	rev, err := b.Backend.Commit(ctx, ops)
	b.log.add("commit-end")
	return rev, err
}

// hostProbe records an OHC's traffic: messages from the controllers,
// and its Writes and Reads to its switch; and its programmer, whose
// counts tell whole compiles from incremental ones.
type hostProbe struct {
	log  probeLog
	prog atomic.Pointer[ohc.Programmer]
}

// ready is the OHC's ohc.RunDaemon callback.
func (p *hostProbe) ready(prog *ohc.Programmer, _ *p4rt.Client, _ *ohc.Agent) { p.prog.Store(prog) }

// wholeCompiles is how many views each sampled host's OHC has compiled
// whole (not incrementally) so far.
func (p *tailProbe) wholeCompiles() map[int]uint64 {
	m := map[int]uint64{}
	for h, hp := range p.hosts {
		if prog := hp.prog.Load(); prog != nil {
			m[h] = prog.Stats().Compiles
		}
	}
	return m
}

// controllerDial stamps every change an OHC receives from a controller
// ("recv"): PUT and DELETE events, not PROGRESS (which the streams of
// every table of a controller send as its revision moves, and would
// otherwise be taken for the change's arrival) nor SYNCED or RESET.
func (p *hostProbe) controllerDial() grpc.DialOption {
	return grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return s, err
		}
		return recvStamper{s, p}, nil
	})
}

type recvStamper struct {
	grpc.ClientStream
	p *hostProbe
}

func (s recvStamper) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if ev, ok := m.(*p4meshv1.Event); err == nil && ok && (ev.GetType() == p4meshv1.Event_PUT || ev.GetType() == p4meshv1.Event_DELETE) {
		s.p.log.add("recv")
	}
	return err
}

// switchDial stamps the OHC's Writes to its switch (start and answer) and
// its Reads (a resync's, or a full reconcile's, start and end).
func (p *hostProbe) switchDial() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if !strings.HasSuffix(method, "/Write") {
				return invoker(ctx, method, req, reply, cc, opts...)
			}
			p.log.add("write-start")
			err := invoker(ctx, method, req, reply, cc, opts...)
			p.log.add("write-end")
			return err
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			if !strings.HasSuffix(method, "/Read") {
				return streamer(ctx, desc, cc, method, opts...)
			}
			p.log.add("read-start")
			s, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				p.log.add("read-end")
				return s, err
			}
			return &readEnd{ClientStream: s, p: p}, nil
		}),
	}
}

type readEnd struct {
	grpc.ClientStream
	p    *hostProbe
	once sync.Once
}

func (s *readEnd) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		s.once.Do(func() { s.p.log.add("read-end") })
	}
	return err
}

// setStamper stamps a gNMI server's handling of each Set ("set-in" when
// the handler starts, "set-out" when it returns).
func setStamper(l *probeLog) grpc.ServerOption {
	return grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !strings.HasSuffix(info.FullMethod, "/Set") {
			return handler(ctx, req)
		}
		l.add("set-in")
		resp, err := handler(ctx, req)
		l.add("set-out")
		return resp, err
	})
}

// gcSample is the runtime's GC counters at one moment.
type gcSample struct {
	cycles  uint64
	pauses  float64 // seconds of stop-the-world for GC, estimated from the histogram
	assist  float64 // CPU seconds of mark assists (updated at each cycle's end)
	gcTotal float64 // CPU seconds of all GC work (likewise)
}

var gcMetrics = []metrics.Sample{
	{Name: "/gc/cycles/total:gc-cycles"},
	{Name: "/sched/pauses/total/gc:seconds"},
	{Name: "/cpu/classes/gc/mark/assist:cpu-seconds"},
	{Name: "/cpu/classes/gc/total:cpu-seconds"},
}

func readGC() gcSample {
	s := slices.Clone(gcMetrics)
	metrics.Read(s)
	var g gcSample
	if s[0].Value.Kind() == metrics.KindUint64 {
		g.cycles = s[0].Value.Uint64()
	}
	if s[1].Value.Kind() == metrics.KindFloat64Histogram {
		h := s[1].Value.Float64Histogram()
		for i, n := range h.Counts {
			lo, hi := h.Buckets[i], h.Buckets[i+1]
			if hi > 1e9 || hi < -1e9 {
				hi = lo
			}
			if lo < -1e9 {
				lo = hi
			}
			g.pauses += float64(n) * (lo + hi) / 2
		}
	}
	if s[2].Value.Kind() == metrics.KindFloat64 {
		g.assist = s[2].Value.Float64()
	}
	if s[3].Value.Kind() == metrics.KindFloat64 {
		g.gcTotal = s[3].Value.Float64()
	}
	return g
}

// tailProbe is every probe of one BenchmarkScale run.
type tailProbe struct {
	commits []*probeLog // per shard
	sets    []*probeLog // per shard
	hosts   map[int]*hostProbe
	rec     *trace.FlightRecorder
	worst   time.Duration
}

func newTailProbe(shards int) *tailProbe {
	p := &tailProbe{hosts: map[int]*hostProbe{}}
	for range shards {
		p.commits = append(p.commits, &probeLog{})
		p.sets = append(p.sets, &probeLog{})
	}
	return p
}

// startTrace starts the flight recorder if -scale.trace asks for one.
func (p *tailProbe) startTrace(tb testing.TB) {
	if *scaleTrace == "" {
		return
	}
	p.rec = trace.NewFlightRecorder(trace.FlightRecorderConfig{MinAge: 2 * time.Second, MaxBytes: 64 << 20})
	if err := p.rec.Start(); err != nil {
		tb.Fatal(err)
	}
}

// stopTrace ends the flight recorder.
func (p *tailProbe) stopTrace() {
	if p.rec != nil {
		p.rec.Stop()
	}
}

// breakdown is what one change spent where, each step measured from the
// Set's start.
type breakdown struct {
	id                   string
	set, last            time.Duration
	setIn, setOut        time.Duration // the gNMI handler's start and end
	commitStart, commit  time.Duration // the store commit's start and end
	lastHost             int
	recv, write, applied time.Duration // the last host: first message from a controller after the commit, the start of the switch Write that carried it, the switch applied it
	reads                []string      // hosts whose switch was being read (a resync) during the change
	whole                []string      // hosts whose OHC compiled its whole view during the change
	wholeLast            bool          // the last host among them
	gcCycles             uint64
	gcPause              time.Duration
	gcAssist, gcCPU      time.Duration
}

// observe collects change c's steps once it has reached every host; its
// Set went to shard, starting at start; g0 is the GC counters then.
// w0 is the whole compiles then.
func (p *tailProbe) observe(tb testing.TB, c change, shard int, start time.Time, g0 gcSample, w0 map[int]uint64, hostAt map[int]time.Time) breakdown {
	g1, w1 := readGC(), p.wholeCompiles()
	b := breakdown{id: c.id, set: c.accepted, last: c.last, lastHost: -1,
		gcCycles: g1.cycles - g0.cycles, gcPause: time.Duration((g1.pauses - g0.pauses) * 1e9),
		gcAssist: time.Duration((g1.assist - g0.assist) * 1e9), gcCPU: time.Duration((g1.gcTotal - g0.gcTotal) * 1e9)}
	rel := func(t time.Time, ok bool) time.Duration {
		if !ok {
			return -1
		}
		return t.Sub(start)
	}
	set := p.sets[shard].since(start)
	b.setIn = rel(first(set, "set-in", start))
	b.setOut = rel(first(set, "set-out", start))
	cm := p.commits[shard].since(start)
	b.commitStart = rel(first(cm, "commit-start", start))
	b.commit = rel(first(cm, "commit-end", start))
	var lastAt time.Time
	for h, at := range hostAt {
		if at.After(lastAt) {
			lastAt, b.lastHost = at, h
		}
	}
	for _, h := range slices.Sorted(maps.Keys(w1)) {
		if w1[h] > w0[h] {
			b.whole = append(b.whole, fmt.Sprintf("h%d", h))
			b.wholeLast = b.wholeLast || h == b.lastHost
		}
	}
	end := start.Add(c.last)
	for h, hp := range p.hosts {
		ev := hp.log.since(start.Add(-5 * time.Second))
		reading := false
		for _, s := range ev {
			switch {
			case s.what == "read-start" && !s.at.After(end):
				reading = true
			case s.what == "read-end" && s.at.Before(start):
				reading = false
			}
		}
		if reading {
			b.reads = append(b.reads, fmt.Sprintf("h%d", h))
		}
		if h != b.lastHost {
			continue
		}
		// The message that carried the endpoint came after the commit.
		after := start
		if b.commit > 0 {
			after = start.Add(b.commit)
		}
		b.recv = rel(first(ev, "recv", after))
		// The Write that carried it: the last one started before the
		// switch applied it.
		b.write = -1
		for _, s := range ev {
			if s.what == "write-start" && !s.at.After(lastAt) {
				b.write = s.at.Sub(start)
			}
		}
		b.applied = c.last
	}
	if p.rec != nil && c.last > p.worst {
		p.worst = c.last
		f, err := os.Create(*scaleTrace)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := p.rec.WriteTo(f); err != nil {
			tb.Logf("flight recorder: %v", err)
		}
		f.Close()
	}
	return b
}

func ms(d time.Duration) string {
	if d < 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000)
}

func (b breakdown) String() string {
	return fmt.Sprintf("%s: set %s ms (handler %s–%s, commit %s–%s) | last h%d %s ms: recv %s, write %s, applied %s | gc %d cycles, pause %s ms, assist %s ms, gc cpu %s ms | resync reads on %v | whole compiles on %v",
		b.id, ms(b.set), ms(b.setIn), ms(b.setOut), ms(b.commitStart), ms(b.commit), b.lastHost, ms(b.last), ms(b.recv), ms(b.write), ms(b.applied),
		b.gcCycles, ms(b.gcPause), ms(b.gcAssist), ms(b.gcCPU), b.reads, b.whole)
}

// report logs the slowest changes' steps and each step's percentiles.
func reportBreakdown(tb testing.TB, bs []breakdown, n int) {
	if n <= 0 || len(bs) == 0 {
		return
	}
	byLast := slices.Clone(bs)
	slices.SortFunc(byLast, func(a, b breakdown) int { return int(b.last - a.last) })
	var lines []string
	for _, b := range byLast[:min(n, len(byLast))] {
		lines = append(lines, b.String())
	}
	step := func(name string, f func(breakdown) time.Duration) {
		var ds []time.Duration
		for _, b := range bs {
			if d := f(b); d >= 0 {
				ds = append(ds, d)
			}
		}
		lines = append(lines, fmt.Sprintf("%-28s p50 %7.1f  p90 %7.1f  p99 %7.1f  max %7.1f ms (%d)", name, pct(ds, 50), pct(ds, 90), pct(ds, 99), pct(ds, 100), len(ds)))
	}
	diff := func(a, b func(breakdown) time.Duration) func(breakdown) time.Duration {
		return func(x breakdown) time.Duration {
			if a(x) < 0 || b(x) < 0 {
				return -1
			}
			return a(x) - b(x)
		}
	}
	f := func(get func(breakdown) time.Duration) func(breakdown) time.Duration { return get }
	setIn, setOut := f(func(b breakdown) time.Duration { return b.setIn }), f(func(b breakdown) time.Duration { return b.setOut })
	cs, ce := f(func(b breakdown) time.Duration { return b.commitStart }), f(func(b breakdown) time.Duration { return b.commit })
	recv, write := f(func(b breakdown) time.Duration { return b.recv }), f(func(b breakdown) time.Duration { return b.write })
	set, last := f(func(b breakdown) time.Duration { return b.set }), f(func(b breakdown) time.Duration { return b.last })
	step("set (client)", set)
	step("  client→handler", setIn)
	step("  handler→commit start", diff(cs, setIn))
	step("  commit (store)", diff(ce, cs))
	step("  commit→handler end", diff(setOut, ce))
	step("  handler end→client", diff(set, setOut))
	step("last host", last)
	step("  commit→OHC recv", diff(recv, ce))
	step("  recv→write start", diff(write, recv))
	step("  write start→applied", diff(last, write))
	step("gc pause in change", f(func(b breakdown) time.Duration { return b.gcPause }))
	lines = append(lines, fmt.Sprintf("changes with a GC cycle ending in them: %d of %d; with a resync read on some host: %d",
		count(bs, func(b breakdown) bool { return b.gcCycles > 0 }), len(bs), count(bs, func(b breakdown) bool { return len(b.reads) > 0 })))
	lines = append(lines, fmt.Sprintf("changes with a whole compile on some host: %d; on their last host: %d",
		count(bs, func(b breakdown) bool { return len(b.whole) > 0 }), count(bs, func(b breakdown) bool { return b.wholeLast })))
	// Not tb.Logf: a benchmark's log is cut short.
	fmt.Fprintf(os.Stderr, "%s: slowest changes and steps (ms from the Set's start):\n%s\n", tb.Name(), strings.Join(lines, "\n"))
}

func count[T any](s []T, f func(T) bool) int {
	n := 0
	for _, x := range s {
		if f(x) {
			n++
		}
	}
	return n
}
