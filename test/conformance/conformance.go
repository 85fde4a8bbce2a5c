// Package conformance is a suite of P4Runtime server behaviours —
// arbitration, pipeline config, write errors, batch errors, read-after-write,
// wildcard reads — that runs against any target address, so p4mesh-switch
// and BMv2's simple_switch_grpc can be held to the same contract.
//
// The cases are named after PINS's p4rt_app arbitration_test and Stratum's
// p4_service_test. They pick what they program from the target's P4Info
// (the first table whose fields are all exact, and one of its actions), so
// any P4Info with such a table will do. Every case starts by committing the
// pipeline with VERIFY_AND_COMMIT, which clears forwarding state, and uses
// election ids above any the target has seen, so cases do not depend on
// each other or on earlier runs against a long-lived target.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/p4rt"
)

// Target is a P4Runtime server to test.
type Target struct {
	// Addr is the server's host:port.
	Addr string
	// DeviceID is the device to program; 0 means 1.
	DeviceID uint64
	// P4Info is the pipeline to push; it needs one table whose match fields
	// are all exact.
	P4Info *p4configv1.P4Info
	// DeviceConfig is the target-specific config pushed with it (the BMv2
	// JSON for BMv2; nothing for p4mesh-switch).
	DeviceConfig []byte
	// FixedPipeline says the target implements one pipeline and refuses any
	// other P4Info (p4mesh-switch). BMv2 loads whatever it is given, so the
	// refusal case is skipped for it.
	FixedPipeline bool
	// DialOptions are added to the connection's options (TLS, for one);
	// the default is plaintext.
	DialOptions []grpc.DialOption
}

// timeout bounds every wait on the target.
const timeout = 5 * time.Second

// Run runs every case against target as subtests of t.
func Run(t *testing.T, target Target) {
	if target.DeviceID == 0 {
		target.DeviceID = 1
	}
	sch, err := p4rt.NewSchema(target.P4Info)
	if err != nil {
		t.Fatalf("target P4Info: %v", err)
	}
	tbl, action, err := pickTable(sch)
	if err != nil {
		t.Fatalf("target P4Info: %v", err)
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
	}, target.DialOptions...)
	cc, err := grpc.NewClient(target.Addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	s := &suite{
		target: target, schema: sch, table: tbl, action: action,
		client: p4v1.NewP4RuntimeClient(cc),
	}
	// Election ids grow from the wall clock, so every run is above the
	// highest id a long-lived target remembers from earlier runs.
	s.nextID.Store(uint64(time.Now().UnixNano()))
	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"Capabilities", s.capabilities},
		{"PrimaryElection", s.primaryElection},
		{"TwoConnectionsCannotReuseElectionID", s.electionIDReuse},
		{"NoElectionIDIsAlwaysBackup", s.noElectionID},
		{"AllConnectionsToldWhenPrimaryLeaves", s.primaryLeaves},
		{"ConnectionCannotChangeDevice", s.changeDevice},
		{"ConnectionCannotChangeRole", s.changeRole},
		{"OldPrimaryCannotWriteAfterNewOneArrives", s.oldPrimary},
		{"DuplicateInsertFails", s.duplicateInsert},
		{"ModifyOrDeleteOfMissingEntryFails", s.missingEntry},
		{"OneBadUpdateAmongMany", s.mixedBatch},
		{"TooWideValueIsOutOfRange", s.tooWide},
		{"MissingExactFieldIsInvalid", s.missingExact},
		{"InsertOfDefaultEntryIsInvalid", s.insertDefault},
		{"ReadAfterWrite", s.readAfterWrite},
		{"PaddedValuesReadBackCanonical", s.paddedReadBack},
		{"WildcardReads", s.wildcardReads},
		{"OneShotActionSetReadBackEqual", s.oneShotReadBack},
		{"PipelineWithChangedWidthIsRefused", s.pipelineRefused},
		{"VerifyChangesNothing", s.verifyChangesNothing},
		{"CommitWithoutSavedConfig", s.commitWithoutSaved},
		{"GetReturnsCookie", s.getCookie},
	} {
		t.Run(c.name, c.run)
	}
}

type suite struct {
	target Target
	schema *p4rt.Schema
	table  *p4rt.Table
	action *p4configv1.Action
	client p4v1.P4RuntimeClient
	nextID atomic.Uint64
}

