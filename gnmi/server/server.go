// Package server is p4mesh's gNMI server: Capabilities, Get, Set and
// Subscribe over the p4mesh YANG model, in front of one controller. A Set is
// one transaction: the resulting configuration is validated (YANG schema
// and p4mesh's own rules), applied and persisted, or refused whole with a
// message naming the path. A Set inside entries of the model's lists (an
// endpoint, a VPC's VNI, a route) costs what it touches: only those
// entries are built, checked and handed to the controller as a Change.
package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/util"
	"github.com/openconfig/ygot/ygot"
	"github.com/openconfig/ygot/ytypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/controller"
	p4gnmi "github.com/p4mesh/p4mesh/gnmi"
	"github.com/p4mesh/p4mesh/gnmi/oc"
	"github.com/p4mesh/p4mesh/identity"
)

// Version is the gNMI specification version implemented.
const Version = "0.10.0"

// Options configure a Server.
type Options struct {
	Controller *controller.Server
	Logger     *slog.Logger
	// Poll is the shortest SAMPLE and heartbeat interval accepted, and
	// what a SAMPLE interval of 0 ("as fast as possible") means; 0 means
	// 100ms.
	Poll time.Duration
	// StateInterval is how often STREAM subscriptions look at the state
	// that changes without the controller telling (what OHCs report:
	// programmed entries, switch mastership); configuration and peering
	// changes wake them at once (controller.Server.Changed). 0 means 1s.
	StateInterval time.Duration
	// Auth decides who calls: operators may Set, operators and viewers
	// may read; Insecure lets anyone do anything (labs).
	Auth identity.Auth
}

// Server serves gNMI for one controller.
type Server struct {
	gnmi.UnimplementedGNMIServer
	o      Options
	log    *slog.Logger
	schema *ytypes.Schema
	// setMu serialises Sets: each reads the configuration, changes it and
	// applies it, and two interleaved would lose one's change. It guards
	// ent.
	setMu sync.Mutex
	ent   entryState
	// wholeOnly makes every Set take the whole tree (tests compare the
	// two ways).
	wholeOnly bool

	// snapMu guards gen, the newest generation of the tree's leaves that
	// Subscribe streams share (snapshot): N subscribers woken by one change
	// cost one tree build and one diff, not N.
	snapMu sync.Mutex
	gen    *generation
	// lookedAt is when snapshot last asked device(), lookWake the
	// controller's Changed channel taken just before.
	lookedAt time.Time
	lookWake <-chan struct{}

	// treeMu guards the tree device() last built and what it was built
	// from; Get, Subscribe and the snapshot share it, read-only.
	treeMu       sync.Mutex
	tree         *oc.Device
	treeCfg      *controller.Config
	treePeerings []controller.PeeringStatus
	treeStats    controller.Stats
}

