package vectors

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The vectors are written for the v1model program (p4/v1model) in BMv2's
// port numbering. Retarget turns a case into the same behaviour on another
// architecture's program (p4/tna, p4/pna): the same tables, actions and
// profiles, looked up by alias in the target's P4Info (TNA's action
// profiles have ids of their own), and every port the case names, in its
// updates (match fields named ingress_port, action parameters named port),
// its frames, packet-outs and packet-ins, taken through a port map from
// the vectors' ports to the target's (Stratum's port ids on Tofino,
// infrap4d's on P4-DPDK).
//
// What it cannot carry over it refuses with ErrNotOnTarget: a digest the
// target's P4Info does not have (p4/pna has none). Frames stay byte for
// byte: where a target hashes differently from BMv2's crc16 (the outer
// UDP source port of a tunnel, the member a selector picks; P4-DPDK's
// TARGET_DEFAULT hash), the cases that depend on it fail there, naming
// the bytes (docs/targets.md).

// ErrNotOnTarget marks a case that needs what the target's pipeline lacks.
var ErrNotOnTarget = errors.New("not on this target")

// PortMap maps the vectors' port numbers to the target's. A port it does
// not name stays as it is.
type PortMap map[uint16]uint16

func (m PortMap) port(p uint16) uint16 {
	if q, ok := m[p]; ok {
		return q
	}
	return p
}

// portFields are the match fields and action parameters that hold a port
// number, by name: the contract names every port so.
var (
	portMatchFields  = []string{"ingress_port"}
	portActionParams = []string{"port"}
)

// Retarget returns c for the pipeline of P4Info to, c's updates being
// written against from (the v1model P4Info), with every port taken
// through ports. c is unchanged.
func (c *Case) Retarget(from, to *p4configv1.P4Info, ports PortMap) (*Case, error) {
	for _, d := range c.Digests {
		if !slices.ContainsFunc(to.GetDigests(), func(x *p4configv1.Digest) bool {
			return x.GetPreamble().GetName() == d || x.GetPreamble().GetAlias() == d
		}) {
			return nil, fmt.Errorf("%s: %w: the %s P4Info has no digest %s", c.Name, ErrNotOnTarget, to.GetPkgInfo().GetArch(), d)
		}
	}
	m, err := newIDMap(from, to)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	out := &Case{Name: c.Name, Description: c.Description, Digests: slices.Clone(c.Digests)}
	for i, u := range c.updates {
		u = proto.Clone(u).(*p4v1.Update)
		if err := m.entity(u.GetEntity(), ports); err != nil {
			return nil, fmt.Errorf("%s: update %d: %w", c.Name, i, err)
		}
		raw, err := protojson.Marshal(u)
		if err != nil {
			return nil, err
		}
		out.updates = append(out.updates, u)
		out.Updates = append(out.Updates, json.RawMessage(raw))
	}
	for _, s := range c.Steps {
		n := Step{Comment: s.Comment, Digests: slices.Clone(s.Digests)}
		if s.In != nil {
			n.In = &Frame{Port: ports.port(s.In.Port), Hex: s.In.Hex}
		}
		if s.PacketOut != nil {
			n.PacketOut = &PacketOut{EgressPort: ports.port(s.PacketOut.EgressPort), Hex: s.PacketOut.Hex}
		}
		for _, f := range s.Out {
			n.Out = append(n.Out, Frame{Port: ports.port(f.Port), Hex: f.Hex})
		}
		if s.PacketIn != nil {
			n.PacketIn = &PacketIn{IngressPort: ports.port(s.PacketIn.IngressPort), Hex: s.PacketIn.Hex}
		}
		out.Steps = append(out.Steps, n)
	}
	return out, nil
}

// idMap takes ids of one P4Info to another's by alias, and knows which
// fields and parameters are ports.
type idMap struct {
	tables, actions, profiles map[uint32]uint32
	portFields                map[[2]uint32]int32 // (table, field) -> target width
	portParams                map[[2]uint32]int32 // (action, param) -> target width
}

