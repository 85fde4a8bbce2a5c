package dataplane

import (
	"bytes"
	mathbits "math/bits"
	"slices"
	"sync"
	"sync/atomic"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/p4rt"
)

// Store holds the entities of one committed pipeline: table entries,
// default entries, action profile members and groups, and direct counters.
//
// The P4Runtime server is its only writer and holds mu for a whole
// WriteRequest, so a Read or a packet sees a Write whole or not at all (the
// spec's "strictly serializable" writes). The packet pipeline is a reader:
// it holds RLock per packet or per burst, and every *Entry, *Member and
// *Group it obtains is valid only until it releases the lock.
type Store struct {
	mu sync.RWMutex

	schema   *p4rt.Schema
	tables   map[uint32]*Table
	order    []*Table // P4Info order, for wildcard reads
	profiles map[uint32]*profile

	// sc is the parse scratch of the writer, who holds mu.
	sc scratch
	// free holds the blocks of deleted entries that no reader can still
	// see, for inserts to reuse: a steady flow of inserts and deletes then
	// allocates nothing. A deleted entry goes to retired instead while a
	// Read is in flight (readers > 0), since a Read sends the canonical
	// messages it collected after releasing mu; retired blocks move to
	// free at the first write that finds no Read in flight. The pipeline
	// holds mu for as long as it uses an entry, so it needs no count.
	free, retired []*entryBlock
	readers       atomic.Int32
}

// maxFree bounds the blocks kept for reuse (about 1.6 KB each for the
// real pipeline's tables, so about 50 MB at most), so that a switch
// emptied of a million entries does not hold their memory: churn of up to
// this many entries between inserts allocates nothing.
const maxFree = 1 << 15

// takeBlock returns an empty entry block, a recycled one when there is one.
// The caller holds mu.
func (s *Store) takeBlock() *entryBlock {
	if n := len(s.free); n > 0 {
		b := s.free[n-1]
		s.free[n-1] = nil
		s.free = s.free[:n-1]
		return b
	}
	b := &entryBlock{}
	b.e.blk = b
	return b
}

// dropBlock takes the block of e, an entry just removed from its table or
// replaced, for reuse. The caller holds mu.
func (s *Store) dropBlock(e *Entry) {
	b := e.blk
	if b == nil {
		return
	}
	if s.readers.Load() > 0 {
		if len(s.retired) < maxFree {
			s.retired = append(s.retired, b)
		}
		return
	}
	s.recycle(b)
}

// recycle resets b and puts it on the free list.
func (s *Store) recycle(b *entryBlock) {
	if len(s.free) >= maxFree {
		return
	}
	b.reset()
	s.free = append(s.free, b)
}

// reclaim moves the retired blocks to the free list once no Read is in
// flight: a Read that starts later takes mu after this writer and so
// never sees them. The caller holds mu.
func (s *Store) reclaim() {
	if len(s.retired) == 0 || s.readers.Load() > 0 {
		return
	}
	for i, b := range s.retired {
		s.recycle(b)
		s.retired[i] = nil
	}
	s.retired = s.retired[:0]
}

// NewStore makes an empty store for the pipeline s: every table empty, every
// default entry the one the P4Info declares (initial_default_action or
// const_default_action_id), or none when the P4Info does not say.
func NewStore(s *p4rt.Schema) *Store {
	st := &Store{schema: s, tables: map[uint32]*Table{}, profiles: map[uint32]*profile{}}
	for _, ti := range s.Tables() {
		t := newTable(ti)
		st.tables[ti.ID()] = t
		st.order = append(st.order, t)
	}
	for _, pi := range s.P4Info().GetActionProfiles() {
		p, err := s.ActionProfileByID(pi.GetPreamble().GetId())
		if err != nil {
			continue
		}
		st.profiles[p.ID()] = &profile{info: p, members: map[uint32]*Member{}, groups: map[uint32]*Group{}, oneshot: map[*Group]struct{}{}}
	}
	for _, t := range st.order {
		t.initial = st.p4infoDefault(t)
		t.Default = t.initial
	}
	return st
}

// RLock locks the store for reading; the pipeline holds it while it looks
// entries up for a packet (or a burst of packets).
func (s *Store) RLock() { s.mu.RLock() }

// RUnlock undoes RLock.
func (s *Store) RUnlock() { s.mu.RUnlock() }

