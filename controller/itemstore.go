package controller

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	gomaps "maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/store"
)

// ItemStore keeps a controller's configuration in a store.Backend, one key
// per item, so that a change is one commit of what it touches and never a
// write of the whole configuration (which at 100k endpoints took seconds
// as YAML). The keys:
//
//	controller                               this controller's name
//	directory/<name>  vpc/<name>  host/<id>  endpoint/<id>  lb/<name>
//	policy/<name>  peering/<vpc>/<peer vpc>  route/<vpc>/<prefix>/<next hop>
//	gateway-pool/<name>
//	peer-side/<controller>/<vpc>/<peer vpc>  another controller's side
//	pool-mode/<vpc>/<peer vpc>               a mode the load trigger chose
//	migrated-from                            the data dir's YAML, once imported
//	runtime-revision                         a marker CommitRuntime rewrites
//
// each component path-escaped, so no name can make two keys collide.
//
// A configuration item's value is JSON: {"seq": n, "item": <its YAML
// document type>} (Go field names, so a field renamed in config.go is a
// format change). seq is the order the item was added in: lists are
// ordered in a configuration (the route manager and exports iterate them),
// and a store's keys are sorted, so a restart rebuilds each list by seq.
// A put of an existing item keeps its seq (it stays in place, as
// Change.ApplyTo does); a new item, or one deleted and put again in one
// change, gets the next one. A peer side's value is its protobuf,
// deterministically marshalled so that an unchanged side is an unchanged
// value.
//
// Revisions are the backend's: Commit, CommitAll and CommitPeerSides
// return the revision their commit got, which the Server gives its watch
// tables.
type ItemStore struct {
	b store.Backend

	// mu guards the fields below and is held through each commit, so
	// that the in-memory record of what is stored changes in commit order.
	mu sync.Mutex
	// rev is the backend's revision as of the last load or commit.
	rev uint64
	// seq is the order number of each configuration item stored; next
	// is the one the next new item gets.
	seq  seqs
	next uint64
	// sides are the peer sides stored, by controller then by "vpc/peer
	// vpc", and sideSums the SHA-256 of their stored values by key: what
	// tells a side that changed from one that did not. Not the values:
	// a side lists every host of its VPC, and a controller at a million
	// endpoints held tens of MB of them, twice (decoded in sides).
	sides    map[string]map[string]*p4meshv1.PeerSide
	sideSums map[string][sha256.Size]byte
	// cur is the configuration stored, as loaded or as the start
	// committed it, until Current hands it over; nil otherwise (Current
	// loads it again: keeping it up per change would cost the size of the
	// configuration, and keeping it at all a second copy of every item
	// beside the Server's model). damaged lists the items that did not
	// decode, by key.
	cur     *Config
	damaged map[string]error
	// migrated is the migrated-from value: the data directory whose
	// YAML files were imported, "" if none.
	migrated string
	// modes are the peering modes the load trigger chose, by key
	// (pool-mode/...), as stored.
	modes map[string][]byte
}

var _ Persistence = (*ItemStore)(nil)

const (
	controllerKey   = "controller"
	bgpKey          = "bgp"
	migratedKey     = "migrated-from"
	runtimeKey      = "runtime-revision"
	peerSidePrefix  = "peer-side/"
	poolModePrefix  = "pool-mode/"
	damagedPrefix   = "damaged/"
	itemCommitLimit = 30 * time.Second
)

// seqs are the order numbers of the items stored. Endpoints, the items
// that come by the million, have their own map keyed by id, with the id
// strings of the configuration they were stored from or loaded into
// (which the Server's model keeps): keyed by store key, each was a
// second copy of its id ("endpoint/<id>"), 32 MB of 85 at a million
// endpoints (issue 14).
type seqs struct {
	eps  map[string]uint64 // endpoints, by id
	rest map[string]uint64 // every other item, by key
}

const endpointPrefix = "endpoint/"

func newSeqs() seqs { return seqs{eps: map[string]uint64{}, rest: map[string]uint64{}} }

