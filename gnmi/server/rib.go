package server

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ytypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/controller"
	p4gnmi "github.com/p4mesh/p4mesh/gnmi"
	"github.com/p4mesh/p4mesh/gnmi/oc"
)

// The VPCs' RIBs in state (/p4mesh/vpcs/vpc/state/routes) are not in the
// tree the server shares between reads (device, snapshot): a RIB of a
// million routes changes many times a second under live BGP sessions, and
// rebuilding it into the tree on every change cost every reader, and every
// subscriber to anything, the size of the RIB. A read builds only what
// its path asks for from the controller's RIB: one prefix's candidates
// (controller.Server.RIBPrefix), costing that prefix; a whole RIB a part
// at a time (RIBPrefixes, RIBRange), so that a Get of a million routes
// holds one part's tree and the answer, not a tree of the whole.

// ribElems are the path to a VPC's RIB.
var ribElems = [...]string{"p4mesh", "vpcs", "vpc", "state", "routes"}

// ribPlace is where a path lies against the RIBs.
type ribPlace uint8

const (
	ribNone  ribPlace = iota // apart from every RIB
	ribAbove                 // above the RIBs: it holds them whole
	ribIn                    // at or below a RIB's routes container
)

// ribScope is what of the RIBs a path reaches: the VPCs named vpc (""
// or "*": every VPC), and of each one prefix if prefix is valid, none if
// nothing (a prefix key no RIB can hold), else the whole RIB.
type ribScope struct {
	vpc    string
	prefix netip.Prefix
	none   bool
}

func (sc ribScope) whole() bool { return !sc.prefix.IsValid() && !sc.none }

// ribPlaceOf says where p, a full path (wildcards allowed), lies against
// the RIBs, and what of them it reaches.
func ribPlaceOf(p *gnmi.Path) (ribPlace, ribScope) {
	el := p.GetElem()
	var sc ribScope
	for i, name := range ribElems {
		if i >= len(el) {
			return ribAbove, sc
		}
		switch el[i].GetName() {
		case "...":
			// Any depth below: whatever RIB lies there, whole.
			return ribAbove, sc
		case "*", name:
		default:
			return ribNone, sc
		}
		if i == 2 {
			sc.vpc = el[i].GetKey()["name"]
		}
	}
	if len(el) > len(ribElems) {
		if k, ok := el[len(ribElems)].GetKey()["prefix"]; ok && k != "*" {
			// A key matches an entry's prefix as text: one that is not
			// a prefix's canonical text matches nothing.
			if q, err := netip.ParsePrefix(k); err == nil && q.String() == k {
				sc.prefix = q
			} else {
				sc.none = true
			}
		}
	}
	return ribIn, sc
}

// ribVPCs are the configured VPCs sc names, in configuration order.
func (s *Server) ribVPCs(sc ribScope) []string {
	var out []string
	for _, v := range s.o.Controller.ConfigRest().VPCs {
		if sc.vpc == "" || sc.vpc == "*" || sc.vpc == v.Name {
			out = append(out, v.Name)
		}
	}
	return out
}

// ribDevice is a tree holding, for each VPC named, only its entry's key
// and the candidates of it got gives: what ytypes.GetNode and flatten
// need to answer a path inside the RIBs.
func ribDevice(vpcs []string, got func(vpc string) []controller.Candidate) *oc.Device {
	d := &oc.Device{}
	list := d.GetOrCreateP4Mesh().GetOrCreateVpcs()
	for _, name := range vpcs {
		v, err := list.AppendNewVpc(name)
		if err != nil {
			continue // a name twice: configurations have none
		}
		if got != nil {
			if cs := got(name); len(cs) > 0 {
				p4gnmi.RIBRoutes(v.GetOrCreateState().GetOrCreateRoutes(), cs)
			}
		}
	}
	return d
}

// scopeDevice is ribDevice of what sc reaches, whole RIBs included (the
// size of those RIBs: only for what must have them all at once).
func (s *Server) scopeDevice(sc ribScope) *oc.Device {
	c := s.o.Controller
	return ribDevice(s.ribVPCs(sc), func(vpc string) []controller.Candidate {
		switch {
		case sc.none:
			return nil
		case sc.prefix.IsValid():
			return c.RIBPrefix(vpc, sc.prefix)
		}
		return c.RIB(vpc)
	})
}

// ribChunk is how many prefixes a read of a whole RIB resolves and builds
// at a time: big enough that the controller's lock is taken rarely, small
// enough that the part's tree is small beside the answer.
var ribChunk = 4096

