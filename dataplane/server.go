package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/p4mesh/p4mesh/p4rt"
)

// APIVersion is the P4Runtime version the server implements, reported by
// Capabilities.
const APIVersion = "1.5.0"

// ErrorSpace is the p4.v1.Error space of the per-update errors the server
// reports.
const ErrorSpace = "p4mesh"

// Options configure a Server. The zero value of every field is a safe default.
type Options struct {
	// DeviceID is the one device the server serves; 0 means 1, since
	// P4Runtime 1.5 reserves 0.
	DeviceID uint64
	// P4Info is the P4Info of the built-in pipeline. SetForwardingPipelineConfig
	// accepts only a P4Info with the same tables, actions, fields, IDs and
	// widths (docs and annotations aside), because the Go pipeline
	// implements exactly that program. Nil accepts any P4Info, for tests of
	// the server alone.
	P4Info *p4configv1.P4Info
	// Defaults are initial default entries (is_default_action, with an
	// action) for tables whose P4Info does not carry initial_default_action,
	// as the BMv2 JSON would.
	Defaults []*p4v1.TableEntry
	// Logger receives the server's log; nil discards it.
	Logger *slog.Logger
	// MaxStreams bounds the StreamChannels of one (device, role); 0 means 16,
	// PI's limit. Beyond it arbitration fails with RESOURCE_EXHAUSTED.
	MaxStreams int
	// StreamQueue bounds the packet-ins and digest lists queued for one
	// stream; 0 means 1024. When full, new ones are dropped and counted, so
	// a slow controller never blocks the data plane.
	StreamQueue int
	// OnCommit, if set, is called with the new store after every commit of
	// a pipeline that replaced the store, so the packet pipeline can switch
	// to it.
	OnCommit func(*Store)
	// OnWrite, if set, is called with every update the server applied,
	// in request order, after it took effect and while the store is
	// still locked: it must be quick, must not modify the update and
	// must not call the server. Failed updates are not reported, and
	// neither is a pipeline commit that clears the store (see OnCommit).
	// It is the switch's write log, for tests that must know what a
	// switch was told (no DELETE during a hitless restart); unset, it
	// costs one nil check per update.
	OnWrite func(*p4v1.Update)
}

// Server is the P4Runtime server of p4mesh-switch: arbitration, pipeline
// config, Write, Read, packet I/O and digests for one device, over a Store
// the packet pipeline looks entries up in.
type Server struct {
	p4v1.UnimplementedP4RuntimeServer

	opts    Options
	log     *slog.Logger
	builtin *p4configv1.P4Info

	// pmu guards the pipeline: Write and Read hold it shared for their
	// whole run, SetForwardingPipelineConfig exclusively, so a pipeline
	// never changes under a request.
	pmu       sync.RWMutex
	store     *Store
	schema    *p4rt.Schema
	committed *p4v1.ForwardingPipelineConfig
	saved     *p4v1.ForwardingPipelineConfig

	// amu guards roles and the arbitration state of every stream.
	amu   sync.Mutex
	roles map[string]*role
	// pktPrimary is the primary stream of the default role, read by the
	// data plane without taking amu.
	pktPrimary atomic.Pointer[stream]

	digests digester

	packetOut atomic.Pointer[func(*p4v1.PacketOut) error]

	stats struct {
		writes, writeErrors, updates, updateErrors, reads    atomic.Uint64
		packetIns, packetInDrops, packetOuts, packetOutDrops atomic.Uint64
		digestLists, digestDrops                             atomic.Uint64
	}
}

// Stats are the server's counters since it started, for metrics.
type Stats struct {
	Writes         uint64 // Write RPCs
	WriteErrors    uint64 // Write RPCs that did not return OK
	Updates        uint64 // updates attempted
	UpdateErrors   uint64 // updates that failed
	Reads          uint64 // Read RPCs
	PacketIns      uint64 // packet-ins queued to a controller
	PacketInDrops  uint64 // packet-ins dropped: no primary, or its queue full
	PacketOuts     uint64 // packet-outs handed to the pipeline
	PacketOutDrops uint64 // packet-outs refused or with no handler
	DigestLists    uint64 // digest lists queued to a controller
	DigestDrops    uint64 // digest messages dropped: disabled, no primary, or queue full
}

// NewServer makes a server with no pipeline committed yet, as a P4Runtime
// target starts.
func NewServer(o Options) (*Server, error) {
	if o.DeviceID == 0 {
		o.DeviceID = 1
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = 16
	}
	if o.StreamQueue <= 0 {
		o.StreamQueue = 1024
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.P4Info != nil {
		if _, err := p4rt.NewSchema(o.P4Info); err != nil {
			return nil, fmt.Errorf("built-in P4Info: %w", err)
		}
	}
	s := &Server{opts: o, log: o.Logger, builtin: o.P4Info, roles: map[string]*role{}}
	s.digests.init(s)
	return s, nil
}

// NewGRPCServer makes a gRPC server fit for P4Runtime: it accepts requests
// of up to 64 MB (the spec asks for at least 4 MB, and a large batch of
// entries easily exceeds gRPC's default).
func NewGRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(64 << 20), grpc.ForceServerCodecV2(newCodec())}, opts...)...)
}

