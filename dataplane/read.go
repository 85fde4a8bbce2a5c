package dataplane

import (
	"bytes"
	"errors"
	"slices"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// readChunk is how many entities go in one ReadResponse: large enough to
// amortise a message, small enough to stay far below a client's 4 MB
// default receive limit.
const readChunk = 1024

// Read answers a batch of queries, wildcards included (spec §11). The
// entities are collected under the store's read lock, so a concurrent Write
// is seen whole or not at all, and sent after it is released, so a slow
// reader never holds up writes or packets.
func (s *Server) Read(req *p4v1.ReadRequest, srv p4v1.P4Runtime_ReadServer) error {
	s.stats.reads.Add(1)
	if req.GetDeviceId() != s.opts.DeviceID {
		return status.Errorf(codes.NotFound, "unknown device id %d", req.GetDeviceId())
	}
	st := s.Store()
	if st == nil {
		return status.Error(codes.FailedPrecondition, "no forwarding pipeline config has been committed")
	}
	if len(req.GetEntities()) == 0 {
		return status.Error(codes.InvalidArgument, "the read request has no entities")
	}
	var out []*p4v1.Entity
	var sc scratch
	var err error
	// Counted until the last Send: the entities share the stored entries'
	// messages, whose blocks a writer must not reuse meanwhile.
	st.readers.Add(1)
	defer st.readers.Add(-1)
	st.mu.RLock()
	for _, q := range req.GetEntities() {
		if out, err = s.readOne(st, q, out, &sc); err != nil {
			break
		}
	}
	st.mu.RUnlock()
	if err != nil {
		return toStatus(err)
	}
	for len(out) > 0 {
		n := min(len(out), readChunk)
		if err := srv.Send(&p4v1.ReadResponse{Entities: out[:n]}); err != nil {
			return err
		}
		out = out[n:]
	}
	return nil
}

// toStatus turns an opError into its gRPC status.
func toStatus(err error) error {
	var oe *opError
	if errors.As(err, &oe) {
		return status.Error(oe.code, oe.msg)
	}
	return status.Error(codes.Internal, err.Error())
}

func (s *Server) readOne(st *Store, q *p4v1.Entity, out []*p4v1.Entity, sc *scratch) ([]*p4v1.Entity, error) {
	switch e := q.GetEntity().(type) {
	case *p4v1.Entity_TableEntry:
		return st.readTable(e.TableEntry, out, sc)
	case *p4v1.Entity_ActionProfileMember:
		return st.readMembers(e.ActionProfileMember, out)
	case *p4v1.Entity_ActionProfileGroup:
		return st.readGroups(e.ActionProfileGroup, out)
	case *p4v1.Entity_DirectCounterEntry:
		return st.readDirectCounters(e.DirectCounterEntry, out, sc)
	case *p4v1.Entity_DigestEntry:
		for _, d := range s.digests.entries(e.DigestEntry.GetDigestId()) {
			out = append(out, &p4v1.Entity{Entity: &p4v1.Entity_DigestEntry{DigestEntry: d}})
		}
		return out, nil
	case nil:
		return out, errf(codes.InvalidArgument, "a read query must set an entity")
	default:
		return out, errf(codes.Unimplemented, "reading %T is not supported", e)
	}
}

// tableEntity is the entity Read returns for e, with its direct counter
// when asked for.
func tableEntity(t *Table, e *Entry, counters bool) *p4v1.Entity {
	te := e.proto
	if counters && t.directIx {
		te = &p4v1.TableEntry{
			TableId: e.proto.TableId, Match: e.proto.Match, Action: e.proto.Action, Priority: e.proto.Priority,
			ControllerMetadata: e.proto.ControllerMetadata, Metadata: e.proto.Metadata, IsDefaultAction: e.proto.IsDefaultAction,
			CounterData: &p4v1.CounterData{PacketCount: int64(e.Packets.Load()), ByteCount: int64(e.Bytes.Load())},
		}
	}
	return &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: te}}
}

// defaultEntity is the default entry of t as Read returns it.
func defaultEntity(t *Table, counters bool) *p4v1.Entity {
	if t.Default == nil {
		return &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{TableId: t.Info.ID(), IsDefaultAction: true}}}
	}
	return tableEntity(t, t.Default, counters)
}