// pickTable finds the first table whose match fields are all exact, with no
// action profile, and an action it can run in entries (one with
// parameters if it has one).
func pickTable(s *p4rt.Schema) (*p4rt.Table, *p4configv1.Action, error) {
	for _, t := range s.Tables() {
		if len(t.GetMatchFields()) == 0 || t.Profile != nil || t.GetIsConstTable() {
			continue
		}
		if slices.ContainsFunc(t.GetMatchFields(), func(f *p4configv1.MatchField) bool {
			return f.GetMatchType() != p4configv1.MatchField_EXACT
		}) {
			continue
		}
		var pick *p4configv1.Action
		for _, ref := range t.GetActionRefs() {
			if ref.GetScope() == p4configv1.ActionRef_DEFAULT_ONLY {
				continue
			}
			a, err := s.ActionByID(ref.GetId())
			if err != nil {
				return nil, nil, err
			}
			if pick == nil || (len(pick.GetParams()) == 0 && len(a.GetParams()) > 0) {
				pick = a.Action
			}
		}
		if pick != nil {
			return t, pick, nil
		}
	}
	return nil, nil, fmt.Errorf("no table with only exact match fields and an entry action")
}

// value is the canonical encoding of n reduced to width bits (never zero,
// so keys built from different n stay apart as long as the width allows).
func value(n uint64, width int32) []byte {
	v := new(big.Int).SetUint64(n)
	mod := new(big.Int).Lsh(big.NewInt(1), uint(width))
	v.Mod(v, mod)
	if v.Sign() == 0 {
		v.SetInt64(1)
	}
	b := v.Bytes()
	if len(b) == 0 {
		b = []byte{0}
	}
	return b
}

// entry is the i-th test entry of the picked table: i in its widest field,
// 1 elsewhere; i in every action parameter.
func (s *suite) entry(i int) *p4v1.TableEntry {
	fields := slices.Clone(s.table.GetMatchFields())
	slices.SortFunc(fields, func(a, b *p4configv1.MatchField) int { return int(a.GetId()) - int(b.GetId()) })
	widest := 0
	for j, f := range fields {
		if f.GetBitwidth() > fields[widest].GetBitwidth() {
			widest = j
		}
	}
	e := &p4v1.TableEntry{TableId: s.table.ID()}
	for j, f := range fields {
		n := uint64(1)
		if j == widest {
			n = uint64(i + 1)
		}
		e.Match = append(e.Match, &p4v1.FieldMatch{FieldId: f.GetId(), FieldMatchType: &p4v1.FieldMatch_Exact_{Exact: &p4v1.FieldMatch_Exact{Value: value(n, f.GetBitwidth())}}})
	}
	a := &p4v1.Action{ActionId: s.action.GetPreamble().GetId()}
	for _, p := range s.action.GetParams() {
		a.Params = append(a.Params, &p4v1.Action_Param{ParamId: p.GetId(), Value: value(uint64(i+1), p.GetBitwidth())})
	}
	e.Action = &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: a}}
	return e
}

func update(typ p4v1.Update_Type, e *p4v1.TableEntry) *p4v1.Update {
	return &p4v1.Update{Type: typ, Entity: &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: e}}}
}

func (s *suite) electionID() *p4v1.Uint128 { return &p4v1.Uint128{High: 1, Low: s.nextID.Add(1)} }

func (s *suite) config(cookie uint64) *p4v1.ForwardingPipelineConfig {
	return &p4v1.ForwardingPipelineConfig{
		P4Info: s.target.P4Info, P4DeviceConfig: s.target.DeviceConfig,
		Cookie: &p4v1.ForwardingPipelineConfig_Cookie{Cookie: cookie},
	}
}

func (s *suite) setPipeline(ctx context.Context, id *p4v1.Uint128, a p4v1.SetForwardingPipelineConfigRequest_Action, cfg *p4v1.ForwardingPipelineConfig) error {
	_, err := s.client.SetForwardingPipelineConfig(ctx, &p4v1.SetForwardingPipelineConfigRequest{
		DeviceId: s.target.DeviceID, ElectionId: id, Action: a, Config: cfg,
	})
	return err
}

