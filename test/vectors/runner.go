package vectors

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/p4rt"
)

// PortIO is the far side of one switch port: where the runner puts frames
// in and reads what the switch sent. A veth peer through AF_PACKET, or an
// in-memory port.
type PortIO interface {
	Send(frame []byte) error
	// Frames delivers every frame the switch sent out of the port.
	Frames() <-chan []byte
}

// Target is a P4Runtime switch under test, reached through a primary client.
// Run plays one case at a time on it.
type Target struct {
	Client       *p4rt.Client
	P4Info       *p4configv1.P4Info
	DeviceConfig []byte
	Ports        map[uint16]PortIO
	// Settle is how long the runner waits, after a step's expected
	// output (or at once for a drop), for output the step should not
	// give; 0 means 150ms. Output that comes after it is still seen: it
	// fails the step it belongs to as late (see Run).
	Settle time.Duration
	// Timeout bounds the wait for an expected frame; 0 means 3s.
	Timeout time.Duration
	// Tail is how long the runner keeps watching after a case's last
	// step, for output that comes late; 0 means Settle.
	Tail time.Duration

	// last is the last case Run played, for output that comes after it
	// ended.
	last string
}

// Run plays one case against t: a pipeline push that clears the switch, the
// case's updates, then every step. The error lists every step that did not
// give what the vector expects.
//
// Nothing that comes out of the switch is thrown away. Output a step
// expects counts if it comes within the step's window (until Settle after
// the expected output, or Timeout); anything else fails a step. Output
// that comes after a step's window but before the next step is sent is
// that step's, late; a frame in a later step's window that step does not
// expect but an earlier one did is the earlier step's, late; other
// output in a step's window is that step's, unexpected. After the last
// step the runner watches for Tail; what comes after that is reported by
// the next Run on t, as late output of this case's last step.
func Run(ctx context.Context, t *Target, c *Case) error {
	schema, err := p4rt.NewSchema(t.P4Info)
	if err != nil {
		return err
	}
	for _, p := range c.Ports() {
		if _, ok := t.Ports[p]; !ok {
			return fmt.Errorf("%s: port %d has no interface (give --port %d=IFNAME)", c.Name, p, p)
		}
	}
	// Cookie 0 always pushes: VERIFY_AND_COMMIT is how the runner clears
	// the switch between cases.
	if _, err := t.Client.SetPipeline(ctx, t.P4Info, t.DeviceConfig, 0, p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT); err != nil {
		return fmt.Errorf("%s: push pipeline: %w", c.Name, err)
	}
	updates := slices.Clone(c.UpdateMessages())
	for _, name := range c.Digests {
		d, err := schema.DigestEntry(name, &p4v1.DigestEntry_Config{MaxTimeoutNs: 0, MaxListSize: 1, AckTimeoutNs: int64(time.Second)})
		if err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		u, _ := p4rt.Update(p4v1.Update_INSERT, d)
		updates = append(updates, u)
	}
	if err := t.Client.Write(ctx, updates); err != nil {
		return fmt.Errorf("%s: program: %w", c.Name, err)
	}
	r := &run{t: t, schema: schema, settle: t.Settle, timeout: t.Timeout, tail: t.Tail, inbox: newInbox()}
	if r.settle == 0 {
		r.settle = 150 * time.Millisecond
	}
	if r.timeout == 0 {
		r.timeout = 3 * time.Second
	}
	if r.tail == 0 {
		r.tail = r.settle
	}
	fctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	r.listen(fctx, &wg)
	stopped := false
	stopListening := func() []event {
		if !stopped {
			stop()
			wg.Wait()
			stopped = true
		}
		return r.inbox.take()
	}
	defer stopListening()

	// Output before the first step is an earlier case's, come after its
	// tail: it fails this case, since that one has ended.
	before := r.wait(ctx, r.settle)
	results := make([]stepResult, len(c.Steps))
	for i, s := range c.Steps {
		res := &results[i]
		res.sent = time.Now()
		if err := r.send(ctx, s); err != nil {
			res.err = err
			res.closed = time.Now()
			continue
		}
		want := len(s.Out) + len(s.Digests)
		if s.PacketIn != nil {
			want++
		}
		for _, e := range r.collect(ctx, res.sent, want) {
			switch {
			case !e.at.Before(res.sent):
				res.got = append(res.got, e)
			case i == 0:
				before = append(before, e)
			default:
				// Came between the previous step's window and this
				// step: the previous step's, late.
				results[i-1].late = append(results[i-1].late, late{event: e, after: e.at.Sub(results[i-1].closed), during: "before step " + strconv.Itoa(i) + " was sent"})
			}
		}
		res.closed = time.Now()
	}
	prev := t.last
	if n := len(results); n > 0 {
		last := &results[n-1]
		tail := r.wait(ctx, r.tail)
		// What the listeners hold as they stop came during the tail too.
		tail = append(tail, stopListening()...)
		for _, e := range tail {
			last.late = append(last.late, late{event: e, after: e.at.Sub(last.closed), during: "in the watch after the last step"})
		}
		t.last = c.Name
	}
	var errs []error
	if len(before) > 0 {
		from := "nothing was played on the target before"
		if prev != "" {
			from = "late output of case " + prev + ", which had ended"
		}
		errs = append(errs, fmt.Errorf("%s: %d outputs came before the first step (%s):\n%s", c.Name, len(before), from, eventLines(before)))
	}
	attributeLate(c.Steps, results)
	for i, s := range c.Steps {
		if err := results[i].check(s); err != nil {
			what := s.Comment
			if what == "" {
				what = "step"
			}
			errs = append(errs, fmt.Errorf("%s step %d (%s): %w", c.Name, i, what, err))
		}
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// event is one output of the switch as the runner received it: a frame on
// a port, a packet-in or a digest list.
type event struct {
	at       time.Time
	frame    *Frame
	packetIn *PacketIn
	digests  []Digest
}

func (e event) String() string {
	switch {
	case e.frame != nil:
		return fmt.Sprintf("frame on port %d: %s", e.frame.Port, e.frame.Hex)
	case e.packetIn != nil:
		return fmt.Sprintf("packet-in %+v", *e.packetIn)
	default:
		return fmt.Sprintf("digests %+v", e.digests)
	}
}

// eventLines lists events, one a line.
func eventLines(es []event) string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = "  " + e.String()
	}
	return strings.Join(lines, "\n")
}