func (st *Store) readTable(q *p4v1.TableEntry, out []*p4v1.Entity, sc *scratch) ([]*p4v1.Entity, error) {
	counters := q.GetCounterData() != nil
	if q.GetTableId() == 0 {
		for _, t := range st.order {
			for e := t.head; e != nil; e = e.next {
				out = append(out, tableEntity(t, e, counters))
			}
		}
		return out, nil
	}
	t := st.tables[q.GetTableId()]
	if t == nil {
		return out, errf(codes.NotFound, "unknown table id %d", q.GetTableId())
	}
	if q.GetIsDefaultAction() {
		if len(q.GetMatch()) > 0 {
			return out, errf(codes.InvalidArgument, "table %s: a default entry query has no match", t.Info.Name())
		}
		return append(out, defaultEntity(t, counters)), nil
	}
	if len(q.GetMatch()) > 0 {
		if _, err := t.parseKey(q, sc, nil, nil); err != nil {
			return out, err
		}
		if e := t.entries[string(sc.id)]; e != nil {
			out = append(out, tableEntity(t, e, counters))
		}
		return out, nil
	}
	action := q.GetAction().GetAction().GetActionId()
	for e := t.head; e != nil; e = e.next {
		switch {
		case action != 0 && e.ActionID != action:
		case q.GetPriority() != 0 && e.priority != q.GetPriority():
		case q.GetControllerMetadata() != 0 && e.proto.GetControllerMetadata() != q.GetControllerMetadata():
		case len(q.GetMetadata()) > 0 && !bytes.Equal(e.proto.GetMetadata(), q.GetMetadata()):
		default:
			out = append(out, tableEntity(t, e, counters))
		}
	}
	return out, nil
}

// profilesFor returns the profiles a member or group query names: all for
// id 0, in P4Info order.
func (st *Store) profilesFor(id uint32) ([]*profile, error) {
	if id != 0 {
		p := st.profiles[id]
		if p == nil {
			return nil, errf(codes.NotFound, "unknown action profile id %d", id)
		}
		return []*profile{p}, nil
	}
	var ps []*profile
	for _, pi := range st.schema.P4Info().GetActionProfiles() {
		if p := st.profiles[pi.GetPreamble().GetId()]; p != nil {
			ps = append(ps, p)
		}
	}
	return ps, nil
}

func (st *Store) readMembers(q *p4v1.ActionProfileMember, out []*p4v1.Entity) ([]*p4v1.Entity, error) {
	ps, err := st.profilesFor(q.GetActionProfileId())
	if err != nil {
		return out, err
	}
	for _, p := range ps {
		if id := q.GetMemberId(); id != 0 {
			if m := p.members[id]; m != nil {
				out = append(out, &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: m.proto}})
			}
			continue
		}
		for _, id := range sortedKeys(p.members) {
			out = append(out, &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: p.members[id].proto}})
		}
	}
	return out, nil
}

func (st *Store) readGroups(q *p4v1.ActionProfileGroup, out []*p4v1.Entity) ([]*p4v1.Entity, error) {
	ps, err := st.profilesFor(q.GetActionProfileId())
	if err != nil {
		return out, err
	}
	for _, p := range ps {
		if id := q.GetGroupId(); id != 0 {
			if g := p.groups[id]; g != nil {
				out = append(out, &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileGroup{ActionProfileGroup: g.proto}})
			}
			continue
		}
		for _, id := range sortedKeys(p.groups) {
			out = append(out, &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileGroup{ActionProfileGroup: p.groups[id].proto}})
		}
	}
	return out, nil
}

func sortedKeys[V any](m map[uint32]V) []uint32 {
	ks := make([]uint32, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// counterEntity is the DirectCounterEntry of e: its key and counter.
func counterEntity(e *Entry) *p4v1.Entity {
	key := &p4v1.TableEntry{TableId: e.proto.TableId, Match: e.proto.Match, Priority: e.proto.Priority, IsDefaultAction: e.proto.IsDefaultAction}
	return &p4v1.Entity{Entity: &p4v1.Entity_DirectCounterEntry{DirectCounterEntry: &p4v1.DirectCounterEntry{
		TableEntry: key,
		Data:       &p4v1.CounterData{PacketCount: int64(e.Packets.Load()), ByteCount: int64(e.Bytes.Load())},
	}}}
}

func (st *Store) readDirectCounters(q *p4v1.DirectCounterEntry, out []*p4v1.Entity, sc *scratch) ([]*p4v1.Entity, error) {
	te := q.GetTableEntry()
	if te.GetTableId() == 0 {
		for _, t := range st.order {
			if !t.directIx {
				continue
			}
			for e := t.head; e != nil; e = e.next {
				out = append(out, counterEntity(e))
			}
		}
		return out, nil
	}
	t := st.tables[te.GetTableId()]
	if t == nil {
		return out, errf(codes.NotFound, "unknown table id %d", te.GetTableId())
	}
	if !te.GetIsDefaultAction() && len(te.GetMatch()) == 0 {
		if !t.directIx {
			return out, errf(codes.InvalidArgument, "table %s has no direct counter", t.Info.Name())
		}
		for e := t.head; e != nil; e = e.next {
			out = append(out, counterEntity(e))
		}
		return out, nil
	}
	e, err := st.directEntry(te, sc)
	if err != nil {
		return out, err
	}
	return append(out, counterEntity(e)), nil
}