// endpointID is the id an endpoint's key names, ok false for a key that
// is not an endpoint's.
func endpointID(key string) (string, bool) {
	esc, ok := strings.CutPrefix(key, endpointPrefix)
	if !ok {
		return "", false
	}
	if id, err := url.PathUnescape(esc); err == nil {
		return id, true
	}
	return esc, true // a key no p4mesh wrote: by itself
}

func (q *seqs) get(key string) (uint64, bool) {
	if id, ok := endpointID(key); ok {
		n, ok := q.eps[id]
		return n, ok
	}
	n, ok := q.rest[key]
	return n, ok
}

// set makes n key's order number, 0 none. id is the endpoint's id if key
// is an endpoint's, in the string to keep ("": the key's).
func (q *seqs) set(key, id string, n uint64) {
	m := q.rest
	if kid, ok := endpointID(key); ok {
		m = q.eps
		if id == "" {
			id = kid
		}
		key = id
	}
	if n == 0 {
		delete(m, key)
	} else {
		m[key] = n
	}
}

func (q *seqs) len() int { return len(q.eps) + len(q.rest) }

// itemValue is a configuration item's stored value.
type itemValue struct {
	Seq  uint64          `json:"seq"`
	Item json.RawMessage `json:"item"`
}

func esc(s string) string { return url.PathEscape(s) }

func keyOf(kind string, parts ...string) string {
	var b strings.Builder
	b.WriteString(kind)
	for _, p := range parts {
		b.WriteByte('/')
		b.WriteString(esc(p))
	}
	return b.String()
}

func routeStoreKey(k RouteKey) string {
	return keyOf("route", k.VPC, text(k.Prefix), k.NextHop)
}