// Register registers the P4Runtime service on g. On a server made by
// NewGRPCServer, Writes of table entries are decoded without allocating
// per update (wiredecode.go); on any other, as protobuf-go decodes them.
func (s *Server) Register(g *grpc.Server) { g.RegisterService(s.serviceDesc(), s) }

// Store is the store of the committed pipeline, or nil before the first
// commit. It is nil-safe so callers can use it on a nil *Server.
func (s *Server) Store() *Store {
	if s == nil {
		return nil
	}
	s.pmu.RLock()
	defer s.pmu.RUnlock()
	return s.store
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Writes: s.stats.writes.Load(), WriteErrors: s.stats.writeErrors.Load(),
		Updates: s.stats.updates.Load(), UpdateErrors: s.stats.updateErrors.Load(),
		Reads:     s.stats.reads.Load(),
		PacketIns: s.stats.packetIns.Load(), PacketInDrops: s.stats.packetInDrops.Load(),
		PacketOuts: s.stats.packetOuts.Load(), PacketOutDrops: s.stats.packetOutDrops.Load(),
		DigestLists: s.stats.digestLists.Load(), DigestDrops: s.stats.digestDrops.Load(),
	}
}

// SetPacketOutHandler sets the function each valid PacketOut from a primary
// is handed to (nil drops them). Its error is reported on the stream as a
// StreamError with the error's gRPC code (INVALID_ARGUMENT if it has none).
func (s *Server) SetPacketOutHandler(f func(po *p4v1.PacketOut) error) {
	if f == nil {
		s.packetOut.Store(nil)
		return
	}
	s.packetOut.Store(&f)
}

// Capabilities reports the P4Runtime version.
func (s *Server) Capabilities(_ context.Context, req *p4v1.CapabilitiesRequest) (*p4v1.CapabilitiesResponse, error) {
	if id := req.GetDeviceId(); id != 0 && id != s.opts.DeviceID {
		return nil, status.Errorf(codes.NotFound, "unknown device id %d", id)
	}
	return &p4v1.CapabilitiesResponse{P4RuntimeApiVersion: APIVersion}, nil
}

// Write applies a batch of updates, in order, holding the store for the
// whole batch.
func (s *Server) Write(_ context.Context, req *p4v1.WriteRequest) (*p4v1.WriteResponse, error) {
	s.stats.writes.Add(1)
	resp, err := s.write(req)
	if err != nil {
		s.stats.writeErrors.Add(1)
	}
	return resp, err
}

func (s *Server) write(req *p4v1.WriteRequest) (*p4v1.WriteResponse, error) {
	if req.GetDeviceId() != s.opts.DeviceID {
		return nil, status.Errorf(codes.NotFound, "unknown device id %d", req.GetDeviceId())
	}
	done, err := s.enterPrimary(req.GetRole(), req.GetElectionId())
	if err != nil {
		return nil, err
	}
	defer done()
	s.pmu.RLock()
	defer s.pmu.RUnlock()
	st := s.store
	if st == nil {
		return nil, status.Error(codes.FailedPrecondition, "no forwarding pipeline config has been committed")
	}
	switch req.GetAtomicity() {
	case p4v1.WriteRequest_CONTINUE_ON_ERROR:
	case p4v1.WriteRequest_ROLLBACK_ON_ERROR, p4v1.WriteRequest_DATAPLANE_ATOMIC:
		return nil, status.Errorf(codes.Unimplemented, "atomicity %v is not supported, only CONTINUE_ON_ERROR", req.GetAtomicity())
	default:
		return nil, status.Errorf(codes.InvalidArgument, "unknown atomicity %d", req.GetAtomicity())
	}
	updates := req.GetUpdates()
	s.stats.updates.Add(uint64(len(updates)))
	var errs []error // nil until the first failure
	st.mu.Lock()
	st.reclaim()
	onWrite := s.opts.OnWrite
	for i, u := range updates {
		if err := s.apply(st, u, &st.sc); err != nil {
			if errs == nil {
				errs = make([]error, len(updates))
			}
			errs[i] = err
			continue
		}
		if onWrite != nil {
			onWrite(u)
		}
	}
	st.mu.Unlock()
	if errs == nil {
		return emptyWriteResponse, nil
	}
	return nil, batchError(errs, &s.stats.updateErrors)
}

// emptyWriteResponse is every successful Write's response: it has no
// fields, and gRPC only reads it.
var emptyWriteResponse = &p4v1.WriteResponse{}

