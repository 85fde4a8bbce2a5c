package p4rt

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sort"
	"sync"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// This file is an in-process P4Runtime server for the client's tests: a
// real gRPC server on 127.0.0.1, with arbitration per spec §5 and a small
// table-entry store, plus knobs for the error shapes of other servers. It is
// no switch: it forwards nothing and knows no P4Info.

var _ p4v1.P4RuntimeServer = (*p4rtTestServer)(nil)

// tsWriteErrMode selects how Write reports per-update failures.
type tsWriteErrMode int

const (
	// tsErrsSpec: one p4.v1.Error per update, OK for the good ones (spec §12).
	tsErrsSpec tsWriteErrMode = iota
	// tsErrsPINS: stop at the first failure, ABORTED for the rest (PINS).
	tsErrsPINS
	// tsErrsMismatch: one detail too many, which a client must not trust.
	tsErrsMismatch
)

// tsRoleKey identifies an arbitration domain.
type tsRoleKey struct {
	device uint64
	role   string
}

// tsStream is one client's StreamChannel as the server sees it.
type tsStream struct {
	srv        p4v1.P4Runtime_StreamChannelServer
	arbitrated bool
	key        tsRoleKey
	eid        ElectionID // zero = none (the client never sends {0,0})
}

// p4rtTestServer implements p4v1.P4RuntimeServer for tests.
type p4rtTestServer struct {
	p4v1.UnimplementedP4RuntimeServer
	t      testing.TB
	tlsCfg *tls.Config // nil = plaintext

	// beforeWrite, if set before the server is used, runs at the start of
	// every Write, outside mu (to watch how many are in flight).
	beforeWrite func()

	mu sync.Mutex
	// mu guards the following fields. Stream sends happen with mu held, which
	// keeps notifications ordered and Sends on one stream serialised.
	addr           string
	gs             *grpc.Server
	devices        map[uint64]bool
	promoteOnLeave bool // pick the highest live id when the primary leaves (not what spec §5 says; older servers do)
	errMode        tsWriteErrMode
	forceWriteCode codes.Code // non-OK: every Write fails with it, no details
	streams        map[*tsStream]bool
	primary        map[tsRoleKey]*tsStream
	past           map[tsRoleKey]ElectionID // highest election id seen (spec §5 election_id_past)
	entries        map[string]*p4v1.TableEntry
	batchSizes     []int
	pipeline       *p4v1.ForwardingPipelineConfig
	pushes         int
	acks           []*p4v1.DigestListAck
	packetOuts     []*p4v1.PacketOut
}

// newP4RTTestServer starts a server for device 1 on a free loopback port;
// it stops when the test ends.
func newP4RTTestServer(t testing.TB, tlsCfg *tls.Config) *p4rtTestServer {
	t.Helper()
	s := &p4rtTestServer{
		t:       t,
		tlsCfg:  tlsCfg,
		addr:    "127.0.0.1:0",
		devices: map[uint64]bool{1: true},
		entries: make(map[string]*p4v1.TableEntry),
	}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start serves on the server's address: a free port the first time, the
// same port after Stop, as a restarted switch would.
func (s *p4rtTestServer) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gs != nil {
		s.t.Fatal("test server already running")
	}
	lis, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.t.Fatalf("test server listen on %s: %v", s.addr, err)
	}
	s.addr = lis.Addr().String()
	var opts []grpc.ServerOption
	if s.tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.tlsCfg)))
	}
	gs := grpc.NewServer(opts...)
	p4v1.RegisterP4RuntimeServer(gs, s)
	s.gs = gs
	// A fresh process: no streams, no arbitration memory.
	s.streams = make(map[*tsStream]bool)
	s.primary = make(map[tsRoleKey]*tsStream)
	s.past = make(map[tsRoleKey]ElectionID)
	go gs.Serve(lis)
}

// Stop stops the server abruptly, breaking every connection.
func (s *p4rtTestServer) Stop() {
	s.mu.Lock()
	gs := s.gs
	s.gs = nil
	s.mu.Unlock()
	if gs != nil {
		gs.Stop() // outside mu: it waits for handlers, which take mu
	}
}

// Addr returns "host:port".
func (s *p4rtTestServer) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// set runs f with mu held, for the knobs.
func (s *p4rtTestServer) set(f func(s *p4rtTestServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// BatchSizes returns the number of updates of each Write received.
func (s *p4rtTestServer) BatchSizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.batchSizes...)
}

// Pushes returns the number of committed pipeline pushes.
func (s *p4rtTestServer) Pushes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pushes
}

// Acks returns the digest acks received.
func (s *p4rtTestServer) Acks() []*p4v1.DigestListAck {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*p4v1.DigestListAck(nil), s.acks...)
}

