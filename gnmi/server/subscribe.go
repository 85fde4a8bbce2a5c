package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/controller"
	p4gnmi "github.com/p4mesh/p4mesh/gnmi"
)

func marshalJSON(v any) ([]byte, error) { return json.Marshal(v) }

// leaf is one leaf or leaf-list of the tree as Subscribe sends it, its
// value in both encodings a client may ask for (§2.3.1: a bare JSON value;
// a leaf-list a JSON array).
type leaf struct {
	path       *gnmi.Path
	ietf, json *gnmi.TypedValue
}

func (l *leaf) val(enc gnmi.Encoding) *gnmi.TypedValue {
	if enc == gnmi.Encoding_JSON {
		return l.json
	}
	return l.ietf
}

// generation is the tree's leaves at one moment, shared by every
// subscription. Generations are joined by a chain of links: when a newer
// one is made, the older one's link learns which of its leaves changed or
// went (changed) and then where the chain goes on (next). A subscription
// keeps the link of the generation it last looked at and, woken, follows
// the chain to the newest: what it must send is the union of the changed
// sets on the way, computed once per generation for all subscriptions
// rather than once per subscription. The chain holds only those sets, not
// the generations' leaves: a subscriber slow to read keeps what changed
// since it last looked alive, not a copy of the tree per change.
//
// The leaves are in two parts, so that a change of one endpoint costs that
// endpoint, not the tree: those of each endpoint and load balancer entry,
// by entry (items), which a generation shares with the one before but for
// the entries the controller says changed (controller.ConfigSince); and
// the rest (the directory, VPCs, hosts, policies, peerings, routes, BGP
// and the controller's state), rebuilt whole for each generation.
type generation struct {
	// seq, peerings and stats are what the leaves were made of.
	seq      uint64
	peerings []controller.PeeringStatus
	stats    controller.Stats
	rest     map[string]*leaf
	items    *entryLeaves
	link     *link
}

// leaf is the leaf keyed k at path p, if the generation has it.
func (g *generation) leaf(k string, p *gnmi.Path) (*leaf, bool) {
	if e := leafEntry(p); e != "" {
		l, ok := g.items.get(e)[k]
		return l, ok
	}
	l, ok := g.rest[k]
	return l, ok
}

// each calls f with every leaf.
func (g *generation) each(f func(k string, l *leaf)) {
	for k, l := range g.rest {
		f(k, l)
	}
	g.items.each(func(_ string, ls map[string]*leaf) {
		for k, l := range ls {
			f(k, l)
		}
	})
}

// leafEntry names the endpoint or load balancer entry leaf path p lies in,
// "" for one outside them.
func leafEntry(p *gnmi.Path) string {
	el := p.GetElem()
	if len(el) < 4 || el[0].GetName() != "p4mesh" {
		return ""
	}
	switch {
	case el[1].GetName() == "endpoints" && el[2].GetName() == "endpoint":
		return "endpoint\x00" + el[2].GetKey()["id"]
	case el[1].GetName() == "load-balancers" && el[2].GetName() == "load-balancer":
		return "load-balancer\x00" + el[2].GetKey()["name"]
	}
	return ""
}

// split sorts leaves into the rest and the entries.
func split(all map[string]*leaf) (rest map[string]*leaf, items map[string]map[string]*leaf) {
	rest, items = map[string]*leaf{}, map[string]map[string]*leaf{}
	for k, l := range all {
		e := leafEntry(l.path)
		if e == "" {
			rest[k] = l
			continue
		}
		if items[e] == nil {
			items[e] = map[string]*leaf{}
		}
		items[e][k] = l
	}
	return rest, items
}

// entryLeaves is the leaves of every endpoint and load balancer entry, by
// entry: a layer of the entries a change touched (nil: gone) over the
// layers before. Past maxLayers the layers above the bottom one are merged
// into one, so that lookups stay cheap, and that merged layer into the
// bottom one once it holds an eighth as many entries: a change costs the
// entries it touched, plus, amortised, a constant share of a merge.
type entryLeaves struct {
	m      map[string]map[string]*leaf
	parent *entryLeaves
	depth  int
}

const maxLayers = 32

func (e *entryLeaves) get(k string) map[string]*leaf {
	for x := e; x != nil; x = x.parent {
		if ls, ok := x.m[k]; ok {
			return ls
		}
	}
	return nil
}