// OpenItemStore reads the configuration and peer sides kept in b. An item
// that does not decode is not an error here: Startup reports it (and
// --config-overrides-saved replaces it), as for a damaged YAML file.
func OpenItemStore(ctx context.Context, b store.Backend) (*ItemStore, error) {
	s := &ItemStore{b: b}
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// load reads everything from the backend. s.mu must be held, or s not yet
// shared.
func (s *ItemStore) load(ctx context.Context) error {
	items, rev, err := s.b.Load(ctx)
	if err != nil {
		return fmt.Errorf("load the configuration store: %w", err)
	}
	s.rev, s.next = rev, 1
	s.seq = newSeqs()
	s.sides = map[string]map[string]*p4meshv1.PeerSide{}
	s.sideSums = map[string][sha256.Size]byte{}
	s.damaged = map[string]error{}
	s.modes = map[string][]byte{}
	s.migrated = ""
	type entry struct {
		key string
		seq uint64
		raw json.RawMessage
	}
	lists := map[string][]entry{}
	var d configDoc
	for k, v := range items {
		kind, rest, _ := strings.Cut(k, "/")
		switch {
		case k == migratedKey:
			s.migrated = string(v)
			continue
		case k == runtimeKey:
			continue
		case kind+"/" == peerSidePrefix:
			parts := strings.Split(rest, "/")
			side := &p4meshv1.PeerSide{}
			if len(parts) != 3 {
				s.damaged[k] = errors.New("a peer side's key is peer-side/<controller>/<vpc>/<peer vpc>")
				continue
			}
			if err := proto.Unmarshal(v, side); err != nil {
				s.damaged[k] = err
				continue
			}
			ctl, _ := url.PathUnescape(parts[0])
			if s.sides[ctl] == nil {
				s.sides[ctl] = map[string]*p4meshv1.PeerSide{}
			}
			s.sides[ctl][side.GetVpc()+"/"+side.GetPeerVpc()] = side
			s.sideSums[k] = sha256.Sum256(v)
			continue
		case kind+"/" == damagedPrefix:
			continue
		case kind+"/" == poolModePrefix:
			s.modes[k] = v
			continue
		}
		var iv itemValue
		if err := json.Unmarshal(v, &iv); err != nil {
			s.damaged[k] = err
			continue
		}
		if _, ep := endpointID(k); !ep {
			s.seq.set(k, "", iv.Seq) // endpoints': as decoded, below
		}
		s.next = max(s.next, iv.Seq+1)
		if k == controllerKey {
			if err := json.Unmarshal(iv.Item, &d.Controller); err != nil {
				s.damaged[k] = err
			}
			continue
		}
		if k == bgpKey {
			var g bgpGlobalDoc
			if err := json.Unmarshal(iv.Item, &g); err != nil {
				s.damaged[k] = err
				continue
			}
			d.BGP = &bgpDoc{LocalAS: g.LocalAS, RouterID: g.RouterID, ListenAddress: g.ListenAddress, ListenPort: g.ListenPort, VPCs: g.VPCs}
			continue
		}
		lists[kind] = append(lists[kind], entry{k, iv.Seq, iv.Item})
	}
	decode := func(kind string, add func(json.RawMessage) error) {
		es := lists[kind]
		slices.SortFunc(es, func(a, b entry) int { return cmp.Compare(a.seq, b.seq) })
		for _, e := range es {
			if err := add(e.raw); err != nil {
				s.damaged[e.key] = err
			}
		}
		delete(lists, kind)
	}
	decode("directory", appendJSON(&d.Directory))
	decode("vpc", appendJSON(&d.VPCs))
	decode("host", appendJSON(&d.Hosts))
	epIDs := appendJSON(&d.Endpoints)
	for _, e := range slices.SortedFunc(slices.Values(lists["endpoint"]), func(a, b entry) int { return cmp.Compare(a.seq, b.seq) }) {
		id := ""
		if err := epIDs(e.raw); err != nil {
			s.damaged[e.key] = err
		} else {
			id = d.Endpoints[len(d.Endpoints)-1].ID
		}
		s.seq.set(e.key, id, e.seq)
	}
	delete(lists, "endpoint")
	decode("lb", appendJSON(&d.LoadBalancers))
	decode("route", appendJSON(&d.Routes))
	decode("policy", appendJSON(&d.ExportPolicies))
	decode("peering", appendJSON(&d.Peerings))
	decode("gateway-pool", appendJSON(&d.GatewayPools))
	var neighbors []bgpNeighborDoc
	decode("bgp-neighbor", appendJSON(&neighbors))
	if d.BGP != nil {
		d.BGP.Neighbors = neighbors
	} else if len(neighbors) > 0 {
		s.damaged[bgpKey] = errors.New("BGP neighbors are stored without the bgp section")
	}
	for _, es := range lists {
		for _, e := range es {
			s.damaged[e.key] = errors.New("not a kind of item this p4mesh knows")
		}
	}
	s.cur = nil
	if len(items) == 0 || rev == 0 {
		return nil
	}
	c, err := d.config()
	if err != nil {
		s.damaged["(items)"] = err
		return nil
	}
	if d.Controller == "" && s.seq.len() == 0 {
		return nil // peer sides only: no configuration
	}
	s.cur = c
	return nil
}

func appendJSON[T any](list *[]T) func(json.RawMessage) error {
	return func(raw json.RawMessage) error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		*list = append(*list, v)
		return nil
	}
}

// damagedErr describes the items that did not decode, nil if none.
func (s *ItemStore) damagedErr() error {
	if len(s.damaged) == 0 {
		return nil
	}
	keys := slices.Sorted(gomaps.Keys(s.damaged))
	var errs []error
	for i, k := range keys {
		if i == 10 {
			errs = append(errs, fmt.Errorf("and %d more", len(keys)-i))
			break
		}
		errs = append(errs, fmt.Errorf("%s: %w", k, s.damaged[k]))
	}
	return fmt.Errorf("the configuration store holds items that do not decode:\n%w", errors.Join(errs...))
}

// Current is the configuration stored, nil if none; it is the caller's,
// and the store keeps no reference to it. The one Startup or the load
// left is handed over; after that, or a commit, it is loaded again from
// the backend, at the cost of the configuration's size: a Server asks
// for it once, at its start, and builds its model from it.
func (s *ItemStore) Current() *Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.currentLocked()
	if err != nil {
		return nil
	}
	s.cur = nil
	return c
}