// PacketOuts returns the packet-outs accepted from a primary.
func (s *p4rtTestServer) PacketOuts() []*p4v1.PacketOut {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*p4v1.PacketOut(nil), s.packetOuts...)
}

// NumEntries returns the number of stored table entries.
func (s *p4rtTestServer) NumEntries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// SendPacketIn sends p to the primary of device 1's default role.
func (s *p4rtTestServer) SendPacketIn(p *p4v1.PacketIn) error {
	return s.sendToPrimary(&p4v1.StreamMessageResponse{Update: &p4v1.StreamMessageResponse_Packet{Packet: p}})
}

// SendDigest sends d to the primary of device 1's default role.
func (s *p4rtTestServer) SendDigest(d *p4v1.DigestList) error {
	return s.sendToPrimary(&p4v1.StreamMessageResponse{Update: &p4v1.StreamMessageResponse_Digest{Digest: d}})
}

func (s *p4rtTestServer) sendToPrimary(m *p4v1.StreamMessageResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.primary[tsRoleKey{device: 1}]
	if p == nil {
		return fmt.Errorf("no primary")
	}
	return p.srv.Send(m)
}

// StreamChannel serves one client's stream: arbitration, packet-outs, acks.
func (s *p4rtTestServer) StreamChannel(srv p4v1.P4Runtime_StreamChannelServer) error {
	st := &tsStream{srv: srv}
	defer s.leave(st)
	for {
		req, err := srv.Recv()
		if err != nil {
			return nil // client went away; nothing to report to it
		}
		switch u := req.GetUpdate().(type) {
		case *p4v1.StreamMessageRequest_Arbitration:
			if err := s.arbitrate(st, u.Arbitration); err != nil {
				return err // arbitration errors end the stream (spec §5)
			}
		case *p4v1.StreamMessageRequest_Packet:
			s.mu.Lock()
			if st.arbitrated && s.primary[st.key] == st {
				s.packetOuts = append(s.packetOuts, u.Packet)
			} else {
				// A bad stream message gets a StreamError, never a closed stream.
				_ = srv.Send(&p4v1.StreamMessageResponse{Update: &p4v1.StreamMessageResponse_Error{Error: &p4v1.StreamError{
					CanonicalCode: int32(codes.PermissionDenied),
					Message:       "packet-out from a non-primary client",
					Details:       &p4v1.StreamError_PacketOut{PacketOut: &p4v1.PacketOutError{PacketOut: u.Packet}},
				}}})
			}
			s.mu.Unlock()
		case *p4v1.StreamMessageRequest_DigestAck:
			s.mu.Lock()
			s.acks = append(s.acks, u.DigestAck)
			s.mu.Unlock()
		}
	}
}

// arbitrate applies one MasterArbitrationUpdate per spec §5 ("Rules for Handling
// MasterArbitrationUpdate Messages").
func (s *p4rtTestServer) arbitrate(st *tsStream, a *p4v1.MasterArbitrationUpdate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := tsRoleKey{device: a.GetDeviceId(), role: a.GetRole().GetName()}
	eid := electionIDFromProto(a.GetElectionId())
	if !s.devices[key.device] {
		return status.Errorf(codes.NotFound, "unknown device %d", key.device)
	}
	if st.arbitrated && st.key != key {
		return status.Errorf(codes.FailedPrecondition, "device or role changed on a live stream")
	}
	if !eid.IsZero() {
		for o := range s.streams {
			if o != st && o.key == key && o.eid == eid {
				return status.Errorf(codes.InvalidArgument, "election id %v already in use", eid)
			}
		}
	}
	st.arbitrated, st.key, st.eid = true, key, eid
	s.streams[st] = true

	old := s.primary[key]
	past, hasPast := s.past[key]
	newPrimary := old
	switch {
	case !eid.IsZero() && (!hasPast || eid.Compare(past) >= 0):
		newPrimary = st
		s.past[key] = eid
	case old == st:
		newPrimary = nil // the primary downgraded itself
	}
	if s.promoteOnLeave && newPrimary == nil {
		newPrimary = s.highestLocked(key)
	}
	if newPrimary != old {
		s.primary[key] = newPrimary
		s.notifyLocked(key, nil)
	} else {
		s.notifyLocked(key, st)
	}
	return nil
}

// leave forgets a closed stream, choosing a new primary if it was one.
func (s *p4rtTestServer) leave(st *tsStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.streams[st] {
		return
	}
	delete(s.streams, st)
	if s.primary[st.key] != st {
		return
	}
	var next *tsStream
	if s.promoteOnLeave {
		next = s.highestLocked(st.key)
	}
	s.primary[st.key] = next
	s.notifyLocked(st.key, nil)
}