func newIDMap(from, to *p4configv1.P4Info) (*idMap, error) {
	m := &idMap{tables: map[uint32]uint32{}, actions: map[uint32]uint32{}, profiles: map[uint32]uint32{},
		portFields: map[[2]uint32]int32{}, portParams: map[[2]uint32]int32{}}
	for _, t := range from.GetTables() {
		u := byAlias(to.GetTables(), t.GetPreamble().GetAlias(), (*p4configv1.Table).GetPreamble)
		if u == nil {
			return nil, fmt.Errorf("the target has no table %s", t.GetPreamble().GetAlias())
		}
		m.tables[t.GetPreamble().GetId()] = u.GetPreamble().GetId()
		for _, f := range t.GetMatchFields() {
			if !slices.Contains(portMatchFields, f.GetName()) {
				continue
			}
			for _, g := range u.GetMatchFields() {
				if g.GetName() == f.GetName() {
					m.portFields[[2]uint32{u.GetPreamble().GetId(), g.GetId()}] = g.GetBitwidth()
				}
			}
		}
	}
	for _, a := range from.GetActions() {
		b := byAlias(to.GetActions(), a.GetPreamble().GetAlias(), (*p4configv1.Action).GetPreamble)
		if b == nil {
			return nil, fmt.Errorf("the target has no action %s", a.GetPreamble().GetAlias())
		}
		m.actions[a.GetPreamble().GetId()] = b.GetPreamble().GetId()
		for _, p := range b.GetParams() {
			if slices.Contains(portActionParams, p.GetName()) {
				m.portParams[[2]uint32{b.GetPreamble().GetId(), p.GetId()}] = p.GetBitwidth()
			}
		}
	}
	for _, p := range from.GetActionProfiles() {
		q := byAlias(to.GetActionProfiles(), p.GetPreamble().GetAlias(), (*p4configv1.ActionProfile).GetPreamble)
		if q == nil {
			return nil, fmt.Errorf("the target has no action profile %s", p.GetPreamble().GetAlias())
		}
		m.profiles[p.GetPreamble().GetId()] = q.GetPreamble().GetId()
	}
	return m, nil
}

func byAlias[T any](xs []T, alias string, pre func(T) *p4configv1.Preamble) T {
	var zero T
	for _, x := range xs {
		if pre(x).GetAlias() == alias {
			return x
		}
	}
	return zero
}

func (m *idMap) id(ids map[uint32]uint32, kind string, id uint32) (uint32, error) {
	to, ok := ids[id]
	if !ok {
		return 0, fmt.Errorf("%s id %#x is not in the vectors' P4Info", kind, id)
	}
	return to, nil
}

func (m *idMap) entity(e *p4v1.Entity, ports PortMap) error {
	var err error
	switch x := e.GetEntity().(type) {
	case *p4v1.Entity_TableEntry:
		te := x.TableEntry
		if te.TableId, err = m.id(m.tables, "table", te.GetTableId()); err != nil {
			return err
		}
		for _, f := range te.GetMatch() {
			w, ok := m.portFields[[2]uint32{te.GetTableId(), f.GetFieldId()}]
			if !ok {
				continue
			}
			ex := f.GetExact()
			if ex == nil {
				return fmt.Errorf("port field %d of table %#x is not exact", f.GetFieldId(), te.GetTableId())
			}
			if ex.Value, err = mapPort(ex.GetValue(), w, ports); err != nil {
				return err
			}
		}
		switch a := te.GetAction().GetType().(type) {
		case *p4v1.TableAction_Action:
			return m.action(a.Action, ports)
		case *p4v1.TableAction_ActionProfileActionSet:
			for _, pa := range a.ActionProfileActionSet.GetActionProfileActions() {
				if err := m.action(pa.GetAction(), ports); err != nil {
					return err
				}
			}
		}
	case *p4v1.Entity_ActionProfileMember:
		if x.ActionProfileMember.ActionProfileId, err = m.id(m.profiles, "action profile", x.ActionProfileMember.GetActionProfileId()); err != nil {
			return err
		}
		return m.action(x.ActionProfileMember.GetAction(), ports)
	case *p4v1.Entity_ActionProfileGroup:
		x.ActionProfileGroup.ActionProfileId, err = m.id(m.profiles, "action profile", x.ActionProfileGroup.GetActionProfileId())
		return err
	default:
		return fmt.Errorf("entity %T is not retargeted", x)
	}
	return nil
}

func (m *idMap) action(a *p4v1.Action, ports PortMap) error {
	if a == nil {
		return nil
	}
	var err error
	if a.ActionId, err = m.id(m.actions, "action", a.GetActionId()); err != nil {
		return err
	}
	for _, p := range a.GetParams() {
		if w, ok := m.portParams[[2]uint32{a.GetActionId(), p.GetParamId()}]; ok {
			if p.Value, err = mapPort(p.GetValue(), w, ports); err != nil {
				return err
			}
		}
	}
	return nil
}

// mapPort takes an encoded port through ports and encodes it canonically
// (P4Runtime's shortest bytestring) for a field width bits wide.
func mapPort(v []byte, width int32, ports PortMap) ([]byte, error) {
	n := new(big.Int).SetBytes(v)
	if !n.IsUint64() || n.Uint64() > 0xffff {
		return nil, fmt.Errorf("port %v is beyond the vectors' 16-bit ports", n)
	}
	p := uint64(ports.port(uint16(n.Uint64())))
	if width < 64 && p >= 1<<width {
		return nil, fmt.Errorf("port %d does not fit the target's %d-bit ports", p, width)
	}
	b := new(big.Int).SetUint64(p).Bytes()
	if len(b) == 0 {
		b = []byte{0}
	}
	return b, nil
}