// with is e with patch over it.
func (e *entryLeaves) with(patch map[string]map[string]*leaf) *entryLeaves {
	n := &entryLeaves{m: patch, parent: e, depth: e.depth + 1}
	if n.depth < maxLayers {
		return n
	}
	var layers []*entryLeaves
	bottom := n
	for ; bottom.parent != nil; bottom = bottom.parent {
		layers = append(layers, bottom)
	}
	merged := map[string]map[string]*leaf{}
	for i := len(layers) - 1; i >= 0; i-- { // oldest first: newer ones win
		maps.Copy(merged, layers[i].m)
	}
	if len(merged) < len(bottom.m)/8+maxLayers {
		return &entryLeaves{m: merged, parent: bottom, depth: 1}
	}
	flat := make(map[string]map[string]*leaf, len(bottom.m)+len(merged))
	n.each(func(k string, ls map[string]*leaf) { flat[k] = ls })
	return &entryLeaves{m: flat}
}

// each calls f with every entry there is, the newest layer's if several
// have it.
func (e *entryLeaves) each(f func(k string, ls map[string]*leaf)) {
	if e.parent == nil {
		for k, ls := range e.m {
			if ls != nil {
				f(k, ls)
			}
		}
		return
	}
	seen := map[string]bool{}
	for x := e; x != nil; x = x.parent {
		for k, ls := range x.m {
			if seen[k] {
				continue
			}
			seen[k] = true
			if ls != nil {
				f(k, ls)
			}
		}
	}
}

// link follows one generation in the chain.
type link struct {
	// changed is written once, before next is stored, and read only
	// after next is loaded.
	changed map[string]*gnmi.Path
	next    atomic.Pointer[link]
}

// changedSince is what changed from the generation of link from to that of
// link to, a later one: the leaves that differ or went, by path string,
// with their paths.
func changedSince(from, to *link) map[string]*gnmi.Path {
	out := map[string]*gnmi.Path{}
	for l := from; l != nil && l != to; {
		n := l.next.Load()
		if n == nil {
			break
		}
		for k, p := range l.changed {
			out[k] = p
		}
		l = n
	}
	return out
}

// diffLeaves adds to changed the leaves of a and b that differ, or are in
// one only.
func diffLeaves(changed map[string]*gnmi.Path, a, b map[string]*leaf) {
	for k, l := range a {
		if n, ok := b[k]; !ok || !bytes.Equal(n.ietf.GetJsonIetfVal(), l.ietf.GetJsonIetfVal()) {
			changed[k] = l.path
		}
	}
	for k, l := range b {
		if _, ok := a[k]; !ok {
			changed[k] = l.path
		}
	}
}

// snapshot is the newest generation: a new one when the configuration or
// the state the tree shows is not the last one's. It is made under
// snapMu, so that generations follow one another in order.
//
// Whether anything changed is known from the controller's journal
// (ConfigSince) and its state (Stats, Peerings), read whole. A
// configuration or peering change closes Changed, so while the channel
// taken at the last look is open only what OHCs report can have moved:
// within StateInterval/2 of that look, the last generation is answered
// without asking, so that N subscribers ticking every StateInterval cost
// about two looks per interval, not N.
func (s *Server) snapshot() (*generation, error) {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	if s.gen != nil && time.Since(s.lookedAt) < s.o.StateInterval/2 {
		select {
		case <-s.lookWake:
		default:
			return s.gen, nil
		}
	}
	c := s.o.Controller
	wake := c.Changed()
	var since uint64
	if s.gen != nil {
		since = s.gen.seq
	}
	// The journal first: Config, Peerings and Stats read after it are as
	// new or newer, and a later look asks for what changed since d.Seq
	// again, which rebuilds the same entries.
	d := c.ConfigSince(since)
	peerings, st := c.Peerings(), c.Stats()
	old := s.gen
	if old != nil && d.Known && len(d.Endpoints)+len(d.LoadBalancers) == 0 && d.Seq == old.seq &&
		slices.Equal(peerings, old.peerings) && sameState(st, old.stats) {
		s.lookedAt, s.lookWake = time.Now(), wake
		return old, nil
	}
	g := &generation{seq: d.Seq, peerings: peerings, stats: st, link: &link{}}
	changed := map[string]*gnmi.Path{}
	if old == nil || !d.Known {
		dev, err := s.device()
		if err != nil {
			return nil, err
		}
		all, err := s.leaves(dev)
		if err != nil {
			return nil, err
		}
		var items map[string]map[string]*leaf
		g.rest, items = split(all)
		g.items = &entryLeaves{m: items}
		if old != nil {
			all0 := map[string]*leaf{}
			old.each(func(k string, l *leaf) { all0[k] = l })
			diffLeaves(changed, all0, all)
		}
	} else {
		// The rest is rebuilt when it or the state it shows changed:
		// not for an endpoint added.
		rest := old.rest
		if d.RestChanged || !slices.Equal(peerings, old.peerings) || !sameState(st, old.stats) {
			var err error
			if rest, err = s.restLeaves(d.Rest, peerings, st); err != nil {
				return nil, err
			}
		}
		patch, err := s.entryLeaves(d)
		if err != nil {
			return nil, err
		}
		g.rest, g.items = rest, old.items.with(patch)
		if !maps.Equal(rest, old.rest) {
			diffLeaves(changed, old.rest, rest)
		}
		for e, ls := range patch {
			diffLeaves(changed, old.items.get(e), ls)
		}
	}
	s.lookedAt, s.lookWake = time.Now(), wake
	if old != nil {
		old.link.changed = changed
		old.link.next.Store(g.link)
	}
	s.gen = g
	return g, nil
}