// apply runs one update; the caller holds st.mu.
func (s *Server) apply(st *Store, u *p4v1.Update, sc *scratch) error {
	typ := u.GetType()
	if typ == p4v1.Update_UNSPECIFIED || typ > p4v1.Update_DELETE {
		return errf(codes.InvalidArgument, "update type %v", typ)
	}
	switch e := u.GetEntity().GetEntity().(type) {
	case *p4v1.Entity_TableEntry:
		return st.writeTableEntry(typ, e.TableEntry, sc)
	case *p4v1.Entity_ActionProfileMember:
		return st.writeMember(typ, e.ActionProfileMember, sc)
	case *p4v1.Entity_ActionProfileGroup:
		return st.writeGroup(typ, e.ActionProfileGroup)
	case *p4v1.Entity_DirectCounterEntry:
		return st.writeDirectCounter(typ, e.DirectCounterEntry, sc)
	case *p4v1.Entity_DigestEntry:
		return s.digests.write(st.schema, typ, e.DigestEntry)
	case nil:
		return errf(codes.InvalidArgument, "update without an entity")
	default:
		return errf(codes.Unimplemented, "entity %T is not supported", e)
	}
}

// okDetail is the p4.v1.Error of an update that worked, shared by every
// error response since it never changes.
var okDetail = func() *anypb.Any {
	a, err := anypb.New(&p4v1.Error{})
	if err != nil {
		panic(err)
	}
	return a
}()

// batchError is the status of a Write in which some updates failed:
// UNKNOWN, with one p4.v1.Error per update in request order (spec §12.3).
func batchError(errs []error, failed *atomic.Uint64) error {
	st := &spb.Status{Code: int32(codes.Unknown), Details: make([]*anypb.Any, len(errs))}
	n := 0
	var first string
	for i, err := range errs {
		if err == nil {
			st.Details[i] = okDetail
			continue
		}
		n++
		pe := &p4v1.Error{CanonicalCode: int32(codes.Unknown), Message: err.Error(), Space: ErrorSpace}
		var oe *opError
		if errors.As(err, &oe) {
			pe.CanonicalCode, pe.Message = int32(oe.code), oe.msg
		}
		if first == "" {
			first = fmt.Sprintf("update %d: %s: %s", i, codes.Code(pe.CanonicalCode), pe.Message)
		}
		a, aerr := anypb.New(pe)
		if aerr != nil {
			return status.Errorf(codes.Internal, "packing error details: %v", aerr)
		}
		st.Details[i] = a
	}
	failed.Add(uint64(n))
	st.Message = fmt.Sprintf("%d of %d updates failed; first: %s", n, len(errs), first)
	return status.FromProto(st).Err()
}

// SetForwardingPipelineConfig verifies, saves or commits a pipeline. Only
// a P4Info compatible with the built-in pipeline is accepted.
func (s *Server) SetForwardingPipelineConfig(_ context.Context, req *p4v1.SetForwardingPipelineConfigRequest) (*p4v1.SetForwardingPipelineConfigResponse, error) {
	if req.GetDeviceId() != s.opts.DeviceID {
		return nil, status.Errorf(codes.NotFound, "unknown device id %d", req.GetDeviceId())
	}
	done, err := s.enterPrimary(req.GetRole(), req.GetElectionId())
	if err != nil {
		return nil, err
	}
	defer done()
	cfg := req.GetConfig()
	switch req.GetAction() {
	case p4v1.SetForwardingPipelineConfigRequest_VERIFY:
		_, err := s.verify(cfg)
		return respOrErr(err)
	case p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_SAVE:
		if _, err := s.verify(cfg); err != nil {
			return nil, err
		}
		s.pmu.Lock()
		s.saved = cfg
		s.pmu.Unlock()
		return &p4v1.SetForwardingPipelineConfigResponse{}, nil
	case p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT:
		schema, err := s.verify(cfg)
		if err != nil {
			return nil, err
		}
		return respOrErr(s.commit(cfg, schema, false))
	case p4v1.SetForwardingPipelineConfigRequest_COMMIT:
		if cfg != nil {
			return nil, status.Error(codes.InvalidArgument, "COMMIT commits the saved config: it takes no config")
		}
		s.pmu.RLock()
		saved := s.saved
		s.pmu.RUnlock()
		if saved == nil {
			return nil, status.Error(codes.NotFound, "no saved config to commit (VERIFY_AND_SAVE first)")
		}
		schema, err := s.verify(saved)
		if err != nil {
			return nil, err
		}
		// The saved config passed the same check as the committed one, so
		// replaying the writes since the save leaves the state as it is.
		return respOrErr(s.commit(saved, schema, true))
	case p4v1.SetForwardingPipelineConfigRequest_RECONCILE_AND_COMMIT:
		schema, err := s.verify(cfg)
		if err != nil {
			return nil, err
		}
		return respOrErr(s.commit(cfg, schema, true))
	default:
		return nil, status.Errorf(codes.InvalidArgument, "pipeline config action %v", req.GetAction())
	}
}