// currentLocked is the configuration stored, loaded again if it is not
// at hand. s.mu must be held.
func (s *ItemStore) currentLocked() (*Config, error) {
	if s.cur == nil && s.seq.len() > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), itemCommitLimit)
		defer cancel()
		if err := s.load(ctx); err != nil {
			return nil, err
		}
	}
	return s.cur, nil
}

// Revision is the backend's revision as of the last load or commit.
func (s *ItemStore) Revision() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev
}

// Commit makes ch one commit of the items it puts and deletes. It never
// calls whole.
func (s *ItemStore) Commit(ch *Change, _ func() *Config) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ops, seqs, err := s.changeOps(ch)
	if err != nil {
		return 0, err
	}
	if len(ops) == 0 {
		return s.rev, nil
	}
	rev, err := s.commit(ops)
	if err != nil {
		return 0, err
	}
	for k, q := range seqs {
		s.seq.set(k, q.id, q.n)
	}
	s.cur = nil
	return rev, nil
}

func (s *ItemStore) commit(ops []store.Op) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), itemCommitLimit)
	defer cancel()
	rev, err := s.b.Commit(ctx, ops)
	if err != nil {
		return 0, fmt.Errorf("persist the change: %w", err)
	}
	s.rev = rev
	return rev, nil
}

// changeOps are the ops of ch and the seq each key will have (0: deleted).
func (s *ItemStore) changeOps(ch *Change) ([]store.Op, map[string]seqAfter, error) {
	b := opBuilder{s: s, at: map[string]int{}, seqs: map[string]seqAfter{}, next: s.next}
	if ch.Controller != "" {
		if err := b.put(controllerKey, ch.Controller, false); err != nil {
			return nil, nil, err
		}
	}
	dels := func(kind string, names []string) {
		for _, n := range names {
			b.del(keyOf(kind, n))
		}
	}
	dels("directory", ch.DeleteDirectory)
	dels("vpc", ch.DeleteVPCs)
	dels("host", ch.DeleteHosts)
	dels("endpoint", ch.DeleteEndpoints)
	dels("lb", ch.DeleteLoadBalancers)
	dels("policy", ch.DeleteExportPolicies)
	dels("gateway-pool", ch.DeleteGatewayPools)
	for _, k := range ch.DeleteRoutes {
		b.del(routeStoreKey(k))
	}
	for _, k := range ch.DeletePeerings {
		b.del(keyOf("peering", k.VPC, k.PeerVPC))
	}
	// The docs of the items put, in the form the YAML has: one place
	// says how an item is written.
	d := docOf(&Config{Directory: ch.Directory, VPCs: ch.VPCs, Hosts: ch.Hosts, Endpoints: ch.Endpoints,
		LoadBalancers: ch.LoadBalancers, Routes: ch.Routes, ExportPolicies: ch.ExportPolicies, Peerings: ch.Peerings,
		GatewayPools: ch.GatewayPools})
	if err := b.putAll(d, false); err != nil {
		return nil, nil, err
	}
	s.next = b.next
	return b.ops, b.seqs, nil
}

// opBuilder collects the ops of one commit, one per key, the last word on
// a key winning.
type opBuilder struct {
	s    *ItemStore
	ops  []store.Op
	at   map[string]int      // key -> index in ops
	seqs map[string]seqAfter // key -> seq after the commit
	next uint64
	// last is, per kind, the seq of the item last put by putAll, which
	// keeps the whole configuration's order (CommitAll).
	last map[string]uint64
}

// seqAfter is an item's seq after a commit, 0 deleted, and the id of an
// endpoint's (seqs.set).
type seqAfter struct {
	n  uint64
	id string
}

func (b *opBuilder) op(key string, v []byte) {
	if i, ok := b.at[key]; ok {
		b.ops[i].Value = v
		return
	}
	b.at[key] = len(b.ops)
	b.ops = append(b.ops, store.Op{Key: key, Value: v})
}