// restLeaves is the leaves of rest, a configuration without endpoints and
// load balancers, with the state the controller reports.
func (s *Server) restLeaves(rest *controller.Config, peerings []controller.PeeringStatus, st controller.Stats) (map[string]*leaf, error) {
	d, err := buildTree(rest, peerings, st, false)
	if err != nil {
		return nil, err
	}
	all, err := s.leaves(d)
	if err != nil {
		return nil, err
	}
	out, items := split(all)
	if len(items) > 0 {
		return nil, fmt.Errorf("%d endpoint or load balancer entries in the configuration without them", len(items))
	}
	return out, nil
}

// entryLeaves is the leaves of the endpoint and load balancer entries d
// says changed, by entry; nil for one that went. Their state mirrors their
// configuration (WithState), whatever else the controller reports.
func (s *Server) entryLeaves(d controller.ConfigDelta) (map[string]map[string]*leaf, error) {
	patch := map[string]map[string]*leaf{}
	part := &controller.Config{}
	for id, e := range d.Endpoints {
		patch["endpoint\x00"+id] = nil
		if e != nil {
			part.Endpoints = append(part.Endpoints, *e)
		}
	}
	for name, lb := range d.LoadBalancers {
		patch["load-balancer\x00"+name] = nil
		if lb != nil {
			part.LoadBalancers = append(part.LoadBalancers, *lb)
		}
	}
	if len(part.Endpoints)+len(part.LoadBalancers) == 0 {
		return patch, nil
	}
	dev, err := p4gnmi.FromConfig(part)
	if err != nil {
		return nil, err
	}
	p4gnmi.WithState(dev, nil, controller.Stats{})
	dev.PopulateDefaults()
	all, err := s.leaves(dev)
	if err != nil {
		return nil, err
	}
	_, items := split(all) // the rest is the empty configuration's
	for e, ls := range items {
		if _, ok := patch[e]; !ok {
			return nil, fmt.Errorf("entry %q is not one that changed", e)
		}
		patch[e] = ls
	}
	return patch, nil
}

// Which leaves a subscription covers: TARGET_DEFINED splits its path into
// the configuration (sent on change) and the state (sampled when the
// client gave an interval).
const (
	allLeaves = iota
	configLeaves
	stateLeaves
)