// New makes a gNMI server.
func New(o Options) (*Server, error) {
	if o.Controller == nil {
		return nil, errors.New("gnmi: no controller")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Poll <= 0 {
		o.Poll = 100 * time.Millisecond
	}
	if o.StateInterval <= 0 {
		o.StateInterval = time.Second
	}
	schema, err := oc.Schema()
	if err != nil {
		return nil, fmt.Errorf("gnmi: schema: %w", err)
	}
	s := &Server{o: o, log: o.Logger, schema: schema}
	// The first Set of one entry would otherwise pay for checking the
	// running configuration against the schema: seconds at 100k
	// endpoints, in an operator's first command after a start.
	go func() {
		start := time.Now()
		s.setMu.Lock()
		defer s.setMu.Unlock()
		s.syncEntries()
		s.log.Debug("gnmi: running configuration checked against the schema for Sets of single entries", "took", time.Since(start))
	}()
	return s, nil
}

// Register adds the gNMI service to g.
func (s *Server) Register(g *grpc.Server) { gnmi.RegisterGNMIServer(g, s) }

// allow checks the caller may read, or with write change, the
// configuration: a certificate of the deployment's CA is not enough, since
// hosts and controllers have one too.
func (s *Server) allow(ctx context.Context, write bool) error {
	id, ok, err := s.o.Auth.Caller(ctx)
	if err != nil || !ok {
		return err
	}
	switch {
	case id.Kind == identity.Operator:
		return nil
	case id.Kind == identity.Viewer && !write:
		return nil
	case id.Kind == identity.Viewer:
		return status.Errorf(codes.PermissionDenied, "%s is read-only: Set needs an operator identity (spiffe://%s/operator/<name>)", id, id.TrustDomain)
	default:
		return status.Errorf(codes.PermissionDenied, "%s may not use gNMI: it is for operator and viewer identities", id)
	}
}

// Capabilities implements gNMI.
func (s *Server) Capabilities(ctx context.Context, _ *gnmi.CapabilityRequest) (*gnmi.CapabilityResponse, error) {
	if err := s.allow(ctx, false); err != nil {
		return nil, err
	}
	return &gnmi.CapabilityResponse{
		SupportedModels:    []*gnmi.ModelData{{Name: "p4mesh", Organization: "p4mesh", Version: "2026-12-08"}},
		SupportedEncodings: []gnmi.Encoding{gnmi.Encoding_JSON_IETF, gnmi.Encoding_JSON},
		GNMIVersion:        Version,
	}, nil
}

// device is the tree the server answers from: the running configuration
// and the controller's state. It is built once per configuration (the
// controller's *Config changes with every Apply and is never modified)
// and state (what WithState reads, compared in full on every call), and
// shared: callers must only read it.
func (s *Server) device() (*oc.Device, error) {
	c := s.o.Controller
	cfg, peerings, st := c.Config(), c.Peerings(), c.Stats()
	s.treeMu.Lock()
	defer s.treeMu.Unlock()
	if s.tree != nil && s.treeCfg == cfg && slices.Equal(s.treePeerings, peerings) && sameState(s.treeStats, st) {
		return s.tree, nil
	}
	d, err := buildTree(cfg, peerings, st, false)
	if err != nil {
		return nil, err
	}
	s.tree, s.treeCfg, s.treePeerings, s.treeStats = d, cfg, peerings, st
	return d, nil
}

// deviceWithRIB is device with every VPC's whole RIB in its state, built
// for each call and not shared: only a read of what holds whole RIBs (a
// VPC, all VPCs, the root) needs it, and it costs the size of the RIBs.
func (s *Server) deviceWithRIB() (*oc.Device, error) {
	c := s.o.Controller
	return buildTree(c.Config(), c.Peerings(), c.Stats(), true)
}

// buildTree is the tree of cfg with the state the controller reports,
// the VPCs' RIBs only if withRIB (rib.go).
func buildTree(cfg *controller.Config, peerings []controller.PeeringStatus, st controller.Stats, withRIB bool) (*oc.Device, error) {
	d, err := p4gnmi.FromConfig(cfg)
	if err != nil {
		return nil, err
	}
	if !withRIB {
		st.RIBs = nil
	}
	p4gnmi.WithState(d, peerings, st)
	// A leaf whose YANG default is in use reads as that default
	// (§3.3.4), in Get and Subscribe alike; the conversion to the
	// controller's configuration reads a default as unset.
	d.PopulateDefaults()
	return d, nil
}

// sameState reports whether a and b give the same tree: it compares what
// WithState reads but the RIBs, which the shared tree leaves out
// (rib.go): a route learned or withdrawn changes no tree.
func sameState(a, b controller.Stats) bool {
	return a.PublishedServices == b.PublishedServices && a.Subscribers == b.Subscribers &&
		a.Peerings == b.Peerings && a.ActivePeerings == b.ActivePeerings &&
		maps.Equal(a.HostEntries, b.HostEntries) && maps.Equal(a.HostSwitchPrimary, b.HostSwitchPrimary) &&
		slices.Equal(a.Routes, b.Routes)
}

// fullPath joins a request's prefix and a path.
func fullPath(prefix, p *gnmi.Path) *gnmi.Path {
	out := &gnmi.Path{}
	if prefix != nil {
		out.Elem = append(out.Elem, prefix.GetElem()...)
	}
	if p != nil {
		out.Elem = append(out.Elem, p.GetElem()...)
	}
	return out
}

func pathString(p *gnmi.Path) string {
	s, err := ygot.PathToString(p)
	if err != nil || s == "" {
		return "/"
	}
	return s
}

// Get implements gNMI: config and state at any path, wildcards included,
// as JSON_IETF (default) or JSON.
func (s *Server) Get(ctx context.Context, req *gnmi.GetRequest) (*gnmi.GetResponse, error) {
	if err := s.allow(ctx, false); err != nil {
		return nil, err
	}
	enc := req.GetEncoding()
	if enc != gnmi.Encoding_JSON_IETF && enc != gnmi.Encoding_JSON {
		return nil, status.Errorf(codes.Unimplemented, "%s: encoding %s is not supported: p4mesh answers in JSON_IETF or JSON", pathList(req.GetPrefix(), req.GetPath()), enc)
	}
	typ := req.GetType()
	// tree is the tree of config and state typ asks for: the shared one
	// (device), or with withRIB every VPC's RIB in it (deviceWithRIB).
	tree := func(withRIB bool) (*oc.Device, error) {
		build := s.device
		if withRIB {
			build = s.deviceWithRIB
		}
		d, err := build()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "build the tree: %v", err)
		}
		if typ == gnmi.GetRequest_ALL {
			return d, nil
		}
		// CONFIG is what an operator set; STATE and OPERATIONAL what the
		// controller reports (here all state is operational). The shared
		// tree is read-only: filter a copy.
		c, err := ygot.DeepCopy(d)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "copy the tree: %v", err)
		}
		drop := "State"
		if typ != gnmi.GetRequest_CONFIG {
			drop = "Config"
		}
		prune(reflect.ValueOf(c), drop)
		return c.(*oc.Device), nil
	}
	d, err := tree(false)
	if err != nil {
		return nil, err
	}
	var withRIB *oc.Device // built once, if a path needs it
	now := time.Now().UnixNano()
	resp := &gnmi.GetResponse{}
	paths := req.GetPath()
	if len(paths) == 0 {
		paths = []*gnmi.Path{{}}
	}
	if err := checkModels(req.GetUseModels()); err != nil {
		return nil, err
	}
	for _, p := range paths {
		if err := checkOrigin(req.GetPrefix(), p); err != nil {
			return nil, err
		}
		if err := s.checkRead(fullPath(req.GetPrefix(), p)); err != nil {
			return nil, err
		}
	}
	for _, p := range paths {
		full := fullPath(req.GetPrefix(), p)
		n := &gnmi.Notification{Timestamp: now, Prefix: respPrefix(req.GetPrefix(), p)}
		for _, x := range s.expand(full) {
			at := d
			switch place, sc := ribPlaceOf(x); place {
			case ribIn:
				if typ == gnmi.GetRequest_CONFIG {
					continue // a RIB is state only
				}
				ups, err := s.getRIB(x, sc, enc)
				if err != nil {
					return nil, err
				}
				n.Update = append(n.Update, ups...)
				continue
			case ribAbove:
				if withRIB == nil {
					if withRIB, err = tree(true); err != nil {
						return nil, err
					}
				}
				at = withRIB
			}
			ups, err := s.nodes(at, x, full, enc)
			if err != nil {
				return nil, err
			}
			n.Update = append(n.Update, ups...)
		}
		if len(n.Update) == 0 {
			// Nothing there: NotFound if the path names what does not
			// exist, else (an empty list or container, a wildcard
			// matching nothing) an empty notification.
			at := d
			if place, sc := ribPlaceOf(full); place == ribIn {
				// Whether the VPC, or the route named by all its keys,
				// is there: of a whole RIB, no route is named.
				if sc.whole() {
					sc.none = true
				}
				at = s.scopeDevice(sc)
			}
			if err := s.missing(at, full); err != nil {
				return nil, err
			}
		}
		resp.Notification = append(resp.Notification, n)
	}
	return resp, nil
}