// Schema is the P4Info index of the store's pipeline.
func (s *Store) Schema() *p4rt.Schema { return s.schema }

// Table returns the table with P4Runtime id, or nil if the pipeline has
// none. The pipeline resolves its tables once, by name through the schema,
// when a pipeline is committed.
func (s *Store) Table(id uint32) *Table { return s.tables[id] }

// Member returns a member of an action profile, or nil.
func (s *Store) Member(profileID, memberID uint32) *Member {
	p := s.profiles[profileID]
	if p == nil {
		return nil
	}
	return p.members[memberID]
}

// Group returns a group of an action selector, or nil.
func (s *Store) Group(profileID, groupID uint32) *Group {
	p := s.profiles[profileID]
	if p == nil {
		return nil
	}
	return p.groups[groupID]
}

// tableKind picks the lookup structure a table needs.
type tableKind uint8

const (
	kindExact   tableKind = iota // only exact fields: one hash map
	kindLPM                      // exact fields and one LPM field: a hash map per prefix length
	kindTernary                  // anything with ternary, range or optional: priority-ordered scan
)

// fieldSpec is a match field with its place in a lookup key.
type fieldSpec struct {
	id    uint32
	name  string
	width int
	n     int // bytes: (width+7)/8
	off   int // offset in the lookup key
	kind  p4configv1.MatchField_MatchType
}

// Table is one P4 table of the pipeline.
type Table struct {
	// Info is the table's P4Info, with its fields, actions, profile and
	// direct counter resolved.
	Info *p4rt.Table
	// Default is the entry a miss runs. It is nil when the table has none
	// (a selector table, or a P4Info that does not name the default).
	Default *Entry

	initial *Entry // the default entry of the P4Info, restored by a MODIFY without action

	fields   []fieldSpec // by field id
	keyLen   int
	kind     tableKind
	lpmField int // index in fields of the LPM field, kindLPM only
	size     int // max entries; 0 = no limit
	count    int

	// entries maps the identity key (match and priority, see appendIdentity)
	// of every entry. For exact tables it is also the lookup map.
	entries map[string]*Entry
	// byLen[p] maps the masked lookup key of the entries with prefix length
	// p (kindLPM without lpmIx); lens lists the lengths present, longest
	// first (kindLPM).
	byLen []map[string]*Entry
	lens  []int
	// lpmIx holds the entries of an LPM table whose key fits an lpmKey and
	// whose LPM field has 16 to 80 bits (every LPM table of vpc_peering.p4)
	// in place of byLen, with an index of the lengths present.
	lpmIx    *lpmIndex
	prio     []*Entry // kindTernary: highest priority first, then oldest first
	head     *Entry   // insertion order, for reads that come back in a stable order
	tail     *Entry
	directIx bool // the table has a direct counter
}

func newTable(ti *p4rt.Table) *Table {
	t := &Table{Info: ti, entries: map[string]*Entry{}, size: int(ti.GetSize()), directIx: ti.Counter != nil}
	for _, f := range ti.GetMatchFields() {
		w := int(f.GetBitwidth())
		t.fields = append(t.fields, fieldSpec{id: f.GetId(), name: f.GetName(), width: w, n: (w + 7) / 8, kind: f.GetMatchType()})
	}
	slices.SortFunc(t.fields, func(a, b fieldSpec) int { return int(a.id) - int(b.id) })
	lpm := 0
	t.kind = kindExact
	for i := range t.fields {
		t.fields[i].off = t.keyLen
		t.keyLen += t.fields[i].n
		switch t.fields[i].kind {
		case p4configv1.MatchField_EXACT:
		case p4configv1.MatchField_LPM:
			lpm++
			t.lpmField = i
		default:
			t.kind = kindTernary
		}
	}
	if t.kind == kindExact && lpm == 1 {
		t.kind = kindLPM
		w := t.fields[t.lpmField].width
		if w >= 16 && w <= 16+64 && t.keyLen <= len(lpmKey{}) {
			t.lpmIx = &lpmIndex{byLen: make([]map[lpmKey]*Entry, w+1),
				long: map[lpmKey]uint64{}, mid: map[lpmKey]uint64{}, counts: map[lenKey]int32{}}
		} else {
			t.byLen = make([]map[string]*Entry, w+1)
		}
	} else if lpm > 1 {
		// More than one LPM field has no longest-prefix order of its own;
		// P4 targets treat such a key like a ternary one.
		t.kind = kindTernary
	}
	return t
}

