package dataplane

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	"google.golang.org/protobuf/proto"
)

// maxDiffs bounds how many differences Compatible lists: enough to fix a
// build, short enough for a status message.
const maxDiffs = 8

// Compatible reports whether got describes the same pipeline as want, the
// P4Info the switch implements: the same tables, actions, match fields,
// parameters, action profiles, counters, digests and controller headers,
// with the same IDs, names, widths and kinds. Documentation, annotations and
// source locations are ignored, since they change nothing a controller can
// do. The error lists what differs, from got's side ("... is 8 bits, the
// pipeline has 9").
func Compatible(want, got *p4configv1.P4Info) error {
	c := &differ{}
	c.tables(want.GetTables(), got.GetTables())
	c.actions(want.GetActions(), got.GetActions())
	c.profiles(want.GetActionProfiles(), got.GetActionProfiles())
	c.objects("direct counter", ids(want.GetDirectCounters()), ids(got.GetDirectCounters()), func(w, g *p4configv1.DirectCounter, name string) {
		c.eq(name, "unit", g.GetSpec().GetUnit(), w.GetSpec().GetUnit())
		c.eq(name, "table id", g.GetDirectTableId(), w.GetDirectTableId())
	})
	c.objects("counter", ids(want.GetCounters()), ids(got.GetCounters()), func(w, g *p4configv1.Counter, name string) {
		c.eq(name, "unit", g.GetSpec().GetUnit(), w.GetSpec().GetUnit())
		c.eq(name, "size", g.GetSize(), w.GetSize())
	})
	c.objects("meter", ids(want.GetMeters()), ids(got.GetMeters()), func(w, g *p4configv1.Meter, name string) {
		c.eq(name, "size", g.GetSize(), w.GetSize())
	})
	c.objects("direct meter", ids(want.GetDirectMeters()), ids(got.GetDirectMeters()), func(w, g *p4configv1.DirectMeter, name string) {
		c.eq(name, "table id", g.GetDirectTableId(), w.GetDirectTableId())
	})
	c.objects("register", ids(want.GetRegisters()), ids(got.GetRegisters()), func(w, g *p4configv1.Register, name string) {
		c.eq(name, "size", g.GetSize(), w.GetSize())
		if !proto.Equal(w.GetTypeSpec(), g.GetTypeSpec()) {
			c.add("%s: type differs from the pipeline's", name)
		}
	})
	c.objects("digest", ids(want.GetDigests()), ids(got.GetDigests()), func(w, g *p4configv1.Digest, name string) {
		if !proto.Equal(w.GetTypeSpec(), g.GetTypeSpec()) {
			c.add("%s: type differs from the pipeline's", name)
		}
	})
	c.objects("controller header", ids(want.GetControllerPacketMetadata()), ids(got.GetControllerPacketMetadata()), func(w, g *p4configv1.ControllerPacketMetadata, name string) {
		wf, gf := map[uint32]*p4configv1.ControllerPacketMetadata_Metadata{}, map[uint32]*p4configv1.ControllerPacketMetadata_Metadata{}
		for _, f := range w.GetMetadata() {
			wf[f.GetId()] = f
		}
		for _, f := range g.GetMetadata() {
			gf[f.GetId()] = f
		}
		for _, id := range unionKeys(wf, gf) {
			wm, gm := wf[id], gf[id]
			switch {
			case wm == nil:
				c.add("%s: metadata %s (id %d) is not in the pipeline", name, gm.GetName(), id)
			case gm == nil:
				c.add("%s: metadata %s (id %d) is missing", name, wm.GetName(), id)
			default:
				c.eq(name+": metadata "+gm.GetName(), "name", gm.GetName(), wm.GetName())
				c.bits(name+": metadata "+gm.GetName(), gm.GetBitwidth(), wm.GetBitwidth())
			}
		}
	})
	if len(c.diffs) == 0 {
		return nil
	}
	if c.more > 0 {
		c.diffs = append(c.diffs, fmt.Sprintf("and %d more", c.more))
	}
	return errors.New(strings.Join(c.diffs, "; "))
}

type differ struct {
	diffs []string
	more  int
}