// outputs is how many outputs a step may expect e counts for: each
// digest of a list, or one.
func (e event) outputs() int {
	if e.frame == nil && e.packetIn == nil {
		return len(e.digests)
	}
	return 1
}

// late is output that came after the window of the step it belongs to.
type late struct {
	event
	after  time.Duration // after the step's window closed
	during string        // when it came, for the reader
}

// stepResult is what one step sent and got.
type stepResult struct {
	sent, closed time.Time
	err          error   // the step could not be sent
	got          []event // came within the step's window
	late         []late
}

// attributeLate gives frames to the steps they belong to by content: a
// frame a step got in its window but did not expect, or that came after
// its window and is not its, goes to the nearest earlier step that
// expected it, as late output (the frame the switch sent for that step, or
// a copy of it, after its window). A step still missing the frame is
// preferred to one that got it already. Frames no step expected stay where
// they came.
func attributeLate(steps []Step, results []stepResult) {
	missing := make([][]Frame, len(steps))
	for i := range steps {
		missing[i], _ = matchFrames(steps[i].Out, frames(results[i].got))
	}
	expects := func(fs []Frame, f Frame) int {
		return slices.IndexFunc(fs, func(w Frame) bool { return sameFrame(w, f) })
	}
	// owner is the step, at most last, that f is late output of; -1 for
	// none.
	owner := func(last int, f Frame) int {
		for j := last; j >= 0; j-- {
			if m := expects(missing[j], f); m >= 0 {
				missing[j] = slices.Delete(missing[j], m, m+1)
				return j
			}
		}
		for j := last; j >= 0; j-- {
			if expects(steps[j].Out, f) >= 0 {
				return j
			}
		}
		return -1
	}
	moveTo := func(j int, ev event, during string) {
		results[j].late = append(results[j].late, late{event: ev, after: ev.at.Sub(results[j].closed), during: during})
	}
	for k := range results {
		_, extra := matchFrames(steps[k].Out, frames(results[k].got))
		for _, f := range extra {
			j := owner(k-1, f)
			if j < 0 {
				continue
			}
			e := slices.IndexFunc(results[k].got, func(e event) bool { return e.frame != nil && *e.frame == f })
			ev := results[k].got[e]
			results[k].got = slices.Delete(results[k].got, e, e+1)
			moveTo(j, ev, "in step "+strconv.Itoa(k)+"'s window")
		}
		// Late by time: step k's if it is one of its frames, else an
		// earlier step's it is.
		kept := results[k].late[:0]
		for _, l := range slices.Clone(results[k].late) {
			if l.frame == nil {
				kept = append(kept, l)
				continue
			}
			if j := owner(k, *l.frame); j >= 0 && j != k {
				moveTo(j, l.event, l.during)
				continue
			}
			kept = append(kept, l)
		}
		results[k].late = kept
	}
}