// Len is the number of entries in the table, the default entry aside.
func (t *Table) Len() int { return t.count }

// KeyLen is the length Lookup expects of a key: the sum of the byte widths
// of the match fields.
func (t *Table) KeyLen() int { return t.keyLen }

// Lookup finds the entry a packet with key hits, or t.Default on a miss.
//
// key is the concatenation of the table's match field values in field-ID
// order, each big-endian and padded to (bitwidth+7)/8 bytes. Exact tables
// cost one map lookup; LPM tables one per prefix length that has entries
// under the key's /16 or /8 (see lpmIndex), longest first; ternary, range
// and optional tables a scan in priority order.
// Lookup does not allocate.
func (t *Table) Lookup(key []byte) *Entry {
	if len(key) != t.keyLen {
		return t.Default
	}
	switch t.kind {
	case kindExact:
		if e := t.entries[string(key)]; e != nil {
			return e
		}
	case kindLPM:
		if e := t.lookupLPM(key); e != nil {
			return e
		}
	default:
		for _, e := range t.prio {
			if e.matches(key) {
				return e
			}
		}
	}
	return t.Default
}

func (t *Table) lookupLPM(key []byte) *Entry {
	if t.lpmIx != nil {
		return t.lookupIndexed(key)
	}
	var stack [64]byte
	var buf []byte
	if len(key) <= len(stack) {
		buf = stack[:len(key)]
	} else {
		buf = make([]byte, len(key))
	}
	copy(buf, key)
	f := &t.fields[t.lpmField]
	field := buf[f.off : f.off+f.n]
	lead := f.n*8 - f.width
	for _, plen := range t.lens {
		// Each pass clears more bits than the last, since lens is
		// longest first, so masking in place is enough.
		maskFrom(field, lead+plen)
		if e := t.byLen[plen][string(buf)]; e != nil {
			return e
		}
	}
	return nil
}

// lpmKey is an LPM table's lookup key held in place, zero-padded: as a map
// key it is hashed and compared without following a pointer, where a
// string key costs a second cache miss per probe in a table of 100k routes.
type lpmKey [16]byte

// lpmIndex holds an LPM table's entries by prefix length, and says which
// lengths have entries under each /16 and each /8 of the LPM field (per
// value of the exact fields), so that a lookup probes only the lengths
// that can match rather than every length the table holds. An on-prem BGP
// feed has 20 to 25 lengths, and under one /16 there are one or two: at
// 100k routes a lookup costs an index probe and a few entry probes instead
// of up to 25 entry probes, most of them cache misses.
type lpmIndex struct {
	byLen []map[lpmKey]*Entry // the entries of each prefix length, by masked key
	// long has bit p-17 set for the lengths p > 16 with entries under the
	// key masked to 16 bits; mid bit p-9 for 9 ≤ p ≤ 16 under the key masked
	// to 8 bits; short bit p for p ≤ 8 in the whole table.
	long, mid map[lpmKey]uint64
	short     uint64
	// counts are the entries of each length under each bucket (the key
	// masked to 16 or 8 bits, zero for short), so that a delete knows when
	// a bit goes. Only writes read it.
	counts map[lenKey]int32
}

type lenKey struct {
	bucket lpmKey
	plen   int
}

func (t *Table) lookupIndexed(key []byte) *Entry {
	ix := t.lpmIx
	f := &t.fields[t.lpmField]
	lead := f.n*8 - f.width
	var k lpmKey
	copy(k[:], key)
	// Each probe clears more bits than the last, since lengths are taken
	// longest first, so masking k in place is enough.
	probe := func(bits uint64, base int) *Entry {
		for bits != 0 {
			b := 63 - mathbits.LeadingZeros64(bits)
			bits &^= 1 << b
			maskFrom(k[f.off:f.off+f.n], lead+base+b)
			if e := ix.byLen[base+b][k]; e != nil {
				return e
			}
		}
		return nil
	}
	c := k
	maskFrom(c[f.off:f.off+f.n], lead+16)
	if e := probe(ix.long[c], 17); e != nil {
		return e
	}
	k = c
	maskFrom(c[f.off:f.off+f.n], lead+8)
	if e := probe(ix.mid[c], 9); e != nil {
		return e
	}
	return probe(ix.short, 0)
}