// missing says whether p, which found nothing in d, names something that
// does not exist (NotFound): a list entry given by all its keys, or a leaf
// that is not set and has no default. An empty container or list, or a
// wildcard that matches nothing, is not missing: it reads as nothing.
func (s *Server) missing(d *oc.Device, p *gnmi.Path) error {
	e := s.schema.RootSchema()
	for i, el := range p.GetElem() {
		if e = e.Dir[el.GetName()]; e == nil {
			return nil // a wildcard name: no one thing is named
		}
		if !e.IsList() || len(el.GetKey()) != len(strings.Fields(e.Key)) || slices.Contains(slices.Collect(maps.Values(el.GetKey())), "*") {
			continue
		}
		at := &gnmi.Path{Elem: p.GetElem()[:i+1]}
		nodes, _ := ytypes.GetNode(s.schema.RootSchema(), d, at)
		if len(nodes) == 0 || isNil(nodes[0].Data) {
			return status.Errorf(codes.NotFound, "%s: %s does not exist", pathString(p), pathString(at))
		}
	}
	if e != nil && !e.IsDir() && !s.wildcard(p) {
		return status.Errorf(codes.NotFound, "%s: not set (and the model gives it no default)", pathString(p))
	}
	return nil
}

// pathList names a request's paths, for a refusal of the whole request.
func pathList(prefix *gnmi.Path, paths []*gnmi.Path) string {
	if len(paths) == 0 {
		return pathString(prefix)
	}
	var out []string
	for _, p := range paths {
		out = append(out, pathString(fullPath(prefix, p)))
	}
	return strings.Join(out, ", ")
}

