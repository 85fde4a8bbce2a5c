package vectors

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
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
type Target struct {
	Client       *p4rt.Client
	P4Info       *p4configv1.P4Info
	DeviceConfig []byte
	Ports        map[uint16]PortIO
	// Settle is how long the runner waits for a frame that should not
	// come (a drop) or for one more than expected; 0 means 150ms.
	Settle time.Duration
	// Timeout bounds the wait for an expected frame; 0 means 3s.
	Timeout time.Duration
}

// Run plays one case against t: a pipeline push that clears the switch, the
// case's updates, then every step. The error lists every step that did not
// give what the vector expects.
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
	r := &run{t: t, schema: schema, settle: t.Settle, timeout: t.Timeout, frames: make(chan Frame, 256)}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	for n, p := range t.Ports {
		go func() {
			for {
				select {
				case f := <-p.Frames():
					select {
					case r.frames <- Frame{Port: n, Hex: hex.EncodeToString(f)}:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	if r.settle == 0 {
		r.settle = 150 * time.Millisecond
	}
	if r.timeout == 0 {
		r.timeout = 3 * time.Second
	}
	r.drain()
	var errs []error
	for i, s := range c.Steps {
		if err := r.step(ctx, s); err != nil {
			what := s.Comment
			if what == "" {
				what = "step"
			}
			errs = append(errs, fmt.Errorf("%s step %d (%s): %w", c.Name, i, what, err))
		}
	}
	return errors.Join(errs...)
}

type run struct {
	t               *Target
	schema          *p4rt.Schema
	settle, timeout time.Duration
	// frames merges every port's output for the whole case, so no frame
	// is lost between steps.
	frames chan Frame
}

// drain drops whatever is pending from an earlier case.
func (r *run) drain() {
	deadline := time.After(r.settle)
	for {
		select {
		case <-deadline:
			return
		case <-r.t.Client.PacketIns():
		case d := <-r.t.Client.Digests():
			r.t.Client.AckDigest(context.Background(), d)
		case <-r.frames:
		}
	}
}

// observed is what came out of the switch for one step.
type observed struct {
	frames   []Frame
	packetIn []PacketIn
	digests  []Digest
}

func (r *run) step(ctx context.Context, s Step) error {
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
	want := len(s.Out) + len(s.Digests)
	if s.PacketIn != nil {
		want++
	}
	got := r.collect(ctx, want)
	return compare(s, got)
}

// collect gathers frames, packet-ins and digests until want have come and
// then settle has passed with nothing more, or the timeout.
func (r *run) collect(ctx context.Context, want int) observed {
	var o observed
	timeout := time.NewTimer(r.timeout)
	defer timeout.Stop()
	settle := time.NewTimer(r.settle)
	defer settle.Stop()
	if want > 0 {
		settle.Stop()
	}
	for {
		n := len(o.frames) + len(o.packetIn) + len(o.digests)
		if n >= want && want > 0 {
			settle.Reset(r.settle)
			want = 0
		}
		select {
		case <-ctx.Done():
			return o
		case <-timeout.C:
			return o
		case <-settle.C:
			return o
		case pi := <-r.t.Client.PacketIns():
			md, err := r.schema.PacketInMetadata(pi)
			port := uint16(md["ingress_port"])
			if err != nil {
				port = 0xffff
			}
			o.packetIn = append(o.packetIn, PacketIn{IngressPort: port, Hex: hex.EncodeToString(pi.GetPayload())})
		case d := <-r.t.Client.Digests():
			o.digests = append(o.digests, r.digests(d)...)
			r.t.Client.AckDigest(ctx, d)
		case f := <-r.frames:
			o.frames = append(o.frames, f)
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
		i := slices.IndexFunc(want, func(w Frame) bool {
			return w.Port == f.Port && strings.EqualFold(strings.ReplaceAll(w.Hex, " ", ""), f.Hex)
		})
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