// index counts e in (d = 1) or out of (d = -1) its bucket.
func (ix *lpmIndex) index(t *Table, e *Entry, k lpmKey, d int32) {
	f := &t.fields[t.lpmField]
	var bucket lpmKey
	var bits map[lpmKey]uint64
	bit := uint64(1) << e.prefix
	switch {
	case e.prefix > 16:
		bucket, bits, bit = k, ix.long, 1<<(e.prefix-17)
		maskFrom(bucket[f.off:f.off+f.n], f.n*8-f.width+16)
	case e.prefix > 8:
		bucket, bits, bit = k, ix.mid, 1<<(e.prefix-9)
		maskFrom(bucket[f.off:f.off+f.n], f.n*8-f.width+8)
	}
	lk := lenKey{bucket, e.prefix}
	n := ix.counts[lk] + d
	if n > 0 {
		ix.counts[lk] = n
	} else if delete(ix.counts, lk); len(ix.counts) == 0 {
		// clear drops the deleted-slot markers too, which otherwise lengthen
		// every probe after the table was emptied and filled again (a
		// resync, a BGP session reset).
		clear(ix.counts)
	}
	first, last := d > 0 && n == 1, d < 0 && n == 0
	if !first && !last {
		return
	}
	// The first entry of its length in the bucket sets the bit, the last
	// clears it.
	if bits == nil {
		ix.short ^= bit
	} else if m := bits[bucket] ^ bit; m != 0 {
		bits[bucket] = m
	} else if delete(bits, bucket); len(bits) == 0 {
		clear(bits) // as counts above
	}
}

// maskFrom clears every bit of b from bit index keep (0 = MSB of b[0]) on.
func maskFrom(b []byte, keep int) {
	for i := range b {
		switch {
		case (i+1)*8 <= keep:
		case i*8 >= keep:
			b[i] = 0
		default:
			b[i] &= byte(0xff << (8 - (keep - i*8)))
		}
	}
}

// Entry is a table entry (or a table's default entry) as the pipeline runs it.
type Entry struct {
	// ActionID is the action of a direct entry; 0 for an indirect entry.
	ActionID uint32
	// Args are the action parameters in P4Info order, for parameters of at
	// most 64 bits (wider ones are 0 here: use Params).
	Args []uint64
	// Params are the action parameters in P4Info order, each big-endian and
	// padded to the parameter's byte width.
	Params [][]byte
	// MemberID or GroupID is set for an entry of a table with an action
	// profile that names a member or group: resolve it with Store.Member or
	// Store.Group. Both are 0 for a one-shot entry (an action set), whose
	// members and group are hidden: the pipeline follows the entry's own
	// member and group pointers, never the ids.
	MemberID, GroupID uint32
	// Packets and Bytes are the entry's direct counter.
	Packets, Bytes atomic.Uint64

	proto    *p4v1.TableEntry // canonical, as Read returns it; never modified once stored
	key      string           // identity key in its table
	prefix   int              // LPM prefix length (kindLPM)
	priority int32
	value    []byte // kindTernary: the entry matches key if key&mask == value
	mask     []byte
	ranges   []keyRange
	member   *Member
	group    *Group // the named group, or the hidden group of a one-shot entry
	prev     *Entry
	next     *Entry
	blk      *entryBlock // the block e lives in, nil for a default entry
}

// keyRange is a range field of a ternary-kind entry.
type keyRange struct {
	off, n    int
	low, high []byte // padded
}

// Count adds one packet of n bytes to the entry's direct counter.
func (e *Entry) Count(n int) {
	e.Packets.Add(1)
	e.Bytes.Add(uint64(n))
}

func (e *Entry) matches(key []byte) bool {
	for i, v := range e.value {
		if key[i]&e.mask[i] != v {
			return false
		}
	}
	for _, r := range e.ranges {
		k := key[r.off : r.off+r.n]
		if bytes.Compare(k, r.low) < 0 || bytes.Compare(k, r.high) > 0 {
			return false
		}
	}
	return true
}

// Member is an action profile member: one action with its arguments.
type Member struct {
	ID       uint32
	ActionID uint32
	Args     []uint64 // as Entry.Args
	Params   [][]byte // as Entry.Params

	proto   *p4v1.ActionProfileMember
	groups  int      // groups holding the member
	entries int      // table entries pointing at it
	handles []uint32 // BMv2 member handles: the member's own, then its weight copies
}