// respPrefix is the prefix of a response's notifications: the request's
// target, which every response echoes (§2.2.2.1), and the p4mesh origin if
// the request named it, in its prefix or in one of paths, so that a client
// matching answers to its paths by origin (ygnmi, ygot's
// util.PathMatchesQuery) finds them; nothing else, since the notifications'
// paths are full.
func respPrefix(prefix *gnmi.Path, paths ...*gnmi.Path) *gnmi.Path {
	out := &gnmi.Path{Target: prefix.GetTarget()}
	if prefix.GetOrigin() == origin || slices.ContainsFunc(paths, func(p *gnmi.Path) bool { return p.GetOrigin() == origin }) {
		out.Origin = origin
	}
	if out.Target == "" && out.Origin == "" {
		return nil
	}
	return out
}

func isNil(v any) bool { return v == nil || util.IsValueNil(v) }

// encodeValue encodes a subtree (a GoStruct) as JSON, a leaf-list as a
// JSON array (as Subscribe sends it), both in enc, or a leaf as its scalar
// TypedValue.
func encodeValue(v any, e *yang.Entry, enc gnmi.Encoding) (*gnmi.TypedValue, error) {
	gs, ok := v.(ygot.GoStruct)
	if !ok && e != nil && e.IsLeafList() {
		return leafListJSON(v, e, enc)
	}
	if !ok {
		return ygot.EncodeTypedValue(v, enc)
	}
	if enc == gnmi.Encoding_JSON {
		j, err := ygot.ConstructInternalJSON(gs)
		if err != nil {
			return nil, err
		}
		b, err := marshalJSON(j)
		if err != nil {
			return nil, err
		}
		return &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonVal{JsonVal: b}}, nil
	}
	b, err := marshalIETF(gs)
	if err != nil {
		return nil, err
	}
	return &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: b}}, nil
}

// leafListJSON is a leaf-list's value as a JSON array in enc: its
// elements as JSON_IETF writes them, then as JSON would (jsonLeaf).
func leafListJSON(v any, e *yang.Entry, enc gnmi.Encoding) (*gnmi.TypedValue, error) {
	tv, err := ygot.EncodeTypedValue(v, gnmi.Encoding_JSON_IETF)
	if err != nil {
		return nil, err
	}
	arr := []any{}
	for _, el := range tv.GetLeaflistVal().GetElement() {
		switch x := el.GetValue().(type) {
		case *gnmi.TypedValue_StringVal:
			arr = append(arr, x.StringVal)
		case *gnmi.TypedValue_BoolVal:
			arr = append(arr, x.BoolVal)
		case *gnmi.TypedValue_UintVal:
			arr = append(arr, x.UintVal)
		case *gnmi.TypedValue_IntVal:
			arr = append(arr, x.IntVal)
		default:
			return nil, fmt.Errorf("a leaf-list element of type %T", x)
		}
	}
	if k := e.Type; k != nil && (k.Kind == yang.Yint64 || k.Kind == yang.Yuint64) {
		for i, x := range arr { // RFC 7951 quotes 64-bit numbers
			arr[i] = fmt.Sprint(x)
		}
	}
	b, err := json.Marshal(arr)
	if err != nil {
		return nil, err
	}
	if enc == gnmi.Encoding_JSON {
		return &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonVal{JsonVal: jsonLeaf(e, b)}}, nil
	}
	return &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: b}}, nil
}

// prune clears, everywhere under v, the struct fields named field (the
// generated Config or State containers).
func prune(v reflect.Value, field string) {
	if v.Kind() == reflect.Interface {
		v = v.Elem()
	}
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return
	}
	if m := v.MethodByName("Values"); m.IsValid() && m.Type().NumIn() == 0 {
		// A generated ordered map of list entries.
		vals := m.Call(nil)[0]
		for i := range vals.Len() {
			prune(vals.Index(i), field)
		}
		return
	}
	e := v.Elem()
	if e.Kind() != reflect.Struct {
		return
	}
	for i := range e.NumField() {
		f := e.Field(i)
		if !f.CanSet() {
			continue
		}
		if e.Type().Field(i).Name == field && f.Kind() == reflect.Pointer {
			f.Set(reflect.Zero(f.Type()))
			continue
		}
		switch f.Kind() {
		case reflect.Pointer:
			prune(f, field)
		case reflect.Map:
			for _, k := range f.MapKeys() {
				prune(f.MapIndex(k), field)
			}
		}
	}
}