func (b *opBuilder) del(key string) {
	_, stored := b.s.seq.get(key)
	if _, ok := b.at[key]; !ok && !stored {
		return // absent: deleting it does nothing
	}
	b.op(key, nil)
	b.seqs[key] = seqAfter{}
}

// put stores item under key. An item already stored keeps its seq, unless
// this commit deleted it (it then moves to the end, as ApplyTo moves it)
// or, ordered, keeping it would put it before an item put earlier in its
// list.
func (b *opBuilder) put(key string, item any, ordered bool) error {
	return b.putID(key, "", item, ordered)
}

// putID is put of an endpoint's item, id its id (seqs.set).
func (b *opBuilder) putID(key, id string, item any, ordered bool) error {
	raw, err := json.Marshal(item)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	kind, _, _ := strings.Cut(key, "/")
	p, pending := b.seqs[key]
	q := p.n
	if !pending {
		q, _ = b.s.seq.get(key)
	}
	if q == 0 || (ordered && q <= b.last[kind]) {
		q = b.next
		b.next++
	}
	if ordered {
		b.last[kind] = q
	}
	v, err := json.Marshal(itemValue{Seq: q, Item: raw})
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	b.op(key, v)
	b.seqs[key] = seqAfter{q, id}
	return nil
}

// putAll puts every item of d, in order.
func (b *opBuilder) putAll(d *configDoc, ordered bool) error {
	var errs []error
	put := func(key string, item any) { errs = append(errs, b.put(key, item, ordered)) }
	for _, e := range d.Directory {
		put(keyOf("directory", e.Name), e)
	}
	for _, v := range d.VPCs {
		put(keyOf("vpc", v.Name), v)
	}
	for _, h := range d.Hosts {
		put(keyOf("host", h.ID), h)
	}
	for _, e := range d.Endpoints {
		errs = append(errs, b.putID(keyOf("endpoint", e.ID), e.ID, e, ordered))
	}
	for _, l := range d.LoadBalancers {
		put(keyOf("lb", l.Name), l)
	}
	for _, r := range d.Routes {
		put(keyOf("route", r.VPC, r.Prefix, r.NextHop), r)
	}
	for _, p := range d.ExportPolicies {
		put(keyOf("policy", p.Name), p)
	}
	for _, p := range d.Peerings {
		put(keyOf("peering", p.VPC, p.PeerVPC), p)
	}
	for _, p := range d.GatewayPools {
		put(keyOf("gateway-pool", p.Name), p)
	}
	if d.BGP != nil {
		// The speaker's settings are one item, each neighbor another.
		put(bgpKey, d.BGP.global())
		for _, n := range d.BGP.Neighbors {
			put(keyOf("bgp-neighbor", n.VPC, n.Address), n)
		}
	}
	return errors.Join(errs...)
}

// CommitAll makes c the stored configuration in one commit of the
// difference: the items that changed, moved or went. The whole
// configuration is one commit, so an import is atomic; a backend that
// caps the ops of a commit (etcd: 127 by default) refuses an import
// larger than that, with an error saying so, and changes nothing.
func (s *ItemStore) CommitAll(c *Config) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commitAll(c, nil)
}