// Group is an action selector group.
type Group struct {
	ID uint32
	// Members are the group's members sorted by member id (in request
	// order for a one-shot entry's hidden group), and Weights their
	// weights (each ≥ 1).
	Members []*Member
	Weights []int32

	// slots are the group's BMv2 member handles in ascending order, as
	// members: what a selector hash indexes.
	slots   []*Member
	proto   *p4v1.ActionProfileGroup
	entries int
	// owner is the profile of a one-shot entry's hidden group, nil for a
	// group a client wrote: its members are hidden too, and it goes when
	// its entry does.
	owner *profile
}

// Select picks the member for a packet whose selector hash is h, as BMv2
// does: slot h % n of the group's member handles in ascending order. A
// member of weight w holds w handles (PI makes w-1 copies of it), so it is
// picked w times as often. It is nil for an empty group.
func (g *Group) Select(h uint64) *Member {
	if len(g.slots) == 0 {
		return nil
	}
	return g.slots[h%uint64(len(g.slots))]
}

// profile holds the members and groups of one action profile.
type profile struct {
	info    *p4rt.ActionProfile
	members map[uint32]*Member
	groups  map[uint32]*Group
	// oneshot holds the hidden groups of one-shot entries. They have no
	// ids a client can see, so they never clash with client group ids and
	// never show in member or group reads. A profile holds one-shot groups
	// or client members and groups, never both (spec §9.2.3): the mode
	// follows from which is non-empty, so it resets when the profile empties.
	oneshot map[*Group]struct{}
	// handles hands out BMv2 member handles lowest-free-first, as BMv2's
	// handle manager does, so that groups order their members as BMv2's
	// do for the same sequence of writes.
	handles []bool
}

func (p *profile) newHandle() uint32 {
	for i, used := range p.handles {
		if !used {
			p.handles[i] = true
			return uint32(i)
		}
	}
	p.handles = append(p.handles, true)
	return uint32(len(p.handles) - 1)
}

func (p *profile) freeHandles(hs []uint32) {
	for _, h := range hs {
		p.handles[h] = false
	}
}

// usedHandles is the number of BMv2 member handles in use.
func (p *profile) usedHandles() int {
	n := 0
	for _, used := range p.handles {
		if used {
			n++
		}
	}
	return n
}

// dropOneShot frees the hidden group g of a one-shot entry and its hidden
// members' handles, as PI deletes them with the entry.
func (p *profile) dropOneShot(g *Group) {
	for _, m := range g.Members {
		p.freeHandles(m.handles)
		m.handles, m.groups = nil, 0
	}
	g.slots = nil
	delete(p.oneshot, g)
}

// weigh gives every member of g as many handles as its weight, creating the
// copies in ascending member id as PI does, and lays the group's slots out
// by handle.
func (p *profile) weigh(g *Group) {
	type slot struct {
		h uint32
		m *Member
	}
	var slots []slot
	for i, m := range g.Members {
		for len(m.handles) < int(g.Weights[i]) {
			m.handles = append(m.handles, p.newHandle())
		}
		for _, h := range m.handles[:g.Weights[i]] {
			slots = append(slots, slot{h, m})
		}
	}
	slices.SortFunc(slots, func(a, b slot) int { return int(a.h) - int(b.h) })
	g.slots = g.slots[:0]
	for _, s := range slots {
		g.slots = append(g.slots, s.m)
	}
}

// purge drops the weight copies of ms that no group needs any more, as PI
// does after every group change.
func (p *profile) purge(ms []*Member) {
	for _, m := range ms {
		need := 1
		for _, g := range p.groups {
			if i := slices.Index(g.Members, m); i >= 0 {
				need = max(need, int(g.Weights[i]))
			}
		}
		if len(m.handles) > need {
			p.freeHandles(m.handles[need:])
			m.handles = m.handles[:need]
		}
	}
}

// addLen notes that entries of prefix length plen exist.
func (t *Table) addLen(plen int) {
	i, _ := slices.BinarySearchFunc(t.lens, plen, func(a, b int) int { return b - a })
	t.lens = slices.Insert(t.lens, i, plen)
}