// setError is a refused Set: the code and the message naming the path.
func setError(code codes.Code, path *gnmi.Path, format string, args ...any) error {
	return status.Errorf(code, "%s: %s", pathString(path), fmt.Sprintf(format, args...))
}

// Set implements gNMI: deletes, then replaces, then updates, on a copy of
// the configuration; the result is validated and applied whole, or nothing
// changes. A Set whose paths all lie inside entries of the model's
// top-level lists costs what it touches (setEntries); any other takes the
// whole tree (setWhole). Both give the same answers and errors.
func (s *Server) Set(ctx context.Context, req *gnmi.SetRequest) (*gnmi.SetResponse, error) {
	if err := s.allow(ctx, true); err != nil {
		s.log.Warn("gNMI Set refused", "caller", identity.Peer(ctx), "err", err)
		return nil, err
	}
	s.setMu.Lock()
	defer s.setMu.Unlock()
	resp, part, ok, err := s.setEntries(req)
	how := "entries"
	running := s.device
	if part != nil {
		// The Set lies within the entries of part: whether an entry
		// it reaches below exists is for their tree to say, not the
		// whole configuration's.
		running = func() (*oc.Device, error) { return p4gnmi.FromConfig(part) }
	}
	if !ok {
		how, running = "whole", s.device
		resp, err = s.setWhole(req)
	}
	if err != nil {
		return nil, s.explainAbsent(req, err, running)
	}
	s.log.Info("gnmi set applied", "deletes", len(req.GetDelete()), "replaces", len(req.GetReplace()), "updates", len(req.GetUpdate()), "path", how)
	return resp, nil
}

// needs says what a new entry of a list must be given, by list name.
var needs = map[string]string{
	"vpc": "a new VPC needs config/vni (1..16777215), at least one prefix in config/subnets, and its name among this controller's VPCs in the directory (/p4mesh/directory/controllers/controller[name=…]/config/vpcs)",
}

// explainAbsent rewords err, a Set's refusal, when the Set reached below a
// list entry that does not exist: setting one leaf of it makes an entry
// with only that leaf, whose many validation errors (a VNI of 0, no
// subnet) would hide the one thing to say, that the entry is not there.
// running is the tree of the running configuration, or of the part of it
// the Set lies within.
func (s *Server) explainAbsent(req *gnmi.SetRequest, err error, running func() (*oc.Device, error)) error {
	// Only a refusal of the configuration the Set makes (invalidSet, or
	// the controller's) is reworded; one of the request itself stands.
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "nothing changed:") {
		return err
	}
	d, derr := running()
	if derr != nil {
		return err
	}
	made := map[string]bool{} // entries the Set gives whole
	for _, u := range slices.Concat(req.GetReplace(), req.GetUpdate()) {
		made[pathString(fullPath(req.GetPrefix(), u.GetPath()))] = true
	}
	for _, u := range slices.Concat(req.GetReplace(), req.GetUpdate()) {
		full := fullPath(req.GetPrefix(), u.GetPath())
		if len(full.GetElem()) == 0 {
			continue
		}
		e := s.schema.RootSchema()
		for i, el := range full.GetElem()[:len(full.GetElem())-1] {
			if e = e.Dir[el.GetName()]; e == nil {
				break
			}
			if !e.IsList() || !sameKeys(el.GetKey(), strings.Fields(e.Key)) {
				continue
			}
			at := &gnmi.Path{Elem: full.GetElem()[:i+1]}
			if made[pathString(at)] {
				break
			}
			if nodes, _ := ytypes.GetNode(s.schema.RootSchema(), d, at); len(nodes) > 0 && !isNil(nodes[0].Data) {
				continue
			}
			need, ok := needs[e.Name]
			if !ok {
				need = "a new " + e.Name + " needs its whole config: Get an existing one for its shape"
			}
			return status.Errorf(codes.InvalidArgument, "%s: %s does not exist, and this Set would make it with only what the path sets, nothing changed. %s; create it with one update of %s giving them", pathString(full), pathString(at), need, pathString(at))
		}
	}
	return err
}

// sameKeys: the path element's keys are the list's, each given a value.
func sameKeys(got map[string]string, keys []string) bool {
	if len(got) != len(keys) {
		return false
	}
	for _, k := range keys {
		if v, ok := got[k]; !ok || v == "*" {
			return false
		}
	}
	return true
}

