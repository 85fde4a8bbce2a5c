package dataplane

import (
	"slices"
	"sync"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/p4rt"
)

// digester batches digest messages into DigestLists per DigestEntry config
// and remembers what was sent until it is acked or the ack times out
// (spec §9.9), so a flood of identical digests costs the controller one
// message.
type digester struct {
	s        *Server
	mu       sync.Mutex
	byID     map[uint32]*digestState
	nextList uint64
}

type digestState struct {
	entry   *p4v1.DigestEntry // canonical, for Read
	buf     []*p4v1.P4Data
	bufKeys map[string]struct{}
	gen     uint64 // bumped at every flush, so a stale batch timer does nothing
	timer   *time.Timer
	cache   map[string]uint64 // digest → list id, sent and not yet acked
	lists   map[uint64]*sentList
}

type sentList struct {
	keys  []string
	timer *time.Timer
}

func (d *digester) init(s *Server) {
	d.s = s
	d.byID = map[uint32]*digestState{}
}

// write applies a DigestEntry update.
func (d *digester) write(schema *p4rt.Schema, typ p4v1.Update_Type, de *p4v1.DigestEntry) error {
	id := de.GetDigestId()
	if _, err := schema.DigestByID(id); err != nil {
		return errf(codes.InvalidArgument, "unknown digest id %d", id)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	ds := d.byID[id]
	switch typ {
	case p4v1.Update_INSERT:
		if ds != nil {
			return errf(codes.AlreadyExists, "digest %d is already enabled", id)
		}
	case p4v1.Update_MODIFY:
		if ds == nil {
			return errf(codes.NotFound, "digest %d is not enabled", id)
		}
	case p4v1.Update_DELETE:
		if ds == nil {
			return errf(codes.NotFound, "digest %d is not enabled", id)
		}
		ds.stop()
		delete(d.byID, id)
		return nil
	default:
		return errf(codes.InvalidArgument, "update type %v", typ)
	}
	c := de.GetConfig()
	if c == nil {
		return errf(codes.InvalidArgument, "digest %d: the config is missing", id)
	}
	if c.GetMaxTimeoutNs() < 0 || c.GetMaxListSize() < 0 || c.GetAckTimeoutNs() < 0 {
		return errf(codes.InvalidArgument, "digest %d: negative config values", id)
	}
	entry := &p4v1.DigestEntry{DigestId: id, Config: &p4v1.DigestEntry_Config{
		MaxTimeoutNs: c.GetMaxTimeoutNs(), MaxListSize: c.GetMaxListSize(), AckTimeoutNs: c.GetAckTimeoutNs(),
	}}
	if ds == nil {
		d.byID[id] = &digestState{entry: entry, bufKeys: map[string]struct{}{}, cache: map[string]uint64{}, lists: map[uint64]*sentList{}}
		return nil
	}
	ds.entry = entry
	if len(ds.buf) > 0 && (c.GetMaxTimeoutNs() == 0 || (c.GetMaxListSize() > 0 && len(ds.buf) >= int(c.GetMaxListSize()))) {
		d.flush(id, ds)
	}
	return nil
}

// stop cancels the state's timers.
func (ds *digestState) stop() {
	if ds.timer != nil {
		ds.timer.Stop()
	}
	for _, l := range ds.lists {
		if l.timer != nil {
			l.timer.Stop()
		}
	}
}

// entries returns the enabled digests, all of them for id 0.
func (d *digester) entries(id uint32) []*p4v1.DigestEntry {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*p4v1.DigestEntry
	for did, ds := range d.byID {
		if id == 0 || id == did {
			out = append(out, ds.entry)
		}
	}
	slices.SortFunc(out, func(a, b *p4v1.DigestEntry) int { return int(a.DigestId) - int(b.DigestId) })
	return out
}

// reset disables every digest: a new pipeline starts with none.
func (d *digester) reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ds := range d.byID {
		ds.stop()
	}
	d.byID = map[uint32]*digestState{}
}

// clearCache forgets what was sent and not acked, which the spec allows on
// a change of primary: the new primary has seen none of it.
func (d *digester) clearCache() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ds := range d.byID {
		for _, l := range ds.lists {
			if l.timer != nil {
				l.timer.Stop()
			}
		}
		clear(ds.cache)
		clear(ds.lists)
	}
}