// sub is one subscription of a STREAM list.
type sub struct {
	path     *gnmi.Path
	only     int
	onChange bool
	// sample, if not 0, is a SAMPLE interval; sampled the link of the
	// generation of the last sample, from which suppress_redundant sends
	// what changed.
	sample     time.Duration
	suppress   bool
	sampled    *link
	nextSample time.Time
	// heartbeat, if not 0, resends every covered leaf that often
	// (§3.5.1.5.2), whatever changed.
	heartbeat time.Duration
	nextBeat  time.Time

	// rib, if not nil, is what of the VPCs' RIBs the subscription
	// reaches: their leaves are not in the generations (rib.go), and
	// each subscription keeps its own, looked at again only when the
	// RIB or the generation moved (ribRev, ribGen). ribCur is the newest,
	// ribSent what was last seen for ON_CHANGE, ribSampled at the last
	// sample.
	rib                         *ribScope
	ribRev                      uint64
	ribGen                      *generation
	ribCur, ribSent, ribSampled map[string]*leaf
}

// lookRIB brings sb.ribCur up to date with the RIB at revision rev and
// generation g.
func (s *Server) lookRIB(sb *sub, rev uint64, g *generation) error {
	if sb.rib == nil || (sb.ribCur != nil && sb.ribRev == rev && sb.ribGen == g) {
		return nil
	}
	ls, err := s.ribLeaves(*sb.rib)
	if err != nil {
		return err
	}
	sb.ribCur, sb.ribRev, sb.ribGen = ls, rev, g
	return nil
}

func (sb *sub) covers(p *gnmi.Path) bool {
	if !matches(sb.path, p) {
		return false
	}
	switch sb.only {
	case configLeaves:
		return !isState(p)
	case stateLeaves:
		return isState(p)
	}
	return true
}

// isState: the leaf is in a state container, what the controller reports.
func isState(p *gnmi.Path) bool {
	return slices.ContainsFunc(p.GetElem(), func(e *gnmi.PathElem) bool { return e.GetName() == "state" })
}