// fresh opens a primary session and commits the pipeline (clearing all
// forwarding state) with cookie.
func (s *suite) fresh(t *testing.T, cookie uint64) *session {
	t.Helper()
	p := s.open(t, "", s.electionID())
	if got := p.status(); got != codes.OK {
		t.Fatalf("primary: arbitration status %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*timeout)
	defer cancel()
	if err := s.setPipeline(ctx, p.id, p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT, s.config(cookie)); err != nil {
		t.Fatalf("VERIFY_AND_COMMIT: %v", err)
	}
	return p
}

// write sends updates as the session's controller and returns the
// per-update codes (nil updates: the RPC's own code in [0]).
func (s *suite) write(t *testing.T, p *session, us ...*p4v1.Update) (codes.Code, []codes.Code) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var id *p4v1.Uint128
	if p != nil {
		id = p.id
	}
	_, err := s.client.Write(ctx, &p4v1.WriteRequest{DeviceId: s.target.DeviceID, ElectionId: id, Updates: us})
	st := status.Convert(err)
	out := make([]codes.Code, len(us))
	if st.Code() != codes.Unknown {
		for i := range out {
			out[i] = st.Code()
		}
		return st.Code(), out
	}
	ds := st.Details()
	if len(ds) != len(us) {
		t.Fatalf("write: %d error details for %d updates: %v", len(ds), len(us), err)
	}
	for i, d := range ds {
		pe, ok := d.(*p4v1.Error)
		if !ok {
			t.Fatalf("write: detail %d is %T, want p4.v1.Error", i, d)
		}
		out[i] = codes.Code(pe.GetCanonicalCode())
	}
	return codes.Unknown, out
}

// mustWrite fails the test unless every update works.
func (s *suite) mustWrite(t *testing.T, p *session, us ...*p4v1.Update) {
	t.Helper()
	if c, _ := s.write(t, p, us...); c != codes.OK {
		t.Fatalf("write: %v", c)
	}
}

// read returns the entities a query yields.
func (s *suite) read(t *testing.T, qs ...*p4v1.Entity) []*p4v1.Entity {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	rc, err := s.client.Read(ctx, &p4v1.ReadRequest{DeviceId: s.target.DeviceID, Entities: qs})
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var out []*p4v1.Entity
	for {
		r, err := rc.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		out = append(out, r.GetEntities()...)
	}
}

func tableQuery(e *p4v1.TableEntry) *p4v1.Entity {
	return &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: e}}
}

// session is one StreamChannel.
type session struct {
	t      *testing.T
	id     *p4v1.Uint128
	cancel context.CancelFunc
	sc     p4v1.P4Runtime_StreamChannelClient
	in     chan *p4v1.StreamMessageResponse
	end    chan error
}

// open starts a stream and sends its first arbitration update (id nil: no
// election id).
func (s *suite) open(t *testing.T, role string, id *p4v1.Uint128) *session {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sc, err := s.client.StreamChannel(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	p := &session{t: t, id: id, cancel: cancel, sc: sc, in: make(chan *p4v1.StreamMessageResponse, 64), end: make(chan error, 1)}
	go func() {
		for {
			m, err := sc.Recv()
			if err != nil {
				p.end <- err
				return
			}
			p.in <- m
		}
	}()
	t.Cleanup(cancel)
	p.arbitrate(s.target.DeviceID, role, id)
	return p
}

func (p *session) arbitrate(dev uint64, role string, id *p4v1.Uint128) {
	p.t.Helper()
	u := &p4v1.MasterArbitrationUpdate{DeviceId: dev, ElectionId: id}
	if role != "" {
		u.Role = &p4v1.Role{Name: role}
	}
	p.id = id
	if err := p.sc.Send(&p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_Arbitration{Arbitration: u}}); err != nil {
		p.t.Fatalf("arbitration send: %v", err)
	}
}

// status waits for the next arbitration update and returns its status code.
func (p *session) status() codes.Code {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-p.in:
			if a := m.GetArbitration(); a != nil {
				return codes.Code(a.GetStatus().GetCode())
			}
		case err := <-p.end:
			p.t.Fatalf("stream ended while waiting for arbitration: %v", err)
		case <-deadline:
			p.t.Fatalf("no arbitration update within %v", timeout)
		}
	}
}

// ended waits for the server to end the stream and returns its code.
func (p *session) ended() codes.Code {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case <-p.in:
		case err := <-p.end:
			return status.Code(err)
		case <-deadline:
			p.t.Fatalf("stream still open after %v", timeout)
		}
	}
}

func (p *session) close() { p.cancel() }

// --- the cases ---