// highestLocked returns the live stream with the highest election id.
func (s *p4rtTestServer) highestLocked(key tsRoleKey) *tsStream {
	var best *tsStream
	for o := range s.streams {
		if o.key == key && !o.eid.IsZero() && (best == nil || o.eid.Compare(best.eid) > 0) {
			best = o
		}
	}
	return best
}

// notifyLocked sends the arbitration notification of spec §5 ("Client
// Arbitration Notifications") to only, if non-nil, else to every stream of key.
func (s *p4rtTestServer) notifyLocked(key tsRoleKey, only *tsStream) {
	p := s.primary[key]
	var eid *p4v1.Uint128
	if p != nil {
		eid = p.eid.proto()
	} else if past, ok := s.past[key]; ok {
		eid = past.proto()
	}
	for o := range s.streams {
		if o.key != key || (only != nil && o != only) {
			continue
		}
		code := codes.NotFound
		switch {
		case p == o:
			code = codes.OK
		case p != nil:
			code = codes.AlreadyExists
		}
		a := &p4v1.MasterArbitrationUpdate{DeviceId: key.device, ElectionId: eid, Status: &spb.Status{Code: int32(code)}}
		if key.role != "" {
			a.Role = &p4v1.Role{Name: key.role}
		}
		_ = o.srv.Send(&p4v1.StreamMessageResponse{Update: &p4v1.StreamMessageResponse_Arbitration{Arbitration: a}})
	}
}

// checkPrimaryLocked returns the error for a request that must come from the
// primary, as Write and SetForwardingPipelineConfig do.
func (s *p4rtTestServer) checkPrimaryLocked(device uint64, role string, eid *p4v1.Uint128) error {
	if !s.devices[device] {
		return status.Errorf(codes.NotFound, "unknown device %d", device)
	}
	p := s.primary[tsRoleKey{device: device, role: role}]
	if eid == nil || p == nil || p.eid != electionIDFromProto(eid) {
		return status.Error(codes.PermissionDenied, "not the primary")
	}
	return nil
}

// tsEntryKey identifies a table entry by table, match and priority.
func tsEntryKey(te *p4v1.TableEntry) string {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&p4v1.TableEntry{
		TableId: te.GetTableId(), Match: te.GetMatch(), Priority: te.GetPriority(),
	})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// Write applies table-entry updates with CONTINUE_ON_ERROR semantics.
func (s *p4rtTestServer) Write(ctx context.Context, req *p4v1.WriteRequest) (*p4v1.WriteResponse, error) {
	if s.beforeWrite != nil {
		s.beforeWrite()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batchSizes = append(s.batchSizes, len(req.GetUpdates()))
	if err := s.checkPrimaryLocked(req.GetDeviceId(), req.GetRole(), req.GetElectionId()); err != nil {
		return nil, err
	}
	if s.forceWriteCode != codes.OK {
		return nil, status.Error(s.forceWriteCode, "forced failure")
	}
	errs := make([]*p4v1.Error, len(req.GetUpdates()))
	failed, aborted := false, false
	for i, u := range req.GetUpdates() {
		if aborted {
			errs[i] = &p4v1.Error{CanonicalCode: int32(codes.Aborted), Message: "not attempted"}
			continue
		}
		code, msg := s.applyLocked(u)
		errs[i] = &p4v1.Error{CanonicalCode: int32(code), Message: msg, Space: "p4rt-test", Code: int32(code) + 1000}
		if code != codes.OK {
			failed = true
			aborted = s.errMode == tsErrsPINS
		}
	}
	if !failed {
		return &p4v1.WriteResponse{}, nil
	}
	if s.errMode == tsErrsMismatch {
		errs = append(errs, &p4v1.Error{})
	}
	st := &spb.Status{Code: int32(codes.Unknown), Message: "some updates failed"}
	for _, e := range errs {
		a, err := anypb.New(e)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		st.Details = append(st.Details, a)
	}
	return nil, status.FromProto(st).Err()
}

// applyLocked applies one update to the store.
func (s *p4rtTestServer) applyLocked(u *p4v1.Update) (codes.Code, string) {
	te := u.GetEntity().GetTableEntry()
	if te == nil {
		return codes.Unimplemented, "only table entries are supported"
	}
	k := tsEntryKey(te)
	_, exists := s.entries[k]
	switch u.GetType() {
	case p4v1.Update_INSERT:
		if exists {
			return codes.AlreadyExists, "entry already exists"
		}
		s.entries[k] = proto.Clone(te).(*p4v1.TableEntry)
	case p4v1.Update_MODIFY:
		if !exists {
			return codes.NotFound, "no such entry"
		}
		s.entries[k] = proto.Clone(te).(*p4v1.TableEntry)
	case p4v1.Update_DELETE:
		if !exists {
			return codes.NotFound, "no such entry"
		}
		delete(s.entries, k)
	default:
		return codes.InvalidArgument, "bad update type"
	}
	return codes.OK, ""
}

// Read streams matching table entries, 100 per response so that clients see
// more than one message. table_id 0 is the wildcard for every table.
func (s *p4rtTestServer) Read(req *p4v1.ReadRequest, srv p4v1.P4Runtime_ReadServer) error {
	s.mu.Lock()
	if !s.devices[req.GetDeviceId()] {
		s.mu.Unlock()
		return status.Errorf(codes.NotFound, "unknown device %d", req.GetDeviceId())
	}
	keys := make([]string, 0, len(s.entries))
	for k := range s.entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []*p4v1.Entity
	for _, e := range req.GetEntities() {
		want := e.GetTableEntry()
		if want == nil {
			s.mu.Unlock()
			return status.Error(codes.Unimplemented, "only table entries are supported")
		}
		for _, k := range keys {
			te := s.entries[k]
			if want.GetTableId() != 0 && want.GetTableId() != te.GetTableId() {
				continue
			}
			if len(want.GetMatch()) > 0 && tsEntryKey(want) != k {
				continue
			}
			out = append(out, &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: proto.Clone(te).(*p4v1.TableEntry)}})
		}
	}
	s.mu.Unlock()
	for len(out) > 0 {
		n := min(100, len(out))
		if err := srv.Send(&p4v1.ReadResponse{Entities: out[:n]}); err != nil {
			return err
		}
		out = out[n:]
	}
	return nil
}