// setWhole is a Set on a tree of the whole running configuration,
// validated whole and applied with Controller.Apply: its cost is the size
// of the configuration. It stays on Apply rather than diffing into a
// controller.Change: it serves the Sets that may change anything (/, a
// whole list, wildcards, the controller's name, which a Change cannot
// clear), where a diff would cost as much as the Apply it saves.
func (s *Server) setWhole(req *gnmi.SetRequest) (*gnmi.SetResponse, error) {
	// A fresh tree, sharing nothing with the running configuration or the
	// tree Gets read: this Set may change it freely.
	dev, err := p4gnmi.FromConfig(s.o.Controller.Config())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "build the tree: %v", err)
	}
	resp, err := s.applyOps(dev, req)
	if err != nil {
		return nil, err
	}
	if err := p4gnmi.Validate(dev); err != nil {
		return nil, invalidSet(err)
	}
	cfg, err := p4gnmi.ToConfig(dev)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "nothing changed: %v", err)
	}
	if err := s.o.Controller.Apply(cfg); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "nothing changed: %v", err)
	}
	return resp, nil
}

// invalidSet is the refusal of a Set whose result does not validate.
func invalidSet(err error) error {
	return status.Errorf(codes.InvalidArgument, "the configuration this Set would make is invalid, nothing changed:\n%v", err)
}

// applyOps applies req's deletes, replaces and updates to dev, in that
// order, and returns the answer the Set gives if the result is accepted.
func (s *Server) applyOps(dev *oc.Device, req *gnmi.SetRequest) (*gnmi.SetResponse, error) {
	if ur := req.GetUnionReplace(); len(ur) > 0 {
		// Silence would tell the client its configuration was replaced.
		var ps []string
		for _, u := range ur {
			ps = append(ps, pathString(fullPath(req.GetPrefix(), u.GetPath())))
		}
		return nil, status.Errorf(codes.Unimplemented, "union_replace is not supported (%s): use replace, which p4mesh's one model makes equivalent", strings.Join(ps, ", "))
	}
	resp := &gnmi.SetResponse{Timestamp: time.Now().UnixNano(), Prefix: req.GetPrefix()}
	root := s.schema.RootSchema()
	for _, p := range req.GetDelete() {
		full := fullPath(req.GetPrefix(), p)
		if err := s.checkDelete(req.GetPrefix(), p); err != nil {
			return nil, err
		}
		// Wildcards are expanded against the schema ("*" and "..." as
		// element names) and the tree (keys), as Get expands them
		// (§3.4.6): ygot would look for an entry keyed "*" and find
		// nothing to delete.
		var targets []*gnmi.Path
		for _, x := range s.expand(full) {
			if isState(x) && !isState(full) {
				continue // what "..." or "*" reaches of state is the controller's
			}
			if !s.wildcard(x) {
				targets = append(targets, x)
				continue
			}
			nodes, err := ytypes.GetNode(root, dev, x, &ytypes.GetHandleWildcards{}, &ytypes.GetPartialKeyMatch{})
			if err != nil && status.Code(err) != codes.NotFound {
				return nil, setError(codes.InvalidArgument, full, "delete: %s", plain(err))
			}
			for _, n := range nodes {
				targets = append(targets, n.Path)
			}
		}
		for _, t := range targets {
			// Deleting what is not there succeeds (gNMI spec §3.4.6).
			if err := ytypes.DeleteNode(root, dev, t); err != nil && status.Code(err) != codes.NotFound {
				return nil, setError(codes.InvalidArgument, t, "delete: %s", plain(err))
			}
		}
		resp.Response = append(resp.Response, &gnmi.UpdateResult{Path: p, Op: gnmi.UpdateResult_DELETE})
	}
	for _, u := range req.GetReplace() {
		full := fullPath(req.GetPrefix(), u.GetPath())
		e, err := s.checkSet(req.GetPrefix(), u.GetPath())
		if err != nil {
			return nil, err
		}
		if err := s.checkOne(full); err != nil {
			return nil, err
		}
		if err := ytypes.DeleteNode(root, dev, full); err != nil && status.Code(err) != codes.NotFound {
			return nil, setError(codes.InvalidArgument, full, "replace: %s", plain(err))
		}
		if err := s.setNode(dev, full, e, u.GetVal()); err != nil {
			return nil, err
		}
		resp.Response = append(resp.Response, &gnmi.UpdateResult{Path: u.GetPath(), Op: gnmi.UpdateResult_REPLACE})
	}
	for _, u := range req.GetUpdate() {
		full := fullPath(req.GetPrefix(), u.GetPath())
		e, err := s.checkSet(req.GetPrefix(), u.GetPath())
		if err != nil {
			return nil, err
		}
		if err := s.checkOne(full); err != nil {
			return nil, err
		}
		if err := s.setNode(dev, full, e, u.GetVal()); err != nil {
			return nil, err
		}
		resp.Response = append(resp.Response, &gnmi.UpdateResult{Path: u.GetPath(), Op: gnmi.UpdateResult_UPDATE})
	}
	return resp, nil
}