// Subscribe implements gNMI: ONCE (everything, sync_response, close), POLL
// (everything again on each poll) and STREAM, each subscription of which
// is ON_CHANGE (a full dump, sync_response, then only changes, and every
// heartbeat_interval everything), SAMPLE (everything every interval, or
// with suppress_redundant what changed, and everything every heartbeat)
// or TARGET_DEFINED (configuration on change, state sampled at the
// interval given, else on change too).
//
// Nothing polls the controller for configuration: a STREAM subscription
// sleeps until the controller says what it serves changed (Changed), a
// sample or heartbeat is due, or StateInterval passes (what OHCs report
// changes without telling), and only then builds the tree (once for all
// subscriptions, snapshot) and sends what changed.
func (s *Server) Subscribe(st grpc.BidiStreamingServer[gnmi.SubscribeRequest, gnmi.SubscribeResponse]) error {
	if err := s.allow(st.Context(), false); err != nil {
		return err
	}
	req, err := st.Recv()
	if err != nil {
		return err
	}
	list := req.GetSubscribe()
	if list == nil {
		return status.Error(codes.InvalidArgument, "the first SubscribeRequest must carry a SubscriptionList")
	}
	subs := list.GetSubscription()
	if len(subs) == 0 {
		subs = []*gnmi.Subscription{{Path: &gnmi.Path{}}}
	}
	var asked []*gnmi.Path
	for _, sub := range subs {
		asked = append(asked, sub.GetPath())
	}
	enc := list.GetEncoding()
	if enc != gnmi.Encoding_JSON_IETF && enc != gnmi.Encoding_JSON {
		return status.Errorf(codes.Unimplemented, "%s: encoding %s is not supported: p4mesh sends JSON_IETF or JSON", pathList(list.GetPrefix(), asked), enc)
	}
	if err := checkModels(list.GetUseModels()); err != nil {
		return err
	}
	var paths []*gnmi.Path
	for _, sub := range subs {
		if err := checkOrigin(list.GetPrefix(), sub.GetPath()); err != nil {
			return err
		}
		full := fullPath(list.GetPrefix(), sub.GetPath())
		// A path the model cannot have would stream nothing, ever: say so.
		if err := s.checkRead(full); err != nil {
			return err
		}
		paths = append(paths, full)
	}
	target := respPrefix(list.GetPrefix(), asked...)
	ctx := st.Context()
	switch list.GetMode() {
	case gnmi.SubscriptionList_ONCE:
		if _, err := s.dump(st, target, paths, list.GetUpdatesOnly(), enc); err != nil {
			return err
		}
		return st.Send(syncResponse())
	case gnmi.SubscriptionList_POLL:
		// updates_only: the first answer is sync_response alone; each poll
		// then gets everything (§3.5.1.2).
		only := list.GetUpdatesOnly()
		for {
			if _, err := s.dump(st, target, paths, only, enc); err != nil {
				return err
			}
			only = false
			if err := st.Send(syncResponse()); err != nil {
				return err
			}
			r, err := st.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if r.GetPoll() == nil {
				return status.Error(codes.InvalidArgument, "a POLL subscription takes only Poll requests")
			}
		}
	}
	streams, err := s.streamSubs(subs, paths)
	if err != nil {
		return err
	}
	// Take the notification channel before reading: a change in between
	// then wakes the loop at once.
	wake := s.o.Controller.Changed()
	first, err := s.snapshot()
	if err != nil {
		return status.Errorf(codes.Internal, "build the tree: %v", err)
	}
	ribLeaves := map[string]*leaf{}
	if err := s.lookRIBs(streams, first); err != nil {
		return status.Errorf(codes.Internal, "build the tree: %v", err)
	}
	for _, sb := range streams {
		maps.Copy(ribLeaves, sb.ribCur)
		sb.ribSent, sb.ribSampled = sb.ribCur, sb.ribCur
	}
	if err := s.dumpGen(st, first, ribLeaves, target, paths, list.GetUpdatesOnly(), enc); err != nil {
		return err
	}
	if err := st.Send(syncResponse()); err != nil {
		return err
	}
	last := first.link // the generation sent up to
	now := time.Now()
	for _, sb := range streams {
		sb.sampled, sb.nextSample, sb.nextBeat = first.link, now.Add(sb.sample), now.Add(sb.heartbeat)
	}
	// The client may still send: a second SubscriptionList on the same
	// RPC is an error (§3.5.1.1); its end of the stream closing is not.
	refused := make(chan error, 1)
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				return // EOF: the client sends no more; else the RPC ended
			}
			if r.GetSubscribe() != nil {
				refused <- status.Errorf(codes.InvalidArgument, "%s: this Subscribe RPC has its SubscriptionList already: a subscription is changed by opening another RPC", pathList(list.GetPrefix(), asked))
				return
			}
		}
	}()
	state := time.NewTicker(s.o.StateInterval)
	defer state.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var due time.Time
		for _, sb := range streams {
			if sb.sample > 0 && (due.IsZero() || sb.nextSample.Before(due)) {
				due = sb.nextSample
			}
			if sb.heartbeat > 0 && (due.IsZero() || sb.nextBeat.Before(due)) {
				due = sb.nextBeat
			}
		}
		var timed <-chan time.Time
		if !due.IsZero() {
			timer.Reset(time.Until(due))
			timed = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-refused:
			return err
		case <-wake:
			wake = s.o.Controller.Changed()
		case <-state.C:
		case <-timed:
		}
		cur, err := s.snapshot()
		if err != nil {
			return status.Errorf(codes.Internal, "build the tree: %v", err)
		}
		if err := s.lookRIBs(streams, cur); err != nil {
			return status.Errorf(codes.Internal, "build the tree: %v", err)
		}
		n := s.streamNotification(streams, last, cur, time.Now(), target, enc)
		last = cur.link
		if len(n.Update)+len(n.Delete) == 0 {
			continue
		}
		if err := st.Send(&gnmi.SubscribeResponse{Response: &gnmi.SubscribeResponse_Update{Update: n}}); err != nil {
			return err
		}
	}
}