// commitAll is CommitAll with extra ops in the same commit. s.mu must be
// held.
func (s *ItemStore) commitAll(c *Config, extra []store.Op) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), itemCommitLimit)
	defer cancel()
	stored, _, err := s.b.Load(ctx)
	if err != nil {
		return 0, fmt.Errorf("persist the configuration: %w", err)
	}
	b := opBuilder{s: s, at: map[string]int{}, seqs: map[string]seqAfter{}, next: s.next, last: map[string]uint64{}}
	for _, op := range extra {
		b.op(op.Key, op.Value)
	}
	if err := b.put(controllerKey, c.Controller, false); err != nil {
		return 0, err
	}
	if err := b.putAll(docOf(c), true); err != nil {
		return 0, err
	}
	// What did not change is not written; what is no longer there goes.
	ops := b.ops[:0]
	for _, op := range b.ops {
		if old, ok := stored[op.Key]; ok && op.Value != nil && string(old) == string(op.Value) {
			continue
		}
		ops = append(ops, op)
	}
	for k := range stored {
		// Modes stay: the next decision drops those of peerings gone.
		if _, ok := b.at[k]; ok || k == migratedKey || strings.HasPrefix(k, peerSidePrefix) || strings.HasPrefix(k, damagedPrefix) || strings.HasPrefix(k, poolModePrefix) {
			continue
		}
		ops = append(ops, store.Op{Key: k})
		b.seqs[k] = seqAfter{}
	}
	if len(ops) == 0 {
		return s.rev, nil
	}
	rev, err := s.commit(ops)
	if err != nil {
		return 0, err
	}
	s.next = b.next
	for k, q := range b.seqs {
		s.seq.set(k, q.id, q.n)
	}
	for _, op := range extra {
		if !strings.HasPrefix(op.Key, peerSidePrefix) {
			continue
		}
		if op.Value == nil {
			delete(s.sideSums, op.Key)
		} else {
			s.sideSums[op.Key] = sha256.Sum256(op.Value)
		}
	}
	s.cur = nil // the caller's; Startup and MigrateDataDir keep theirs
	clear(s.damaged)
	return rev, nil
}

// CommitRuntime gives a change that is not persisted (routes learned
// over BGP or imported from peers, which come back from their sources
// after a restart) a revision of the store, so that the watch tables move
// to one no commit of configuration will reuse. It rewrites one small
// marker: the store's revisions number commits, and only a commit makes
// one; a replica that leads next continues from it.
func (s *ItemStore) CommitRuntime() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commit([]store.Op{{Key: runtimeKey, Value: []byte(strconv.FormatUint(s.rev+1, 10))}})
}

// SavedMode is a peering's mode as the load trigger chose it.
type SavedMode struct {
	Direct bool   `json:"direct"`
	Reason string `json:"reason"`
}

func poolModeKey(k PeeringKey) string { return keyOf("pool-mode", k.VPC, k.PeerVPC) }

// PoolModes returns the peering modes the load trigger chose and
// CommitModes kept. A value that does not decode is left out: the load
// trigger decides that peering again.
func (s *ItemStore) PoolModes() map[PeeringKey]SavedMode {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[PeeringKey]SavedMode, len(s.modes))
	for k, v := range s.modes {
		parts := strings.Split(strings.TrimPrefix(k, poolModePrefix), "/")
		var m SavedMode
		if len(parts) != 2 || json.Unmarshal(v, &m) != nil {
			continue
		}
		vpc, err1 := url.PathUnescape(parts[0])
		peer, err2 := url.PathUnescape(parts[1])
		if err1 != nil || err2 != nil {
			continue
		}
		out[PeeringKey{VPC: vpc, PeerVPC: peer}] = m
	}
	return out
}

// CommitModes keeps the modes in set and forgets those in del, in one
// commit that also gives the runtime change publishing them its
// revision (as CommitRuntime): a restarted controller, or the replica
// leading next, starts from the modes its hosts were given rather than
// flapping every loaded peering back to its pool until load is measured
// again.
func (s *ItemStore) CommitModes(set map[PeeringKey]SavedMode, del []PeeringKey) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ops := []store.Op{{Key: runtimeKey, Value: []byte(strconv.FormatUint(s.rev+1, 10))}}
	for k, m := range set {
		v, err := json.Marshal(m)
		if err != nil {
			return 0, err
		}
		ops = append(ops, store.Op{Key: poolModeKey(k), Value: v})
	}
	for _, k := range del {
		if _, ok := s.modes[poolModeKey(k)]; ok {
			ops = append(ops, store.Op{Key: poolModeKey(k)})
		}
	}
	rev, err := s.commit(ops)
	if err != nil {
		return 0, err
	}
	for _, op := range ops[1:] {
		if op.Value == nil {
			delete(s.modes, op.Key)
		} else {
			s.modes[op.Key] = op.Value
		}
	}
	return rev, nil
}