func frames(es []event) []Frame {
	var out []Frame
	for _, e := range es {
		if e.frame != nil {
			out = append(out, *e.frame)
		}
	}
	return out
}

func sameFrame(want, got Frame) bool {
	return want.Port == got.Port && strings.EqualFold(strings.ReplaceAll(want.Hex, " ", ""), got.Hex)
}

// matchFrames pairs wanted frames with identical frames got, and returns
// the ones left on each side.
func matchFrames(want, got []Frame) (missing, extra []Frame) {
	missing = slices.Clone(want)
	for _, f := range got {
		if i := slices.IndexFunc(missing, func(w Frame) bool { return sameFrame(w, f) }); i >= 0 {
			missing = slices.Delete(missing, i, i+1)
			continue
		}
		extra = append(extra, f)
	}
	return missing, extra
}

// check compares what the step got in its window with the vector, and
// fails it for anything that came late.
func (res *stepResult) check(s Step) error {
	if res.err != nil {
		return res.err
	}
	var o observed
	for _, e := range res.got {
		switch {
		case e.frame != nil:
			o.frames = append(o.frames, *e.frame)
		case e.packetIn != nil:
			o.packetIn = append(o.packetIn, *e.packetIn)
		default:
			o.digests = append(o.digests, e.digests...)
		}
	}
	// An expected frame that did not come in the window but came late is
	// reported as late, not also as missing.
	missing, _ := matchFrames(s.Out, o.frames)
	s.Out = slices.Clone(s.Out)
	var lines []string
	for _, l := range res.late {
		if l.frame != nil {
			if i := slices.IndexFunc(missing, func(w Frame) bool { return sameFrame(w, *l.frame) }); i >= 0 {
				missing = slices.Delete(missing, i, i+1)
				i = slices.IndexFunc(s.Out, func(w Frame) bool { return sameFrame(w, *l.frame) })
				s.Out = slices.Delete(s.Out, i, i+1)
				lines = append(lines, fmt.Sprintf("late: the expected frame on port %d came %v after the step's window closed (%s)",
					l.frame.Port, l.after.Round(time.Microsecond), l.during))
				continue
			}
			if slices.ContainsFunc(s.Out, func(w Frame) bool { return sameFrame(w, *l.frame) }) {
				lines = append(lines, fmt.Sprintf("late: a second copy of the expected frame on port %d came %v after the step's window closed (%s)",
					l.frame.Port, l.after.Round(time.Microsecond), l.during))
				continue
			}
		}
		lines = append(lines, fmt.Sprintf("late: %s came %v after the step's window closed (%s)", l.event, l.after.Round(time.Microsecond), l.during))
	}
	err := compare(s, o)
	if err != nil && len(res.got) > 0 {
		// When each output came tells a late one of an earlier step
		// (in this step's window, unexpected) from this step's own.
		lines = append(lines, "came in the step's window:")
		for _, e := range res.got {
			lines = append(lines, fmt.Sprintf("  +%v %s", e.at.Sub(res.sent).Round(time.Microsecond), e))
		}
	}
	if len(lines) == 0 {
		return err
	}
	if err != nil {
		lines = append([]string{err.Error()}, lines...)
	}
	return errors.New(strings.Join(lines, "\n"))
}

