package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/demo"
	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

// A restart of a controller or an OHC is hitless: the switches keep
// forwarding with what they hold, and nothing tells them to let go of it.
// The tests measure both instead of tolerating a little of either: a ping
// every pingEvery across each restart must lose nothing, and every
// switch's write log must hold no DELETE and no pipeline commit that
// clears the tables for as long as the test runs.

const (
	// pings are sent every pingEvery across a restart: each must be
	// answered (within a second).
	pings     = 100
	pingEvery = 10 * time.Millisecond
	// pingLead is how long the pings run before the restart begins.
	pingLead = 200 * time.Millisecond
)

// writeLog is every switch's write log (dataplane.Options.OnWrite) and
// pipeline commits, as the mesh's switches apply them.
type writeLog struct {
	schema *p4rt.Schema

	// mu guards the fields below; switches write from their own
	// goroutines.
	mu sync.Mutex
	// writes are the updates applied, in order, as "host TYPE what".
	writes []string
	// flushes are the commits that replaced a switch's tables after its
	// first one: everything deleted at once.
	flushes []string
}

func newWriteLog(t *testing.T) *writeLog {
	t.Helper()
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	s, err := p4rt.NewSchema(info)
	if err != nil {
		t.Fatal(err)
	}
	return &writeLog{schema: s}
}

// hook is demo.Options.SwitchOptions: it logs what each switch the mesh
// starts (or restarts) is told.
func (l *writeLog) hook(host string, o *dataplane.Options) {
	o.OnWrite = func(u *p4v1.Update) {
		w := fmt.Sprintf("%s %v %s", host, u.GetType(), l.describe(u.GetEntity()))
		l.mu.Lock()
		l.writes = append(l.writes, w)
		l.mu.Unlock()
	}
	commits := 0 // of this switch: a restarted one starts empty anyway
	next := o.OnCommit
	o.OnCommit = func(st *dataplane.Store) {
		commits++
		if commits > 1 {
			l.mu.Lock()
			l.flushes = append(l.flushes, fmt.Sprintf("%s: pipeline commit %d cleared the tables", host, commits))
			l.mu.Unlock()
		}
		if next != nil {
			next(st)
		}
	}
}

// describe names an entity by table and match, for the failure message.
func (l *writeLog) describe(e *p4v1.Entity) string {
	te := e.GetTableEntry()
	if te == nil {
		return prototext.MarshalOptions{}.Format(e)
	}
	name := fmt.Sprint(te.GetTableId())
	if t, err := l.schema.TableByID(te.GetTableId()); err == nil {
		name = t.GetPreamble().GetAlias()
	}
	return name + " " + prototext.MarshalOptions{}.Format(&p4v1.TableEntry{Match: te.GetMatch(), Priority: te.GetPriority()})
}

// logMark is a position in the write log.
type logMark struct{ writes, flushes int }

func (l *writeLog) mark() logMark {
	l.mu.Lock()
	defer l.mu.Unlock()
	return logMark{len(l.writes), len(l.flushes)}
}

// noDeletes fails t if any switch was told to delete anything, or had its
// tables cleared, since m; and logs what else it was told.
func (l *writeLog) noDeletes(t *testing.T, since logMark, during string) {
	t.Helper()
	l.mu.Lock()
	writes, flushes := l.writes[since.writes:], l.flushes[since.flushes:]
	var deletes []string
	for _, w := range writes {
		if strings.Contains(w, " DELETE ") {
			deletes = append(deletes, w)
		}
	}
	l.mu.Unlock()
	if len(deletes)+len(flushes) > 0 {
		t.Errorf("%s, switches were told to let go of entries (%d deletes, %d flushes):\n%s",
			during, len(deletes), len(flushes), strings.Join(append(flushes, deletes...), "\n"))
		return
	}
	t.Logf("%s: %d writes to the switches, none a DELETE or a flush", during, len(writes))
}

// watchDeletes checks at the end of t, failed or not, that no switch was
// told to delete anything from now on: a watch as long as the test.
func (l *writeLog) watchDeletes(t *testing.T, during string) {
	t.Helper()
	mark := l.mark()
	t.Cleanup(func() { l.noDeletes(t, mark, during) })
}