// insert adds e, whose key, proto and match data are set, to t.
func (t *Table) insert(e *Entry) {
	t.entries[e.key] = e
	switch t.kind {
	case kindLPM:
		if ix := t.lpmIx; ix != nil {
			var k lpmKey
			copy(k[:], e.key[:t.keyLen])
			m := ix.byLen[e.prefix]
			if m == nil {
				m = map[lpmKey]*Entry{}
				ix.byLen[e.prefix] = m
				t.addLen(e.prefix)
			}
			m[k] = e
			ix.index(t, e, k, 1)
			break
		}
		m := t.byLen[e.prefix]
		if m == nil {
			m = map[string]*Entry{}
			t.byLen[e.prefix] = m
			t.addLen(e.prefix)
		}
		m[e.key[:t.keyLen]] = e
	case kindTernary:
		// After every entry of higher or equal priority: the oldest of
		// equal priority wins, which keeps lookups stable under inserts.
		i, _ := slices.BinarySearchFunc(t.prio, e.priority, func(x *Entry, p int32) int {
			if x.priority >= p {
				return -1
			}
			return 1
		})
		t.prio = slices.Insert(t.prio, i, e)
	}
	e.prev, e.next = t.tail, nil
	if t.tail != nil {
		t.tail.next = e
	} else {
		t.head = e
	}
	t.tail = e
	t.count++
}

// remove takes e out of t.
func (t *Table) remove(e *Entry) {
	delete(t.entries, e.key)
	switch t.kind {
	case kindLPM:
		if ix := t.lpmIx; ix != nil {
			var k lpmKey
			copy(k[:], e.key[:t.keyLen])
			m := ix.byLen[e.prefix]
			delete(m, k)
			ix.index(t, e, k, -1)
			if len(m) == 0 {
				ix.byLen[e.prefix] = nil
				t.lens = slices.DeleteFunc(t.lens, func(p int) bool { return p == e.prefix })
			}
			break
		}
		m := t.byLen[e.prefix]
		delete(m, e.key[:t.keyLen])
		if len(m) == 0 {
			t.byLen[e.prefix] = nil
			t.lens = slices.DeleteFunc(t.lens, func(p int) bool { return p == e.prefix })
		}
	case kindTernary:
		lo, _ := slices.BinarySearchFunc(t.prio, e.priority, func(x *Entry, p int32) int {
			if x.priority > p {
				return -1
			}
			return 1
		})
		for i := lo; i < len(t.prio); i++ {
			if t.prio[i] == e {
				t.prio = slices.Delete(t.prio, i, i+1)
				break
			}
		}
	}
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		t.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		t.tail = e.prev
	}
	e.prev, e.next = nil, nil
	t.count--
}

// replace puts n in the place of old (same key), keeping the position in
// insertion order and the counter.
func (t *Table) replace(old, n *Entry) {
	n.Packets.Store(old.Packets.Load())
	n.Bytes.Store(old.Bytes.Load())
	t.entries[n.key] = n
	switch t.kind {
	case kindLPM:
		if ix := t.lpmIx; ix != nil {
			var k lpmKey
			copy(k[:], n.key[:t.keyLen])
			ix.byLen[n.prefix][k] = n
			break
		}
		t.byLen[n.prefix][n.key[:t.keyLen]] = n
	case kindTernary:
		if i := slices.Index(t.prio, old); i >= 0 {
			t.prio[i] = n
		}
	}
	n.prev, n.next = old.prev, old.next
	if n.prev != nil {
		n.prev.next = n
	} else {
		t.head = n
	}
	if n.next != nil {
		n.next.prev = n
	} else {
		t.tail = n
	}
	old.prev, old.next = nil, nil
}

// p4infoDefault is the default entry the P4Info gives t, or nil.
func (s *Store) p4infoDefault(t *Table) *Entry {
	if t.Info.Profile != nil {
		return nil
	}
	id := t.Info.GetConstDefaultActionId()
	var args []*p4v1.Action_Param
	if ia := t.Info.GetInitialDefaultAction(); ia.GetActionId() != 0 {
		id = ia.GetActionId()
		for _, a := range ia.GetArguments() {
			args = append(args, &p4v1.Action_Param{ParamId: a.GetParamId(), Value: a.GetValue()})
		}
	}
	if id == 0 {
		return nil
	}
	e, err := s.defaultEntry(t, &p4v1.Action{ActionId: id, Params: args})
	if err != nil {
		return nil
	}
	return e
}