// PeerSides returns the peer sides stored, by controller; they are the
// caller's.
func (s *ItemStore) PeerSides() (map[string]map[string]*p4meshv1.PeerSide, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]map[string]*p4meshv1.PeerSide{}
	for ctl, sides := range s.sides {
		out[ctl] = gomaps.Clone(sides)
	}
	return out, false, nil
}

// CommitPeerSides stores sides as all of controller's, in one commit of
// what changed; none (nil) forgets the controller. changed is false when
// they are what is stored, and nothing was committed.
func (s *ItemStore) CommitPeerSides(controller string, sides map[string]*p4meshv1.PeerSide) (rev uint64, changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ops, err := s.sideOps(controller, sides)
	if err != nil || len(ops) == 0 {
		return s.rev, false, err
	}
	if rev, err = s.commit(ops); err != nil {
		return 0, false, err
	}
	for _, op := range ops {
		if op.Value == nil {
			delete(s.sideSums, op.Key)
		} else {
			s.sideSums[op.Key] = sha256.Sum256(op.Value)
		}
	}
	if len(sides) == 0 {
		delete(s.sides, controller)
	} else {
		s.sides[controller] = gomaps.Clone(sides)
	}
	return rev, true, nil
}

// sideOps are the ops that make sides controller's stored ones. s.mu must
// be held.
func (s *ItemStore) sideOps(controller string, sides map[string]*p4meshv1.PeerSide) ([]store.Op, error) {
	var ops []store.Op
	want := map[string]bool{}
	stored := s.sides[controller]
	for key, side := range sides {
		k := keyOf("peer-side", controller, side.GetVpc(), side.GetPeerVpc())
		if _, ok := s.sideSums[k]; ok && stored[key] == side {
			// The very message stored (sides are never modified once
			// handed over): unchanged, with no encoding and hashing of
			// every host of its VPC on every change of any side.
			want[k] = true
			continue
		}
		v, err := proto.MarshalOptions{Deterministic: true}.Marshal(side)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", k, err)
		}
		if want[k] {
			continue
		}
		want[k] = true
		if old, ok := s.sideSums[k]; ok && old == sha256.Sum256(v) {
			continue
		}
		ops = append(ops, store.Op{Key: k, Value: v})
	}
	prefix := keyOf("peer-side", controller) + "/"
	for k := range s.sideSums {
		if strings.HasPrefix(k, prefix) && !want[k] {
			ops = append(ops, store.Op{Key: k})
		}
	}
	return ops, nil
}