// checkSet checks a Set's path: its origin, that the model has it, that
// it is not state, and that wildcards are only in keys, and returns its
// schema entry.
func (s *Server) checkSet(prefix, p *gnmi.Path) (*yang.Entry, error) {
	full := fullPath(prefix, p)
	if err := checkOrigin(prefix, p); err != nil {
		return nil, err
	}
	e, err := s.schemaAt(full)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, setError(codes.InvalidArgument, full, "a Set names its elements: wildcards (* and ...) are taken in keys only, and by delete only")
	}
	if err := checkWritable(full); err != nil {
		return nil, err
	}
	return e, nil
}

// checkDelete checks a delete's path: its origin, that some node of the
// model matches it (wildcards included) and that it does not name state.
func (s *Server) checkDelete(prefix, p *gnmi.Path) error {
	full := fullPath(prefix, p)
	if err := checkOrigin(prefix, p); err != nil {
		return err
	}
	if err := s.checkRead(full); err != nil {
		return err
	}
	return checkWritable(full)
}

// checkOne refuses a wildcard where a value is set: it would set the
// value into an entry keyed "*".
func (s *Server) checkOne(full *gnmi.Path) error {
	if s.wildcard(full) {
		return setError(codes.InvalidArgument, full, "a value is set at one node: name every list entry by all its keys (wildcards are for Get, Subscribe and delete)")
	}
	return nil
}

// checkWritable refuses state paths: state is what the controller reports.
func checkWritable(p *gnmi.Path) error {
	for _, e := range p.GetElem() {
		if e.GetName() == "state" {
			return setError(codes.InvalidArgument, p, "state is read-only; set the config container instead")
		}
	}
	return nil
}

// setNode sets val at p, whose schema entry is e: a JSON or JSON_IETF
// value anywhere, or a scalar at a leaf.
func (s *Server) setNode(dev *oc.Device, p *gnmi.Path, e *yang.Entry, val *gnmi.TypedValue) error {
	if val == nil {
		return setError(codes.InvalidArgument, p, "no value")
	}
	var raw []byte
	switch v := val.GetValue().(type) {
	case *gnmi.TypedValue_JsonIetfVal:
		raw = v.JsonIetfVal
	case *gnmi.TypedValue_JsonVal:
		raw = v.JsonVal
	case *gnmi.TypedValue_StringVal, *gnmi.TypedValue_UintVal, *gnmi.TypedValue_IntVal, *gnmi.TypedValue_BoolVal, *gnmi.TypedValue_LeaflistVal:
		if e.IsDir() {
			return setError(codes.InvalidArgument, p, "%s is a container: set it with a JSON_IETF or JSON object, or set its leaves", e.Name)
		}
		if err := ytypes.SetNode(s.schema.RootSchema(), dev, p, val, &ytypes.InitMissingElements{}); err != nil {
			return setError(codes.InvalidArgument, p, "%s is %s; %s is not one", e.Name, typeName(e.Type), scalarText(val))
		}
		return nil
	default:
		return setError(codes.Unimplemented, p, "values encoded as %s are not supported: use JSON_IETF or JSON (or, for a leaf, a scalar value)", encodingOf(val))
	}
	doc, err := decodeJSON(raw)
	if err != nil {
		return setError(codes.InvalidArgument, p, "the value is not JSON: %v", err)
	}
	return s.setJSON(dev, p, e, doc)
}

// encodingOf names the encoding a value that is not JSON was sent in.
func encodingOf(v *gnmi.TypedValue) string {
	switch v.GetValue().(type) {
	case *gnmi.TypedValue_ProtoBytes, *gnmi.TypedValue_AnyVal:
		return "PROTO"
	case *gnmi.TypedValue_AsciiVal:
		return "ASCII"
	case *gnmi.TypedValue_BytesVal:
		return "BYTES"
	}
	return fmt.Sprintf("%T", v.GetValue())
}