// getRIB answers Get of x, a path inside the RIBs (ribIn, no wildcard
// names): every node it matches, encoded in enc. A whole RIB is read a
// chunk of prefixes at a time; of its routes container (x ends there),
// the chunks' route lists are joined into one value, the bytes one tree
// of the whole RIB would have given.
func (s *Server) getRIB(x *gnmi.Path, sc ribScope, enc gnmi.Encoding) ([]*gnmi.Update, error) {
	if !sc.whole() {
		return s.nodes(s.scopeDevice(sc), x, x, enc)
	}
	c := s.o.Controller
	var out []*gnmi.Update
	for _, vpc := range s.ribVPCs(sc) {
		ps := c.RIBPrefixes(vpc)
		var joined *gnmi.Update
		var buf, tail []byte
		for lo := 0; lo < len(ps); lo += ribChunk {
			part := ps[lo:min(len(ps), lo+ribChunk)]
			cs := c.RIBRange(vpc, part)
			dev := ribDevice([]string{vpc}, func(string) []controller.Candidate { return cs })
			ups, err := s.nodes(dev, x, x, enc)
			if err != nil {
				return nil, err
			}
			if len(x.GetElem()) > len(ribElems) {
				out = append(out, ups...) // each node lies within one route
				continue
			}
			for _, u := range ups { // the routes container, once
				b := jsonBytes(u.GetVal())
				i, j, ok := listBounds(b)
				if !ok {
					return nil, status.Errorf(codes.Internal, "%s: the routes of a part of the RIB encode as %.40q, not a list", pathString(x), b)
				}
				if joined == nil {
					joined, tail = u, b[j:]
					// Size the answer from the first part, so that
					// building it does not copy it again and again.
					est := len(b) + (len(b)*(len(ps)-lo-len(part)))/len(part) + len(b)/8
					buf = append(make([]byte, 0, est), b[:j]...)
					continue
				}
				if j > i+1 {
					buf = append(buf, ',')
					buf = append(buf, b[i+1:j]...)
				}
			}
		}
		if joined != nil {
			setJSON(joined.GetVal(), append(buf, tail...))
			out = append(out, joined)
		}
	}
	return out, nil
}

// listBounds finds, in b, a routes container's JSON ({"route":[...]} in
// JSON_IETF, {"route":{...}} in JSON, where a list is an object keyed by
// the entries' keys), where its one member's value opens (i) and closes
// (j): the entries are b[i+1:j].
func listBounds(b []byte) (i, j int, ok bool) {
	// {"name": value}: the name has no quote in it.
	if len(b) < 6 || b[0] != '{' || b[1] != '"' || b[len(b)-1] != '}' {
		return 0, 0, false
	}
	q := bytes.IndexByte(b[2:], '"') + 2
	if q < 2 || q+2 >= len(b) || b[q+1] != ':' {
		return 0, 0, false
	}
	i, j = q+2, len(b)-2
	switch {
	case b[i] == '[' && b[j] == ']', b[i] == '{' && b[j] == '}':
		return i, j, true
	}
	return 0, 0, false
}

func jsonBytes(v *gnmi.TypedValue) []byte {
	if b := v.GetJsonIetfVal(); b != nil {
		return b
	}
	return v.GetJsonVal()
}

func setJSON(v *gnmi.TypedValue, b []byte) {
	if _, ok := v.GetValue().(*gnmi.TypedValue_JsonIetfVal); ok {
		v.Value = &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: b}
		return
	}
	v.Value = &gnmi.TypedValue_JsonVal{JsonVal: b}
}

// nodes are the nodes of d that x matches, encoded, empty containers
// left out: what Get answers for x. named is the path as the client
// wrote it, for errors.
func (s *Server) nodes(d *oc.Device, x, named *gnmi.Path, enc gnmi.Encoding) ([]*gnmi.Update, error) {
	nodes, err := ytypes.GetNode(s.schema.RootSchema(), d, x, &ytypes.GetHandleWildcards{}, &ytypes.GetPartialKeyMatch{})
	if err != nil && status.Code(err) != codes.NotFound {
		return nil, status.Errorf(codes.InvalidArgument, "%s: %s", pathString(named), plain(err))
	}
	var out []*gnmi.Update
	for _, node := range nodes {
		if isNil(node.Data) {
			continue
		}
		val, err := encodeValue(node.Data, node.Schema, enc)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "%s: %v", pathString(node.Path), err)
		}
		if j := string(val.GetJsonVal()) + string(val.GetJsonIetfVal()); j == "{}" {
			continue // an empty container: nothing there
		}
		out = append(out, &gnmi.Update{Path: node.Path, Val: val})
	}
	return out, nil
}

// ribLeaves are the leaves of the RIBs sc reaches, as Subscribe sends
// them: a prefix's cost the prefix's candidates, a whole RIB's the RIB's.
func (s *Server) ribLeaves(sc ribScope) (map[string]*leaf, error) {
	d := s.scopeDevice(sc)
	d.PopulateDefaults()
	all, err := s.leaves(d)
	if err != nil {
		return nil, fmt.Errorf("RIB leaves: %w", err)
	}
	for k, l := range all {
		if place, _ := ribPlaceOf(l.path); place != ribIn {
			delete(all, k) // the VPC entries' keys, which the tree has too
		}
	}
	return all, nil
}

// ribLeavesOf are the RIB leaves paths reach, merged: what a dump adds to
// the tree's leaves.
func (s *Server) ribLeavesOf(paths []*gnmi.Path) (map[string]*leaf, error) {
	out := map[string]*leaf{}
	for _, p := range paths {
		place, sc := ribPlaceOf(p)
		if place == ribNone {
			continue
		}
		ls, err := s.ribLeaves(sc)
		if err != nil {
			return nil, err
		}
		for k, l := range ls {
			out[k] = l
		}
	}
	return out, nil
}