// SetForwardingPipelineConfig stores committed pipelines and counts pushes.
func (s *p4rtTestServer) SetForwardingPipelineConfig(ctx context.Context, req *p4v1.SetForwardingPipelineConfigRequest) (*p4v1.SetForwardingPipelineConfigResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkPrimaryLocked(req.GetDeviceId(), req.GetRole(), req.GetElectionId()); err != nil {
		return nil, err
	}
	switch req.GetAction() {
	case p4v1.SetForwardingPipelineConfigRequest_VERIFY:
		if req.GetConfig().GetP4Info() == nil {
			return nil, status.Error(codes.InvalidArgument, "no P4Info")
		}
	case p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT,
		p4v1.SetForwardingPipelineConfigRequest_RECONCILE_AND_COMMIT:
		if req.GetConfig().GetP4Info() == nil {
			return nil, status.Error(codes.InvalidArgument, "no P4Info")
		}
		s.pipeline = proto.Clone(req.GetConfig()).(*p4v1.ForwardingPipelineConfig)
		s.pushes++
		if req.GetAction() == p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT {
			s.entries = make(map[string]*p4v1.TableEntry) // a new pipeline starts empty
		}
	default:
		return nil, status.Errorf(codes.Unimplemented, "action %s", req.GetAction())
	}
	return &p4v1.SetForwardingPipelineConfigResponse{}, nil
}

// GetForwardingPipelineConfig returns the stored pipeline, FAILED_PRECONDITION
// before the first push (as PI does).
func (s *p4rtTestServer) GetForwardingPipelineConfig(ctx context.Context, req *p4v1.GetForwardingPipelineConfigRequest) (*p4v1.GetForwardingPipelineConfigResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.devices[req.GetDeviceId()] {
		return nil, status.Errorf(codes.NotFound, "unknown device %d", req.GetDeviceId())
	}
	if s.pipeline == nil {
		return nil, status.Error(codes.FailedPrecondition, "no pipeline installed")
	}
	cfg := &p4v1.ForwardingPipelineConfig{Cookie: s.pipeline.GetCookie()}
	switch req.GetResponseType() {
	case p4v1.GetForwardingPipelineConfigRequest_ALL:
		cfg.P4Info, cfg.P4DeviceConfig = s.pipeline.GetP4Info(), s.pipeline.GetP4DeviceConfig()
	case p4v1.GetForwardingPipelineConfigRequest_P4INFO_AND_COOKIE:
		cfg.P4Info = s.pipeline.GetP4Info()
	case p4v1.GetForwardingPipelineConfigRequest_DEVICE_CONFIG_AND_COOKIE:
		cfg.P4DeviceConfig = s.pipeline.GetP4DeviceConfig()
	}
	return &p4v1.GetForwardingPipelineConfigResponse{Config: cfg}, nil
}