// startMemMeshLogged runs the demo on in-memory ports with every switch's
// writes logged.
func startMemMeshLogged(t *testing.T) (*demo.Mesh, *demo.Topology, *writeLog) {
	t.Helper()
	log := newWriteLog(t)
	topo := demo.DemoTopology([2]string{"", ""})
	f := demo.NewMemFabric(topo)
	t.Cleanup(func() { f.Close() })
	m, err := demo.Start(t.Context(), demo.Options{Fabric: f, DataDir: t.TempDir(), Logger: logger(t), SwitchOptions: log.hook})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, topo, log
}

// acrossRestart pings dst from vm, pings requests every pingEvery, and
// runs restart pingLead after the first: every request must be answered.
// restart returns once the restart is over (the restarted party serving
// and the switches reconciled with it), which must be before the last
// request left, or the pings did not measure all of it.
func acrossRestart(t *testing.T, m *demo.Mesh, vm, dst, what string, restart func()) demo.PingRun {
	t.Helper()
	type result struct {
		run demo.PingRun
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		run, err := m.PingEvery(t.Context(), vm, netip.MustParseAddr(dst), pings, pingEvery)
		done <- result{run, err}
	}()
	time.Sleep(pingLead)
	restart()
	took := time.Since(start) - pingLead
	r := <-done
	if r.err != nil {
		t.Fatalf("ping %s -> %s across %s: %v", vm, dst, what, r.err)
	}
	if r.run.Received != pings || r.run.Sent != pings {
		t.Errorf("ping %s -> %s across %s: %v; want every one of %d answered", vm, dst, what, r.run, pings)
	}
	if window := time.Duration(pings) * pingEvery; pingLead+took > window {
		t.Errorf("%s took %v: the pings (%v from %v before it) ended before it did", what, took.Round(time.Millisecond), window, pingLead)
	}
	t.Logf("%s (%v): %v", what, took.Round(time.Millisecond), r.run)
	return r.run
}

// subscribers is how many watch streams controller ctl serves.
func subscribers(m *demo.Mesh, ctl string) int { return m.Controllers[ctl].Stats().Subscribers }

// steadySubscribers waits until ctl's subscriber count holds still for a
// moment (streams of a party that stopped close a little after it) and
// returns it.
func steadySubscribers(t *testing.T, m *demo.Mesh, ctl string) int {
	t.Helper()
	n, since := subscribers(m, ctl), time.Now()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if c := subscribers(m, ctl); c != n {
			n, since = c, time.Now()
		}
		if time.Since(since) >= 200*time.Millisecond {
			return n
		}
	}
	t.Fatalf("%s's subscribers never held still (last %d)", ctl, n)
	return 0
}

// resynced waits until controller ctl serves want streams again (every
// OHC and peer controller back on it) and then every host's OHC has
// programmed the latest view it has and stays idle for a moment: the end
// of a restart of ctl. A controller that comes back serving fewer streams
// has changed what it serves: that is reported, and the wait goes on to
// the OHCs, so that what they then do to the switches is seen too.
func resynced(t *testing.T, m *demo.Mesh, ctl string, want int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for subscribers(m, ctl) < want {
		if time.Now().After(deadline) {
			t.Errorf("%s serves %d streams 3s after its restart; want the %d it served before", ctl, subscribers(m, ctl), want)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	var hosts []string
	for _, h := range m.Topology.Hosts {
		hosts = append(hosts, h.ID)
	}
	ohcsIdle(t, m, hosts...)
}

// ohcsIdle waits until each host's OHC runs, has programmed a view, and
// has programmed the latest one it has, all with nothing new for
// ohcQuiet: the agent hands over a view a few milliseconds after a
// stream syncs, so a restarted party's state is on the switches by then.
func ohcsIdle(t *testing.T, m *demo.Mesh, hosts ...string) {
	t.Helper()
	const ohcQuiet = 100 * time.Millisecond
	type state struct {
		prog         *ohc.Programmer
		gen, applied uint64
	}
	last := map[string]state{}
	since := time.Now()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, h := range hosts {
			prog, _ := m.OHC(h)
			now := state{prog: prog}
			if prog != nil {
				st := prog.Stats()
				now.gen, now.applied = st.Generation, st.Applied
			}
			if now != last[h] || now.prog == nil || now.applied == 0 || now.applied != now.gen {
				last[h], since = now, time.Now()
			}
		}
		if time.Since(since) >= ohcQuiet {
			return
		}
	}
	t.Fatalf("the OHCs did not settle: %+v", last)
}