// Startup is Store.Startup on the items: the same rule decides between
// what is stored and fromFlag. Items that do not decode are the damaged
// file's case: an error, unless overrideSaved, which moves them aside
// (under damaged/<time>/ in the store, never deleted) in the commit that
// applies fromFlag.
func (s *ItemStore) Startup(fromFlag *Config, overrideSaved bool) (StartupResult, error) {
	var res StartupResult
	s.mu.Lock()
	saved, err := s.currentLocked()
	derr := s.damagedErr()
	s.mu.Unlock()
	if err != nil {
		return res, err
	}
	if derr != nil {
		if !overrideSaved || fromFlag == nil {
			return res, fmt.Errorf("%w\nThe controller does not start from it. Restore the data directory from a backup; or start from --config "+
				"with --config-overrides-saved, which moves those items aside (under %s<time>/ in the store) and loses what was accepted since --config was written",
				derr, damagedPrefix)
		}
		if verr := fromFlag.Validate(); verr != nil {
			return res, fmt.Errorf("--config: invalid configuration:\n%w", verr)
		}
		fromFlag = fromFlag.Clone()
		s.mu.Lock()
		defer s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), itemCommitLimit)
		defer cancel()
		items, _, err := s.b.Load(ctx)
		if err != nil {
			return res, err
		}
		aside := damagedPrefix + time.Now().UTC().Format("20060102T150405Z") + "/"
		var extra []store.Op
		for k := range s.damaged {
			if v, ok := items[k]; ok {
				extra = append(extra, store.Op{Key: k}, store.Op{Key: aside + k, Value: v})
			}
		}
		if _, err := s.commitAll(fromFlag, extra); err != nil {
			return res, fmt.Errorf("--config: %w", err)
		}
		s.cur = fromFlag // for Current to hand over
		res.SetAside, res.Unloadable = aside+" in the store", derr
		return res, nil
	}
	if saved != nil && fromFlag != nil && !fromFlag.Equal(saved) {
		res.Differences = DiffConfigs(saved, fromFlag, "saved", "--config")
	}
	switch {
	case saved != nil && (res.Differences == nil || !overrideSaved):
		if err := saved.Validate(); err != nil {
			return res, fmt.Errorf("saved configuration: invalid configuration:\n%w\nTo replace it, start with a corrected --config and --config-overrides-saved", err)
		}
		res.FromSaved = true
		return res, nil
	case fromFlag != nil:
		if err := fromFlag.Validate(); err != nil {
			return res, fmt.Errorf("--config: invalid configuration:\n%w", err)
		}
		c := fromFlag.Clone()
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, err := s.commitAll(c, nil); err != nil {
			return res, fmt.Errorf("--config: %w", err)
		}
		s.cur = c // for Current to hand over
		return res, nil
	default:
		return res, ErrNoConfig
	}
}

// MigrateDataDir imports what an older p4mesh kept in the data directory
// dir (config.yaml, peer-sides.json) into an empty store, in one commit,
// and then renames those files to *.migrated so that nobody mistakes them
// for what is current. It reports the file imported, "" when there was
// nothing to do: no config.yaml, or a store that already has a
// configuration. A crash between the commit and the renames is finished
// on the next start (the commit records that it imported dir).
//
// A config.yaml that is damaged or does not validate is an error, as it
// was for the YAML store, and nothing is imported; a damaged
// peer-sides.json only costs the fast path and is skipped (warn says so).
func (s *ItemStore) MigrateDataDir(dir string, warn func(msg string, args ...any)) (string, error) {
	yamlStore := &Store{path: filepath.Join(dir, storeFile)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := os.Stat(yamlStore.path); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if s.migrated != "" || s.seq.len() > 0 {
		if s.migrated == "" {
			warn("the data directory holds a config.yaml but the store already has a configuration: the file is ignored", "path", yamlStore.path)
			return "", nil
		}
		return yamlStore.path, renameMigrated(dir)
	}
	c, ok, _, err := yamlStore.load()
	if err != nil {
		return "", fmt.Errorf("migrate %s into the store: %w\nRestore it from a backup, or move it away to start from --config", yamlStore.path, err)
	}
	if !ok {
		return "", nil
	}
	if err := c.Validate(); err != nil {
		return "", fmt.Errorf("migrate %s into the store: invalid configuration:\n%w", yamlStore.path, err)
	}
	extra := []store.Op{{Key: migratedKey, Value: []byte(dir)}}
	sides, _, err := yamlStore.PeerSides()
	if err != nil {
		warn("saved peer sides unusable, not imported; waiting to hear from the peer controllers", "err", err)
	}
	for ctl, cs := range sides {
		ops, err := s.sideOps(ctl, cs)
		if err != nil {
			return "", err
		}
		extra = append(extra, ops...)
	}
	if _, err := s.commitAll(c, extra); err != nil {
		return "", fmt.Errorf("migrate %s into the store: %w", yamlStore.path, err)
	}
	s.cur = c // what Startup finds saved
	s.migrated = dir
	for ctl, cs := range sides {
		s.sides[ctl] = cs
	}
	return yamlStore.path, renameMigrated(dir)
}

func renameMigrated(dir string) error {
	for _, f := range []string{storeFile, peerSidesFile} {
		p := filepath.Join(dir, f)
		if err := os.Rename(p, p+".migrated"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("imported into the store, but: %w", err)
		}
	}
	return nil
}