// streamSubs checks a STREAM list's subscriptions and makes them subs.
func (s *Server) streamSubs(subs []*gnmi.Subscription, paths []*gnmi.Path) ([]*sub, error) {
	var out []*sub
	for i, sn := range subs {
		p := paths[i]
		hb := time.Duration(sn.GetHeartbeatInterval())
		if hb != 0 && hb < s.o.Poll {
			return nil, status.Errorf(codes.InvalidArgument, "%s: heartbeat interval %s is below the minimum %s", pathString(p), hb, s.o.Poll)
		}
		iv := time.Duration(sn.GetSampleInterval())
		if iv != 0 && iv < s.o.Poll {
			return nil, status.Errorf(codes.InvalidArgument, "%s: sample interval %s is below the minimum %s", pathString(p), iv, s.o.Poll)
		}
		switch sn.GetMode() {
		case gnmi.SubscriptionMode_SAMPLE:
			if iv == 0 {
				iv = s.o.Poll // "as fast as possible" is the shortest interval
			}
			out = append(out, &sub{path: p, sample: iv, suppress: sn.GetSuppressRedundant(), heartbeat: hb})
		case gnmi.SubscriptionMode_ON_CHANGE:
			out = append(out, &sub{path: p, onChange: true, heartbeat: hb})
		case gnmi.SubscriptionMode_TARGET_DEFINED:
			// Per leaf (§3.5.1.5.2): configuration changes only when
			// someone sets it and the controller says so, so on change;
			// state is what the controller and OHCs report, some of it
			// counters, so sampled when the client gave an interval.
			out = append(out, &sub{path: p, only: configLeaves, onChange: true, heartbeat: hb})
			st := &sub{path: p, only: stateLeaves, heartbeat: hb}
			if iv > 0 {
				st.sample = iv
			} else {
				st.onChange = true
			}
			out = append(out, st)
		default:
			return nil, status.Errorf(codes.InvalidArgument, "%s: subscription mode %s is not supported", pathString(p), sn.GetMode())
		}
	}
	for _, sb := range out {
		if sb.only == configLeaves {
			continue // a RIB is state only
		}
		if place, sc := ribPlaceOf(sb.path); place != ribNone {
			sb.rib = &sc
		}
	}
	return out, nil
}

// lookRIBs brings the RIB leaves of the subscriptions that reach a RIB up
// to date with generation g; those that reach none cost nothing here.
func (s *Server) lookRIBs(streams []*sub, g *generation) error {
	if !slices.ContainsFunc(streams, func(sb *sub) bool { return sb.rib != nil }) {
		return nil
	}
	// The revision before the leaves: a change in between is read now
	// and read again at the next look.
	rev := s.o.Controller.RIBRevision()
	for _, sb := range streams {
		if err := s.lookRIB(sb, rev, g); err != nil {
			return err
		}
	}
	return nil
}

// streamNotification is what a STREAM list sends at now, having sent up
// to the generation of link last and now seeing cur: the leaves that changed under an
// ON_CHANGE subscription, everything under a subscription whose sample
// (or, with suppress_redundant, what changed since its last sample) or
// heartbeat is due. Each subscription stands on its own: a leaf another
// subscription of the list covers too is still sent when this one is
// due.
func (s *Server) streamNotification(streams []*sub, last *link, cur *generation, now time.Time, target *gnmi.Path, enc gnmi.Encoding) *gnmi.Notification {
	ups := map[string]*leaf{}
	dels := map[string]*gnmi.Path{}
	note := func(k string, p *gnmi.Path) {
		if l, ok := cur.leaf(k, p); ok {
			ups[k] = l
		} else {
			dels[k] = p
		}
	}
	var changed map[string]*gnmi.Path
	all := func(sb *sub) {
		cur.each(func(k string, l *leaf) {
			if sb.covers(l.path) {
				ups[k] = l
			}
		})
	}
	// ribDiff notes, of sb's RIB leaves, those that differ between from
	// and to, and ribAll every one of to.
	ribDiff := func(sb *sub, from, to map[string]*leaf) {
		if sb.rib == nil || maps.Equal(from, to) {
			return
		}
		d := map[string]*gnmi.Path{}
		diffLeaves(d, from, to)
		for k, p := range d {
			if !sb.covers(p) {
				continue
			}
			if l, ok := to[k]; ok {
				ups[k] = l
			} else {
				dels[k] = p
			}
		}
	}
	ribAll := func(sb *sub) {
		for k, l := range sb.ribCur {
			if sb.covers(l.path) {
				ups[k] = l
			}
		}
	}
	for _, sb := range streams {
		if sb.onChange {
			if changed == nil {
				changed = changedSince(last, cur.link)
			}
			for k, p := range changed {
				if sb.covers(p) {
					note(k, p)
				}
			}
			ribDiff(sb, sb.ribSent, sb.ribCur)
		}
		if sb.sample > 0 && !now.Before(sb.nextSample) {
			for k, p := range changedSince(sb.sampled, cur.link) {
				if sb.covers(p) {
					note(k, p)
				}
			}
			ribDiff(sb, sb.ribSampled, sb.ribCur)
			if !sb.suppress {
				all(sb)
				ribAll(sb)
			}
			sb.sampled, sb.nextSample, sb.ribSampled = cur.link, now.Add(sb.sample), sb.ribCur
		}
		if sb.heartbeat > 0 && !now.Before(sb.nextBeat) {
			all(sb)
			ribAll(sb)
			sb.nextBeat = now.Add(sb.heartbeat)
		}
		sb.ribSent = sb.ribCur
	}
	n := &gnmi.Notification{Timestamp: now.UnixNano(), Prefix: target}
	for _, l := range ups {
		n.Update = append(n.Update, &gnmi.Update{Path: l.path, Val: l.val(enc)})
	}
	for _, p := range dels {
		n.Delete = append(n.Delete, p)
	}
	sortNotification(n)
	return n
}