func (s *suite) capabilities(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r, err := s.client.Capabilities(ctx, &p4v1.CapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetP4RuntimeApiVersion() == "" {
		t.Error("p4runtime_api_version is empty")
	}
}

func (s *suite) primaryElection(t *testing.T) {
	a := s.open(t, "", s.electionID())
	if got := a.status(); got != codes.OK {
		t.Fatalf("first controller with the highest id: %v, want OK", got)
	}
	b := s.open(t, "", s.electionID())
	if got := b.status(); got != codes.OK {
		t.Fatalf("controller with a higher id: %v, want OK", got)
	}
	if got := a.status(); got != codes.AlreadyExists {
		t.Errorf("the old primary is told %v, want ALREADY_EXISTS", got)
	}
	low := &p4v1.Uint128{High: 0, Low: 1}
	c := s.open(t, "", low)
	if got := c.status(); got != codes.AlreadyExists {
		t.Errorf("controller with a lower id: %v, want ALREADY_EXISTS", got)
	}
}

func (s *suite) electionIDReuse(t *testing.T) {
	id := s.electionID()
	a := s.open(t, "", id)
	a.status()
	b := s.open(t, "", id)
	if got := b.ended(); got != codes.InvalidArgument {
		t.Errorf("second connection with the same election id: stream ended with %v, want INVALID_ARGUMENT", got)
	}
}

func (s *suite) noElectionID(t *testing.T) {
	p := s.fresh(t, 1)
	b := s.open(t, "", nil)
	if got := b.status(); got != codes.AlreadyExists {
		t.Errorf("connection without election id: %v, want ALREADY_EXISTS (backup)", got)
	}
	if c, _ := s.write(t, nil, update(p4v1.Update_INSERT, s.entry(0))); c != codes.PermissionDenied {
		t.Errorf("write without election id while a primary exists: %v, want PERMISSION_DENIED", c)
	}
	s.mustWrite(t, p, update(p4v1.Update_INSERT, s.entry(0)))
}

func (s *suite) primaryLeaves(t *testing.T) {
	// Each connection in turn is the primary, and everyone hears of each
	// change.
	b2 := s.open(t, "", s.electionID())
	b2.status()
	b1 := s.open(t, "", s.electionID())
	b1.status()
	b2.status()
	p := s.open(t, "", s.electionID())
	if got := p.status(); got != codes.OK {
		t.Fatalf("primary: %v", got)
	}
	b1.status()
	b2.status()
	p.close()
	// The spec says every backup is told there is no primary (NOT_FOUND);
	// older PI versions fail over to the next highest id instead. Either
	// way every connection hears of it.
	for name, b := range map[string]*session{"next highest": b1, "lowest": b2} {
		if got := b.status(); got != codes.NotFound && got != codes.OK && got != codes.AlreadyExists {
			t.Errorf("%s backup told %v", name, got)
		}
	}
	// The next highest takes over by arbitrating again with a new id.
	b1.arbitrate(s.target.DeviceID, "", s.electionID())
	if got := b1.status(); got != codes.OK {
		t.Errorf("failover with a higher id: %v, want OK", got)
	}
}

func (s *suite) changeDevice(t *testing.T) {
	p := s.open(t, "", s.electionID())
	p.status()
	p.arbitrate(s.target.DeviceID+1, "", p.id)
	if got := p.ended(); got != codes.FailedPrecondition {
		t.Errorf("device change on a stream: %v, want FAILED_PRECONDITION", got)
	}
}

func (s *suite) changeRole(t *testing.T) {
	p := s.open(t, "", s.electionID())
	p.status()
	p.arbitrate(s.target.DeviceID, "conformance-other-role", p.id)
	if got := p.ended(); got != codes.FailedPrecondition {
		t.Errorf("role change on a stream: %v, want FAILED_PRECONDITION", got)
	}
}

func (s *suite) oldPrimary(t *testing.T) {
	a := s.fresh(t, 2)
	s.mustWrite(t, a, update(p4v1.Update_INSERT, s.entry(0)))
	b := s.open(t, "", s.electionID())
	if got := b.status(); got != codes.OK {
		t.Fatalf("new primary: %v", got)
	}
	a.status()
	if c, _ := s.write(t, a, update(p4v1.Update_INSERT, s.entry(1))); c != codes.PermissionDenied {
		t.Errorf("old primary's write: %v, want PERMISSION_DENIED", c)
	}
	s.mustWrite(t, b, update(p4v1.Update_INSERT, s.entry(1)))
}

func (s *suite) duplicateInsert(t *testing.T) {
	p := s.fresh(t, 3)
	s.mustWrite(t, p, update(p4v1.Update_INSERT, s.entry(0)))
	if _, cs := s.write(t, p, update(p4v1.Update_INSERT, s.entry(0))); cs[0] != codes.AlreadyExists {
		t.Errorf("duplicate insert: %v, want ALREADY_EXISTS", cs[0])
	}
}

func (s *suite) missingEntry(t *testing.T) {
	p := s.fresh(t, 4)
	for _, typ := range []p4v1.Update_Type{p4v1.Update_MODIFY, p4v1.Update_DELETE} {
		if _, cs := s.write(t, p, update(typ, s.entry(0))); cs[0] != codes.NotFound {
			t.Errorf("%v of a missing entry: %v, want NOT_FOUND", typ, cs[0])
		}
	}
}

func (s *suite) mixedBatch(t *testing.T) {
	p := s.fresh(t, 5)
	c, cs := s.write(t, p,
		update(p4v1.Update_INSERT, s.entry(0)),
		update(p4v1.Update_INSERT, s.entry(0)),
		update(p4v1.Update_INSERT, s.entry(1)),
		update(p4v1.Update_MODIFY, s.entry(2)),
		update(p4v1.Update_INSERT, s.entry(3)),
	)
	want := []codes.Code{codes.OK, codes.AlreadyExists, codes.OK, codes.NotFound, codes.OK}
	if c != codes.Unknown || !slices.Equal(cs, want) {
		t.Errorf("batch: %v %v, want UNKNOWN %v", c, cs, want)
	}
	if got := s.read(t, tableQuery(&p4v1.TableEntry{TableId: s.table.ID()})); len(got) != 3 {
		t.Errorf("after the batch the table has %d entries, want 3 (updates after a failure are applied)", len(got))
	}
}

func (s *suite) tooWide(t *testing.T) {
	p := s.fresh(t, 6)
	e := s.entry(0)
	f := s.table.GetMatchFields()[0]
	wide := new(big.Int).Lsh(big.NewInt(1), uint(f.GetBitwidth())).Bytes()
	for _, m := range e.Match {
		if m.GetFieldId() == f.GetId() {
			m.GetExact().Value = wide
		}
	}
	if _, cs := s.write(t, p, update(p4v1.Update_INSERT, e)); cs[0] != codes.OutOfRange {
		t.Errorf("value 0x%x in a %d-bit field: %v, want OUT_OF_RANGE", wide, f.GetBitwidth(), cs[0])
	}
}

func (s *suite) missingExact(t *testing.T) {
	p := s.fresh(t, 7)
	e := s.entry(0)
	e.Match = e.Match[1:]
	if _, cs := s.write(t, p, update(p4v1.Update_INSERT, e)); cs[0] != codes.InvalidArgument {
		t.Errorf("entry without an exact field: %v, want INVALID_ARGUMENT", cs[0])
	}
}

func (s *suite) insertDefault(t *testing.T) {
	p := s.fresh(t, 8)
	e := s.entry(0)
	e.Match, e.IsDefaultAction = nil, true
	if _, cs := s.write(t, p, update(p4v1.Update_INSERT, e)); cs[0] != codes.InvalidArgument {
		t.Errorf("INSERT of the default entry: %v, want INVALID_ARGUMENT", cs[0])
	}
}

func (s *suite) readAfterWrite(t *testing.T) {
	p := s.fresh(t, 9)
	e := s.entry(4)
	e.ControllerMetadata = 0xc0ffee
	s.mustWrite(t, p, update(p4v1.Update_INSERT, e))
	got := s.read(t, tableQuery(&p4v1.TableEntry{TableId: e.TableId, Match: e.Match}))
	if len(got) != 1 || !proto.Equal(got[0].GetTableEntry(), e) {
		t.Errorf("read back %v,\nwrote %v", got, e)
	}
}

func (s *suite) paddedReadBack(t *testing.T) {
	p := s.fresh(t, 10)
	want := s.entry(5)
	padded := proto.Clone(want).(*p4v1.TableEntry)
	for _, m := range padded.Match {
		m.GetExact().Value = append([]byte{0}, m.GetExact().GetValue()...)
	}
	for _, prm := range padded.GetAction().GetAction().GetParams() {
		prm.Value = append([]byte{0, 0}, prm.GetValue()...)
	}
	s.mustWrite(t, p, update(p4v1.Update_INSERT, padded))
	got := s.read(t, tableQuery(&p4v1.TableEntry{TableId: want.TableId}))
	if len(got) != 1 || !proto.Equal(got[0].GetTableEntry(), want) {
		t.Errorf("wrote padded values, read %v,\nwant canonical %v", got, want)
	}
}

func (s *suite) wildcardReads(t *testing.T) {
	p := s.fresh(t, 11)
	var es []*p4v1.TableEntry
	for i := range 3 {
		es = append(es, s.entry(i))
		s.mustWrite(t, p, update(p4v1.Update_INSERT, es[i]))
	}
	one := s.read(t, tableQuery(&p4v1.TableEntry{TableId: s.table.ID()}))
	if len(one) != 3 {
		t.Errorf("read of one table: %d entries, want 3", len(one))
	}
	all := s.read(t, tableQuery(&p4v1.TableEntry{}))
	for i, e := range es {
		if !slices.ContainsFunc(all, func(x *p4v1.Entity) bool { return proto.Equal(x.GetTableEntry(), e) }) {
			t.Errorf("read of all tables lacks entry %d", i)
		}
	}
}

func (s *suite) pipelineRefused(t *testing.T) {
	if !s.target.FixedPipeline {
		t.Skip("the target loads any P4Info it is given")
	}
	p := s.fresh(t, 12)
	changed := proto.Clone(s.target.P4Info).(*p4configv1.P4Info)
	for _, tb := range changed.GetTables() {
		if tb.GetPreamble().GetId() == s.table.ID() {
			tb.GetMatchFields()[0].Bitwidth++
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cfg := s.config(13)
	cfg.P4Info = changed
	if err := s.setPipeline(ctx, p.id, p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT, cfg); status.Code(err) != codes.InvalidArgument {
		t.Errorf("P4Info with a changed width: %v, want INVALID_ARGUMENT", err)
	}
	if err := s.setPipeline(ctx, p.id, p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT, s.config(14)); err != nil {
		t.Errorf("the right P4Info: %v", err)
	}
}

func (s *suite) verifyChangesNothing(t *testing.T) {
	p := s.fresh(t, 15)
	s.mustWrite(t, p, update(p4v1.Update_INSERT, s.entry(0)))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.setPipeline(ctx, p.id, p4v1.SetForwardingPipelineConfigRequest_VERIFY, s.config(16)); err != nil {
		t.Fatalf("VERIFY: %v", err)
	}
	if got := s.read(t, tableQuery(&p4v1.TableEntry{TableId: s.table.ID()})); len(got) != 1 {
		t.Errorf("after VERIFY the table has %d entries, want 1", len(got))
	}
	r, err := s.client.GetForwardingPipelineConfig(ctx, &p4v1.GetForwardingPipelineConfigRequest{DeviceId: s.target.DeviceID, ResponseType: p4v1.GetForwardingPipelineConfigRequest_COOKIE_ONLY})
	if err != nil || r.GetConfig().GetCookie().GetCookie() != 15 {
		t.Errorf("after VERIFY the cookie is %v (%v), want 15", r.GetConfig().GetCookie(), err)
	}
}

func (s *suite) commitWithoutSaved(t *testing.T) {
	p := s.fresh(t, 17)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.setPipeline(ctx, p.id, p4v1.SetForwardingPipelineConfigRequest_COMMIT, nil); status.Code(err) != codes.NotFound {
		t.Errorf("COMMIT with nothing saved: %v, want NOT_FOUND", err)
	}
	if err := s.setPipeline(ctx, p.id, p4v1.SetForwardingPipelineConfigRequest_COMMIT, s.config(18)); status.Code(err) != codes.InvalidArgument {
		t.Errorf("COMMIT with a config: %v, want INVALID_ARGUMENT", err)
	}
}

func (s *suite) getCookie(t *testing.T) {
	s.fresh(t, 0xfeed)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, rt := range []p4v1.GetForwardingPipelineConfigRequest_ResponseType{
		p4v1.GetForwardingPipelineConfigRequest_ALL,
		p4v1.GetForwardingPipelineConfigRequest_COOKIE_ONLY,
		p4v1.GetForwardingPipelineConfigRequest_P4INFO_AND_COOKIE,
	} {
		r, err := s.client.GetForwardingPipelineConfig(ctx, &p4v1.GetForwardingPipelineConfigRequest{DeviceId: s.target.DeviceID, ResponseType: rt})
		if err != nil {
			t.Fatalf("%v: %v", rt, err)
		}
		c := r.GetConfig()
		if c.GetCookie().GetCookie() != 0xfeed {
			t.Errorf("%v: cookie %v, want 0xfeed", rt, c.GetCookie())
		}
		if wantInfo := rt != p4v1.GetForwardingPipelineConfigRequest_COOKIE_ONLY; (c.GetP4Info() != nil) != wantInfo {
			t.Errorf("%v: P4Info present %v, want %v", rt, c.GetP4Info() != nil, wantInfo)
		}
	}
}