// SendDigest queues one digest message of digest digestID from the data
// plane. It is dropped unless a DigestEntry enables the digest; duplicates
// of a message buffered, or sent and not yet acked, are dropped too. It
// never blocks on the controller.
func (s *Server) SendDigest(digestID uint32, data *p4v1.P4Data) {
	d := &s.digests
	d.mu.Lock()
	defer d.mu.Unlock()
	ds := d.byID[digestID]
	if ds == nil {
		s.stats.digestDrops.Add(1)
		return
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(data)
	if err != nil {
		s.stats.digestDrops.Add(1)
		return
	}
	key := string(b)
	if _, dup := ds.cache[key]; dup {
		return
	}
	if _, dup := ds.bufKeys[key]; dup {
		return
	}
	ds.buf = append(ds.buf, data)
	ds.bufKeys[key] = struct{}{}
	c := ds.entry.GetConfig()
	if c.GetMaxTimeoutNs() == 0 || (c.GetMaxListSize() > 0 && len(ds.buf) >= int(c.GetMaxListSize())) {
		d.flush(digestID, ds)
		return
	}
	if len(ds.buf) == 1 {
		gen := ds.gen
		ds.timer = time.AfterFunc(time.Duration(c.GetMaxTimeoutNs()), func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if cur := d.byID[digestID]; cur == ds && ds.gen == gen && len(ds.buf) > 0 {
				d.flush(digestID, ds)
			}
		})
	}
}

// flush sends the buffer of digest id as one DigestList to the primary;
// d.mu is held.
func (d *digester) flush(id uint32, ds *digestState) {
	s := d.s
	if ds.timer != nil {
		ds.timer.Stop()
		ds.timer = nil
	}
	buf := ds.buf
	keys := make([]string, 0, len(ds.bufKeys))
	for k := range ds.bufKeys {
		keys = append(keys, k)
	}
	ds.buf, ds.bufKeys = nil, map[string]struct{}{}
	ds.gen++
	d.nextList++
	list := d.nextList
	msg := &p4v1.StreamMessageResponse{Update: &p4v1.StreamMessageResponse_Digest{Digest: &p4v1.DigestList{
		DigestId: id, ListId: list, Data: buf, Timestamp: time.Now().UnixNano(),
	}}}
	p := s.pktPrimary.Load()
	if p == nil || !p.sendData(msg) {
		s.stats.digestDrops.Add(uint64(len(buf)))
		return
	}
	s.stats.digestLists.Add(1)
	ack := ds.entry.GetConfig().GetAckTimeoutNs()
	if ack == 0 {
		return
	}
	for _, k := range keys {
		ds.cache[k] = list
	}
	sl := &sentList{keys: keys}
	ds.lists[list] = sl
	sl.timer = time.AfterFunc(time.Duration(ack), func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.byID[id] == ds {
			ds.forget(list)
		}
	})
}

// forget drops list from the cache, by ack or timeout.
func (ds *digestState) forget(list uint64) {
	sl := ds.lists[list]
	if sl == nil {
		return
	}
	for _, k := range sl.keys {
		if ds.cache[k] == list {
			delete(ds.cache, k)
		}
	}
	if sl.timer != nil {
		sl.timer.Stop()
	}
	delete(ds.lists, list)
}

// ack handles a DigestListAck: an unknown digest id is answered with a
// StreamError, as the spec suggests.
func (d *digester) ack(st *stream, a *p4v1.DigestListAck) {
	s := d.s
	// Digest lists go to the primary, and only its acks count: a backup's
	// ack would release lists the primary has not seen.
	s.amu.Lock()
	primary := st.role != nil && st.role.primary == st
	s.amu.Unlock()
	if !primary {
		st.sendCtrl(&p4v1.StreamMessageResponse{Update: &p4v1.StreamMessageResponse_Error{Error: &p4v1.StreamError{
			CanonicalCode: int32(codes.PermissionDenied),
			Message:       "only the primary controller acknowledges digest lists",
			Space:         ErrorSpace,
			Details:       &p4v1.StreamError_DigestListAck{DigestListAck: &p4v1.DigestListAckError{DigestListAck: a}},
		}}})
		return
	}
	s.pmu.RLock()
	schema := s.schema
	s.pmu.RUnlock()
	known := false
	if schema != nil {
		_, err := schema.DigestByID(a.GetDigestId())
		known = err == nil
	}
	if !known {
		st.sendCtrl(&p4v1.StreamMessageResponse{Update: &p4v1.StreamMessageResponse_Error{Error: &p4v1.StreamError{
			CanonicalCode: int32(codes.InvalidArgument),
			Message:       "unknown digest id in DigestListAck",
			Space:         ErrorSpace,
			Details:       &p4v1.StreamError_DigestListAck{DigestListAck: &p4v1.DigestListAckError{DigestListAck: a}},
		}}})
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if ds := d.byID[a.GetDigestId()]; ds != nil {
		ds.forget(a.GetListId())
	}
}