func respOrErr(err error) (*p4v1.SetForwardingPipelineConfigResponse, error) {
	if err != nil {
		return nil, err
	}
	return &p4v1.SetForwardingPipelineConfigResponse{}, nil
}

// verify checks that cfg can be realised: a P4Info that indexes and that
// matches the built-in pipeline.
func (s *Server) verify(cfg *p4v1.ForwardingPipelineConfig) (*p4rt.Schema, error) {
	if cfg.GetP4Info() == nil {
		return nil, status.Error(codes.InvalidArgument, "the config has no P4Info")
	}
	schema, err := p4rt.NewSchema(cfg.GetP4Info())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "P4Info: %v", err)
	}
	if s.builtin != nil {
		if err := Compatible(s.builtin, cfg.GetP4Info()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "P4Info does not match the built-in pipeline: %v", err)
		}
	}
	return schema, nil
}

// Commit commits cfg as if a primary had sent VERIFY_AND_COMMIT, for a
// switch that starts with its pipeline loaded.
func (s *Server) Commit(cfg *p4v1.ForwardingPipelineConfig) error {
	schema, err := s.verify(cfg)
	if err != nil {
		return err
	}
	return s.commit(cfg, schema, false)
}

// commit makes cfg the committed pipeline. With keep, the current state is
// kept when there is one (the P4Info is compatible, so every entity still
// means the same); otherwise the state is cleared.
func (s *Server) commit(cfg *p4v1.ForwardingPipelineConfig, schema *p4rt.Schema, keep bool) error {
	s.pmu.Lock()
	if keep && s.store != nil {
		s.committed = cfg
		s.saved = nil
		s.pmu.Unlock()
		return nil
	}
	st := NewStore(schema)
	if err := st.setDefaults(s.opts.Defaults); err != nil {
		s.pmu.Unlock()
		return status.Errorf(codes.InvalidArgument, "initial default entries: %v", err)
	}
	s.store, s.schema, s.committed, s.saved = st, schema, cfg, nil
	s.pmu.Unlock()
	s.digests.reset()
	s.log.Info("pipeline committed", "cookie", cfg.GetCookie().GetCookie(), "tables", len(schema.Tables()))
	if s.opts.OnCommit != nil {
		s.opts.OnCommit(st)
	}
	return nil
}

// setDefaults installs the initial default entries given in Options.
func (st *Store) setDefaults(defs []*p4v1.TableEntry) error {
	for _, te := range defs {
		t := st.tables[te.GetTableId()]
		if t == nil {
			return fmt.Errorf("unknown table id %d", te.GetTableId())
		}
		a := te.GetAction().GetAction()
		if a == nil {
			return fmt.Errorf("table %s: default entry without an action", t.Info.Name())
		}
		e, err := st.defaultEntry(t, a)
		if err != nil {
			return fmt.Errorf("table %s: %w", t.Info.Name(), err)
		}
		t.initial, t.Default = e, e
	}
	return nil
}

// GetForwardingPipelineConfig returns the committed config, or no config
// before the first commit (spec §14).
func (s *Server) GetForwardingPipelineConfig(_ context.Context, req *p4v1.GetForwardingPipelineConfigRequest) (*p4v1.GetForwardingPipelineConfigResponse, error) {
	if req.GetDeviceId() != s.opts.DeviceID {
		return nil, status.Errorf(codes.NotFound, "unknown device id %d", req.GetDeviceId())
	}
	s.pmu.RLock()
	c := s.committed
	s.pmu.RUnlock()
	if c == nil {
		return &p4v1.GetForwardingPipelineConfigResponse{}, nil
	}
	out := &p4v1.ForwardingPipelineConfig{Cookie: c.GetCookie()}
	switch req.GetResponseType() {
	case p4v1.GetForwardingPipelineConfigRequest_ALL:
		out.P4Info, out.P4DeviceConfig = c.GetP4Info(), c.GetP4DeviceConfig()
	case p4v1.GetForwardingPipelineConfigRequest_COOKIE_ONLY:
	case p4v1.GetForwardingPipelineConfigRequest_P4INFO_AND_COOKIE:
		out.P4Info = c.GetP4Info()
	case p4v1.GetForwardingPipelineConfigRequest_DEVICE_CONFIG_AND_COOKIE:
		out.P4DeviceConfig = c.GetP4DeviceConfig()
	default:
		return nil, status.Errorf(codes.InvalidArgument, "response type %v", req.GetResponseType())
	}
	return &p4v1.GetForwardingPipelineConfigResponse{Config: out}, nil
}