type run struct {
	t                     *Target
	schema                *p4rt.Schema
	settle, timeout, tail time.Duration
	// inbox gathers every output of the switch, time-stamped as it
	// comes, for the whole case.
	inbox *inbox
}

// inbox is an unbounded queue of events: the listeners never block on it
// and never drop, so no output is lost between steps or at the end.
type inbox struct {
	mu  sync.Mutex
	evs []event
	// ready has a value when evs may be non-empty.
	ready chan struct{}
}

func newInbox() *inbox { return &inbox{ready: make(chan struct{}, 1)} }

func (b *inbox) put(e event) {
	b.mu.Lock()
	b.evs = append(b.evs, e)
	b.mu.Unlock()
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

func (b *inbox) take() []event {
	b.mu.Lock()
	defer b.mu.Unlock()
	evs := b.evs
	b.evs = nil
	return evs
}

// listen runs a listener per port and for packet-ins and digests until ctx
// ends, each putting what it receives in the inbox.
func (r *run) listen(ctx context.Context, wg *sync.WaitGroup) {
	for n, p := range r.t.Ports {
		wg.Go(func() {
			for {
				select {
				case f, ok := <-p.Frames():
					if !ok {
						return
					}
					r.inbox.put(event{at: time.Now(), frame: &Frame{Port: n, Hex: hex.EncodeToString(f)}})
				case <-ctx.Done():
					return
				}
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case pi, ok := <-r.t.Client.PacketIns():
				if !ok {
					return
				}
				at := time.Now()
				md, err := r.schema.PacketInMetadata(pi)
				port := uint16(md["ingress_port"])
				if err != nil {
					port = 0xffff
				}
				r.inbox.put(event{at: at, packetIn: &PacketIn{IngressPort: port, Hex: hex.EncodeToString(pi.GetPayload())}})
			case <-ctx.Done():
				return
			}
		}
	})
	wg.Go(func() {
		for {
			select {
			case d, ok := <-r.t.Client.Digests():
				if !ok {
					return
				}
				r.inbox.put(event{at: time.Now(), digests: r.digests(d)})
				r.t.Client.AckDigest(ctx, d)
			case <-ctx.Done():
				return
			}
		}
	})
}

// wait gathers what comes for d.
func (r *run) wait(ctx context.Context, d time.Duration) []event {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
	return r.inbox.take()
}

// observed is what came out of the switch for one step.
type observed struct {
	frames   []Frame
	packetIn []PacketIn
	digests  []Digest
}

func (r *run) send(ctx context.Context, s Step) error {
	switch {
	case s.In != nil:
		if err := r.t.Ports[s.In.Port].Send(s.In.Bytes()); err != nil {
			return fmt.Errorf("send on port %d: %w", s.In.Port, err)
		}
	case s.PacketOut != nil:
		po, err := r.schema.PacketOut(mustHex(s.PacketOut.Hex), p4rt.P("egress_port", p4rt.Uint(s.PacketOut.EgressPort)))
		if err != nil {
			return err
		}
		if err := r.t.Client.SendPacketOut(ctx, po); err != nil {
			return fmt.Errorf("packet-out: %w", err)
		}
	}
	return nil
}

// collect gathers events until want of them came at or after sent and
// then settle has passed, or the timeout; with want 0, for settle. Events
// from before sent are returned too, and do not count.
func (r *run) collect(ctx context.Context, sent time.Time, want int) []event {
	var evs []event
	timeout := time.NewTimer(r.timeout)
	defer timeout.Stop()
	settle := time.NewTimer(r.settle)
	defer settle.Stop()
	if want > 0 {
		settle.Stop()
	}
	n := 0
	for {
		if n >= want && want > 0 {
			settle.Reset(r.settle)
			want = 0
		}
		select {
		case <-ctx.Done():
			return append(evs, r.inbox.take()...)
		case <-timeout.C:
			return append(evs, r.inbox.take()...)
		case <-settle.C:
			return append(evs, r.inbox.take()...)
		case <-r.inbox.ready:
			for _, e := range r.inbox.take() {
				if !e.at.Before(sent) {
					n += e.outputs()
				}
				evs = append(evs, e)
			}
		}
	}
}

func (r *run) digests(d *p4v1.DigestList) []Digest {
	name := fmt.Sprintf("0x%08x", d.GetDigestId())
	if info, err := r.schema.DigestByID(d.GetDigestId()); err == nil {
		name = info.GetPreamble().GetName()
	}
	var out []Digest
	for _, data := range d.GetData() {
		dg := Digest{Name: name}
		for _, m := range data.GetStruct().GetMembers() {
			dg.Members = append(dg.Members, hex.EncodeToString(m.GetBitstring()))
		}
		out = append(out, dg)
	}
	return out
}

// compare checks what came out against the step's expectations, frames as
// multisets per port, and explains a mismatch byte by byte.
func compare(s Step, o observed) error {
	var errs []string
	want := slices.Clone(s.Out)
	for _, f := range o.frames {
		i := slices.IndexFunc(want, func(w Frame) bool { return sameFrame(w, f) })
		if i >= 0 {
			want = slices.Delete(want, i, i+1)
			continue
		}
		j := slices.IndexFunc(want, func(w Frame) bool { return w.Port == f.Port })
		if j >= 0 {
			errs = append(errs, fmt.Sprintf("port %d: frame differs from the vector:\n%s", f.Port, explain(want[j].Bytes(), mustHex(f.Hex))))
			want = slices.Delete(want, j, j+1)
			continue
		}
		errs = append(errs, fmt.Sprintf("unexpected frame on port %d: %s", f.Port, f.Hex))
	}
	for _, w := range want {
		errs = append(errs, fmt.Sprintf("no frame on port %d (want %s)", w.Port, w.Hex))
	}
	switch {
	case s.PacketIn == nil && len(o.packetIn) > 0:
		errs = append(errs, fmt.Sprintf("unexpected packet-in %+v", o.packetIn))
	case s.PacketIn != nil && len(o.packetIn) != 1:
		errs = append(errs, fmt.Sprintf("want one packet-in, got %d", len(o.packetIn)))
	case s.PacketIn != nil && (o.packetIn[0].IngressPort != s.PacketIn.IngressPort || !strings.EqualFold(o.packetIn[0].Hex, s.PacketIn.Hex)):
		errs = append(errs, fmt.Sprintf("packet-in %+v; want %+v", o.packetIn[0], *s.PacketIn))
	}
	if !slices.EqualFunc(o.digests, s.Digests, func(a, b Digest) bool { return a.Name == b.Name && slices.Equal(a.Members, b.Members) }) {
		errs = append(errs, fmt.Sprintf("digests %+v; want %+v", o.digests, s.Digests))
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

// explain shows where two frames first differ, with 16 bytes around it.
func explain(want, got []byte) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	lo := max(0, i-8)
	clip := func(b []byte) []byte { return b[lo:min(len(b), i+8)] }
	return fmt.Sprintf("  first difference at byte %d (want %d bytes, got %d)\n  want ...%x...\n  got  ...%x...\n  want %x\n  got  %x",
		i, len(want), len(got), clip(want), clip(got), want, got)
}