// dump sends every leaf under paths, with target's prefix, as one
// notification (unless updatesOnly) and returns the generation it read.
func (s *Server) dump(st grpc.BidiStreamingServer[gnmi.SubscribeRequest, gnmi.SubscribeResponse], target *gnmi.Path, paths []*gnmi.Path, updatesOnly bool, enc gnmi.Encoding) (*generation, error) {
	g, err := s.snapshot()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "build the tree: %v", err)
	}
	if updatesOnly {
		return g, nil
	}
	rib, err := s.ribLeavesOf(paths)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "build the tree: %v", err)
	}
	return g, s.dumpGen(st, g, rib, target, paths, false, enc)
}

// dumpGen sends every leaf of g and of rib (RIB leaves, which
// generations do not hold) under paths, as one notification, unless
// updatesOnly.
func (s *Server) dumpGen(st grpc.BidiStreamingServer[gnmi.SubscribeRequest, gnmi.SubscribeResponse], g *generation, rib map[string]*leaf, target *gnmi.Path, paths []*gnmi.Path, updatesOnly bool, enc gnmi.Encoding) error {
	if updatesOnly {
		return nil
	}
	n := &gnmi.Notification{Timestamp: time.Now().UnixNano(), Prefix: target}
	add := func(_ string, l *leaf) {
		if slices.ContainsFunc(paths, func(p *gnmi.Path) bool { return matches(p, l.path) }) {
			n.Update = append(n.Update, &gnmi.Update{Path: l.path, Val: l.val(enc)})
		}
	}
	g.each(add)
	for k, l := range rib {
		add(k, l)
	}
	if len(n.Update) == 0 {
		return nil
	}
	sortNotification(n)
	return st.Send(&gnmi.SubscribeResponse{Response: &gnmi.SubscribeResponse_Update{Update: n}})
}

func syncResponse() *gnmi.SubscribeResponse {
	return &gnmi.SubscribeResponse{Response: &gnmi.SubscribeResponse_SyncResponse{SyncResponse: true}}
}

// sortNotification orders updates and deletes by path, so output is stable.
func sortNotification(n *gnmi.Notification) {
	slices.SortFunc(n.Update, func(a, b *gnmi.Update) int {
		return strings.Compare(pathString(a.GetPath()), pathString(b.GetPath()))
	})
	slices.SortFunc(n.Delete, func(a, b *gnmi.Path) int { return strings.Compare(pathString(a), pathString(b)) })
}

// jsonLeaf is a leaf's JSON_IETF value as JSON: the same but for 64-bit
// numbers, which RFC 7951 (§6.1) quotes and JSON does not, and
// identities, which RFC 7951 qualifies by module.
func jsonLeaf(e *yang.Entry, raw []byte) []byte {
	if e.Type == nil {
		return raw
	}
	var fix func(any) any
	switch e.Type.Kind {
	case yang.Yint64, yang.Yuint64, yang.Ydecimal64:
		fix = func(v any) any {
			if s, ok := v.(string); ok && json.Valid([]byte(s)) {
				return json.Number(s)
			}
			return v
		}
	case yang.Yidentityref:
		fix = func(v any) any {
			if s, ok := v.(string); ok {
				if _, after, ok := strings.Cut(s, ":"); ok {
					return after
				}
			}
			return v
		}
	default:
		return raw
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return raw
	}
	if arr, ok := v.([]any); ok {
		for i := range arr {
			arr[i] = fix(arr[i])
		}
	} else {
		v = fix(v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return raw
	}
	return b
}