// scalarText is a scalar value as a client would write it.
func scalarText(v *gnmi.TypedValue) string {
	switch x := v.GetValue().(type) {
	case *gnmi.TypedValue_StringVal:
		return fmt.Sprintf("%q", x.StringVal)
	case *gnmi.TypedValue_UintVal:
		return fmt.Sprint(x.UintVal)
	case *gnmi.TypedValue_IntVal:
		return fmt.Sprint(x.IntVal)
	case *gnmi.TypedValue_BoolVal:
		return fmt.Sprint(x.BoolVal)
	case *gnmi.TypedValue_LeaflistVal:
		var el []string
		for _, e := range x.LeaflistVal.GetElement() {
			el = append(el, scalarText(e))
		}
		return "[" + strings.Join(el, ", ") + "]"
	}
	return v.String()
}

// leaves flattens the tree into its leaves, by path string. ygot's
// TogNMINotifications cannot flatten nested ordered-by-user lists, which
// the model has, so the tree is walked from its RFC 7951 JSON, parsed
// once, with the schema giving each list's keys. It runs once per change
// of the tree, for every subscriber (snapshot), so on the path of every
// ON_CHANGE notification.
func (s *Server) leaves(d *oc.Device) (map[string]*leaf, error) {
	b, err := marshalIETF(d)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // numbers stay as written
	var root map[string]any
	if err := dec.Decode(&root); err != nil {
		return nil, err
	}
	out := map[string]*leaf{}
	if err := flatten(s.schema.RootSchema(), root, nil, "", out); err != nil {
		return nil, err
	}
	return out, nil
}

// flatten walks one JSON object whose schema is e, under the path elements
// elems, adding every leaf to out. Leaves are keyed by their path spelled
// as key is built along the way (keys in the schema's order): cheaper than
// ygot's PathToString per leaf, and only ever compared with itself.
func flatten(e *yang.Entry, obj map[string]any, elems []*gnmi.PathElem, key string, out map[string]*leaf) error {
	for name, v := range obj {
		if _, after, ok := strings.Cut(name, ":"); ok {
			name = after
		}
		child := e.Dir[name]
		if child == nil {
			return fmt.Errorf("%s: %q is not in the schema", pathString(&gnmi.Path{Elem: elems}), name)
		}
		switch {
		case child.IsList():
			items, _ := v.([]any)
			for _, it := range items {
				item, _ := it.(map[string]any)
				keys := map[string]string{}
				ek := key + "/" + name
				for _, k := range strings.Fields(child.Key) {
					kv, ok := item[k]
					if !ok {
						kv = item["p4mesh:"+k]
					}
					keys[k] = fmt.Sprint(kv)
					ek += "[" + k + "=" + keys[k] + "]"
				}
				el := append(slices.Clone(elems), &gnmi.PathElem{Name: name, Key: keys})
				if err := flatten(child, item, el, ek, out); err != nil {
					return err
				}
			}
		case child.IsContainer():
			sub, _ := v.(map[string]any)
			if err := flatten(child, sub, append(slices.Clone(elems), &gnmi.PathElem{Name: name}), key+"/"+name, out); err != nil {
				return err
			}
		default: // leaf or leaf-list
			p := &gnmi.Path{Elem: append(slices.Clone(elems), &gnmi.PathElem{Name: name})}
			// Marshalled again as the direct writer wrote it: strings
			// escaped as encoding/json does, numbers as written.
			ietf, err := json.Marshal(v)
			if err != nil {
				return err
			}
			out[key+"/"+name] = &leaf{path: p,
				ietf: &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: ietf}},
				json: &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonVal{JsonVal: jsonLeaf(child, ietf)}},
			}
		}
	}
	return nil
}

// matches reports whether leaf path l lies under subscription path p, with
// "*" for any element name or key value and "..." for any number of
// elements, none included (§2.2.2.1).
func matches(p, l *gnmi.Path) bool { return matchElems(p.GetElem(), l.GetElem()) }

func matchElems(pe, le []*gnmi.PathElem) bool {
	for i, e := range pe {
		if e.GetName() == "..." {
			for j := i; j <= len(le); j++ {
				if matchElems(pe[i+1:], le[j:]) {
					return true
				}
			}
			return false
		}
		if i >= len(le) {
			return false
		}
		if e.GetName() != "*" && e.GetName() != le[i].GetName() {
			return false
		}
		for k, v := range e.GetKey() {
			if v != "*" && le[i].GetKey()[k] != v {
				return false
			}
		}
	}
	return true
}