func (c *differ) add(format string, a ...any) {
	if len(c.diffs) >= maxDiffs {
		c.more++
		return
	}
	c.diffs = append(c.diffs, fmt.Sprintf(format, a...))
}

func (c *differ) eq(name, what string, got, want any) {
	if got != want {
		c.add("%s: %s is %v, the pipeline has %v", name, what, got, want)
	}
}

func (c *differ) bits(name string, got, want int32) {
	if got != want {
		c.add("%s is %d bits, the pipeline has %d", name, got, want)
	}
}

// preambled is any P4Info object with a preamble.
type preambled interface {
	GetPreamble() *p4configv1.Preamble
}

func ids[T preambled](xs []T) map[uint32]T {
	m := make(map[uint32]T, len(xs))
	for _, x := range xs {
		m[x.GetPreamble().GetId()] = x
	}
	return m
}

func unionKeys[V any](a, b map[uint32]V) []uint32 {
	var ks []uint32
	for k := range a {
		ks = append(ks, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	return ks
}

// objects compares two sets of objects of one kind by ID: missing, extra,
// renamed, then what same compares.
func objects[T preambled](c *differ, kind string, want, got map[uint32]T, same func(w, g T, name string)) {
	for _, id := range unionKeys(want, got) {
		w, wok := want[id]
		g, gok := got[id]
		switch {
		case !wok:
			c.add("%s %s (id 0x%08x) is not in the pipeline", kind, g.GetPreamble().GetName(), id)
		case !gok:
			c.add("%s %s (id 0x%08x) is missing", kind, w.GetPreamble().GetName(), id)
		default:
			name := kind + " " + g.GetPreamble().GetName()
			c.eq(name, "name", g.GetPreamble().GetName(), w.GetPreamble().GetName())
			if same != nil {
				same(w, g, name)
			}
		}
	}
}

func (c *differ) objects(kind string, want, got any, same any) {
	switch w := want.(type) {
	case map[uint32]*p4configv1.DirectCounter:
		objects(c, kind, w, got.(map[uint32]*p4configv1.DirectCounter), same.(func(w, g *p4configv1.DirectCounter, name string)))
	case map[uint32]*p4configv1.Counter:
		objects(c, kind, w, got.(map[uint32]*p4configv1.Counter), same.(func(w, g *p4configv1.Counter, name string)))
	case map[uint32]*p4configv1.Meter:
		objects(c, kind, w, got.(map[uint32]*p4configv1.Meter), same.(func(w, g *p4configv1.Meter, name string)))
	case map[uint32]*p4configv1.DirectMeter:
		objects(c, kind, w, got.(map[uint32]*p4configv1.DirectMeter), same.(func(w, g *p4configv1.DirectMeter, name string)))
	case map[uint32]*p4configv1.Register:
		objects(c, kind, w, got.(map[uint32]*p4configv1.Register), same.(func(w, g *p4configv1.Register, name string)))
	case map[uint32]*p4configv1.Digest:
		objects(c, kind, w, got.(map[uint32]*p4configv1.Digest), same.(func(w, g *p4configv1.Digest, name string)))
	case map[uint32]*p4configv1.ControllerPacketMetadata:
		objects(c, kind, w, got.(map[uint32]*p4configv1.ControllerPacketMetadata), same.(func(w, g *p4configv1.ControllerPacketMetadata, name string)))
	default:
		panic(fmt.Sprintf("differ.objects: %T", want))
	}
}

func (c *differ) tables(want, got []*p4configv1.Table) {
	objects(c, "table", ids(want), ids(got), func(w, g *p4configv1.Table, name string) {
		wf, gf := map[uint32]*p4configv1.MatchField{}, map[uint32]*p4configv1.MatchField{}
		for _, f := range w.GetMatchFields() {
			wf[f.GetId()] = f
		}
		for _, f := range g.GetMatchFields() {
			gf[f.GetId()] = f
		}
		for _, id := range unionKeys(wf, gf) {
			wm, gm := wf[id], gf[id]
			switch {
			case wm == nil:
				c.add("%s: match field %s (id %d) is not in the pipeline", name, gm.GetName(), id)
			case gm == nil:
				c.add("%s: match field %s (id %d) is missing", name, wm.GetName(), id)
			default:
				fn := name + ": match field " + gm.GetName()
				c.eq(fn, "name", gm.GetName(), wm.GetName())
				c.bits(fn, gm.GetBitwidth(), wm.GetBitwidth())
				c.eq(fn, "match kind", gm.GetMatchType(), wm.GetMatchType())
			}
		}
		wa, ga := map[uint32]p4configv1.ActionRef_Scope{}, map[uint32]p4configv1.ActionRef_Scope{}
		for _, r := range w.GetActionRefs() {
			wa[r.GetId()] = r.GetScope()
		}
		for _, r := range g.GetActionRefs() {
			ga[r.GetId()] = r.GetScope()
		}
		for _, id := range unionKeys(wa, ga) {
			ws, wok := wa[id]
			gs, gok := ga[id]
			switch {
			case !wok:
				c.add("%s: action id 0x%08x is not an action of the pipeline's table", name, id)
			case !gok:
				c.add("%s: action id 0x%08x is missing", name, id)
			default:
				c.eq(fmt.Sprintf("%s: action 0x%08x", name, id), "scope", gs, ws)
			}
		}
		c.eq(name, "implementation id", g.GetImplementationId(), w.GetImplementationId())
		c.eq(name, "const default action id", g.GetConstDefaultActionId(), w.GetConstDefaultActionId())
		c.eq(name, "size", g.GetSize(), w.GetSize())
		c.eq(name, "idle timeout behavior", g.GetIdleTimeoutBehavior(), w.GetIdleTimeoutBehavior())
		c.eq(name, "const table", g.GetIsConstTable(), w.GetIsConstTable())
		if !slices.Equal(sorted(g.GetDirectResourceIds()), sorted(w.GetDirectResourceIds())) {
			c.add("%s: direct resources are %v, the pipeline has %v", name, g.GetDirectResourceIds(), w.GetDirectResourceIds())
		}
	})
}

func sorted(xs []uint32) []uint32 {
	out := slices.Clone(xs)
	slices.Sort(out)
	return out
}

func (c *differ) actions(want, got []*p4configv1.Action) {
	objects(c, "action", ids(want), ids(got), func(w, g *p4configv1.Action, name string) {
		wp, gp := map[uint32]*p4configv1.Action_Param{}, map[uint32]*p4configv1.Action_Param{}
		for _, p := range w.GetParams() {
			wp[p.GetId()] = p
		}
		for _, p := range g.GetParams() {
			gp[p.GetId()] = p
		}
		for _, id := range unionKeys(wp, gp) {
			wm, gm := wp[id], gp[id]
			switch {
			case wm == nil:
				c.add("%s: parameter %s (id %d) is not in the pipeline", name, gm.GetName(), id)
			case gm == nil:
				c.add("%s: parameter %s (id %d) is missing", name, wm.GetName(), id)
			default:
				pn := name + ": parameter " + gm.GetName()
				c.eq(pn, "name", gm.GetName(), wm.GetName())
				c.bits(pn, gm.GetBitwidth(), wm.GetBitwidth())
			}
		}
	})
}

func (c *differ) profiles(want, got []*p4configv1.ActionProfile) {
	objects(c, "action profile", ids(want), ids(got), func(w, g *p4configv1.ActionProfile, name string) {
		c.eq(name, "selector", g.GetWithSelector(), w.GetWithSelector())
		c.eq(name, "size", g.GetSize(), w.GetSize())
		c.eq(name, "max group size", g.GetMaxGroupSize(), w.GetMaxGroupSize())
		c.eq(name, "weights disallowed", g.GetWeightsDisallowed(), w.GetWeightsDisallowed())
		if !proto.Equal(g.GetSumOfMembers(), w.GetSumOfMembers()) {
			c.add("%s: selector size semantics differ from the pipeline's", name)
		}
		if !slices.Equal(sorted(g.GetTableIds()), sorted(w.GetTableIds())) {
			c.add("%s: tables are %v, the pipeline has %v", name, g.GetTableIds(), w.GetTableIds())
		}
	})
}
