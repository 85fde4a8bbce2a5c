package dataplane

import (
	"errors"
	"fmt"
	"io"
	"sync"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/genproto/googleapis/rpc/code"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/p4mesh/p4mesh/p4rt"
)

// electionID is a 128-bit election id; set is false for an unset one,
// which is lower than every id and can never be primary (spec §16.2.1).
type electionID struct {
	hi, lo uint64
	set    bool
}

func toElectionID(u *p4v1.Uint128) electionID {
	if u == nil {
		return electionID{}
	}
	return electionID{hi: u.GetHigh(), lo: u.GetLow(), set: true}
}

func (a electionID) less(b electionID) bool {
	switch {
	case !a.set || !b.set:
		return !a.set && b.set
	case a.hi != b.hi:
		return a.hi < b.hi
	}
	return a.lo < b.lo
}

func (a electionID) proto() *p4v1.Uint128 {
	if !a.set {
		return nil
	}
	return &p4v1.Uint128{High: a.hi, Low: a.lo}
}

// role is the arbitration state of one (device, role) pair.
type role struct {
	name    string
	config  *anypb.Any
	streams map[*stream]struct{}
	primary *stream
	highest electionID // highest election id ever seen (spec §5.3)
	// inflight counts Writes and pipeline pushes admitted from the primary,
	// so a change of primary can let them finish first (spec §5.3).
	inflight sync.WaitGroup
}

// stream is one StreamChannel. Its arbitration fields are guarded by the
// server's amu.
type stream struct {
	srv  p4v1.P4Runtime_StreamChannelServer
	ctrl chan *p4v1.StreamMessageResponse // arbitration and errors: never dropped while there is room
	data chan *p4v1.StreamMessageResponse // packet-ins and digests: dropped when full
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once
	role *role // nil until the first arbitration
	dev  uint64
	id   electionID
}

func newStream(srv p4v1.P4Runtime_StreamChannelServer, queue int) *stream {
	st := &stream{
		srv:  srv,
		ctrl: make(chan *p4v1.StreamMessageResponse, 256),
		data: make(chan *p4v1.StreamMessageResponse, queue),
		done: make(chan struct{}),
	}
	st.wg.Add(1)
	go st.sendLoop()
	return st
}

// sendLoop is the stream's only sender, as gRPC requires; control messages
// go before queued packets.
func (st *stream) sendLoop() {
	defer st.wg.Done()
	for {
		var m *p4v1.StreamMessageResponse
		select {
		case m = <-st.ctrl:
		default:
			select {
			case m = <-st.ctrl:
			case m = <-st.data:
			case <-st.done:
				return
			}
		}
		if err := st.srv.Send(m); err != nil {
			// The client is gone; the receive side ends the handler.
			<-st.done
			return
		}
	}
}

// stop ends the sender and waits for it, so nothing is sent after the
// handler returns.
func (st *stream) stop() {
	st.once.Do(func() { close(st.done) })
	st.wg.Wait()
}

// sendCtrl queues a message that must not be lost.
func (st *stream) sendCtrl(m *p4v1.StreamMessageResponse) {
	select {
	case st.ctrl <- m:
	default:
		// 256 undelivered control messages: the client is not reading.
		// Dropping beats blocking arbitration for every other client.
	}
}

// sendData queues a packet-in or digest list without blocking.
func (st *stream) sendData(m *p4v1.StreamMessageResponse) bool {
	select {
	case st.data <- m:
		return true
	default:
		return false
	}
}

// StreamChannel runs one controller session: arbitration, packet-out,
// digest acks in; arbitration updates, packet-in, digests and stream
// errors out.
func (s *Server) StreamChannel(srv p4v1.P4Runtime_StreamChannelServer) error {
	st := newStream(srv, s.opts.StreamQueue)
	defer st.stop()
	defer s.leave(st)
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch u := req.GetUpdate().(type) {
		case *p4v1.StreamMessageRequest_Arbitration:
			if err := s.arbitrate(st, u.Arbitration); err != nil {
				return err
			}
		case *p4v1.StreamMessageRequest_Packet:
			s.handlePacketOut(st, u.Packet)
		case *p4v1.StreamMessageRequest_DigestAck:
			s.digests.ack(st, u.DigestAck)
		default:
			st.sendCtrl(&p4v1.StreamMessageResponse{Update: &p4v1.StreamMessageResponse_Error{Error: &p4v1.StreamError{
				CanonicalCode: int32(codes.InvalidArgument),
				Message:       fmt.Sprintf("unsupported stream message %T", u),
				Details:       &p4v1.StreamError_Other{Other: &p4v1.StreamOtherError{}},
			}}})
		}
	}
}

// arbitrate handles a MasterArbitrationUpdate (spec §5.3). An error ends
// the stream with its code, as the spec requires; it is never a
// StreamError.
func (s *Server) arbitrate(st *stream, m *p4v1.MasterArbitrationUpdate) error {
	s.amu.Lock()
	defer s.amu.Unlock()
	name := m.GetRole().GetName()
	id := toElectionID(m.GetElectionId())
	if st.role == nil {
		if m.GetDeviceId() != s.opts.DeviceID {
			return status.Errorf(codes.NotFound, "unknown device id %d", m.GetDeviceId())
		}
		r := s.roles[name]
		if r == nil {
			r = &role{name: name, streams: map[*stream]struct{}{}}
			s.roles[name] = r
		}
		if id.set && r.usedBy(id, st) {
			return status.Errorf(codes.InvalidArgument, "election id %d:%d is in use by another controller of role %q", id.hi, id.lo, name)
		}
		if len(r.streams) >= s.opts.MaxStreams {
			return status.Errorf(codes.ResourceExhausted, "role %q already has %d streams", name, len(r.streams))
		}
		st.role, st.dev, st.id = r, m.GetDeviceId(), id
		r.streams[st] = struct{}{}
	} else {
		r := st.role
		switch {
		case m.GetDeviceId() != st.dev:
			return status.Errorf(codes.FailedPrecondition, "the stream is for device %d, not %d: open a new stream", st.dev, m.GetDeviceId())
		case name != r.name:
			return status.Errorf(codes.FailedPrecondition, "the stream is for role %q, not %q: open a new stream", r.name, name)
		case id.set && r.usedBy(id, st):
			return status.Errorf(codes.InvalidArgument, "election id %d:%d is in use by another controller of role %q", id.hi, id.lo, name)
		}
		st.id = id
	}
	s.elect(st, m.GetRole().GetConfig())
	return nil
}

func (r *role) usedBy(id electionID, self *stream) bool {
	for o := range r.streams {
		if o != self && o.id == id {
			return true
		}
	}
	return false
}

// elect applies the primary rules of spec §5.3 after st's election id was
// accepted; amu is held.
func (s *Server) elect(st *stream, cfg *anypb.Any) {
	r := st.role
	if st.id.set && !st.id.less(r.highest) {
		prev := r.primary
		r.primary, r.highest = st, st.id
		r.config = cfg
		s.setPacketPrimary(r)
		if prev == nil {
			r.inflight.Wait()
			s.notifyAll(r)
			return
		}
		// The old primary is refused from here on (its election id is no
		// longer the highest); tell everyone else, let its writes finish,
		// then tell the new primary.
		for o := range r.streams {
			if o != st {
				s.notify(r, o)
			}
		}
		r.inflight.Wait()
		s.notify(r, st)
		s.digests.clearCache()
		return
	}
	if r.primary == st {
		// A primary downgraded itself: nobody is primary now.
		r.primary = nil
		s.setPacketPrimary(r)
		s.notifyAll(r)
		return
	}
	s.notify(r, st)
}

// leave removes a closed stream; when it was the primary every remaining
// stream of the role is told there is none (spec §5: no failover until a
// client sends a higher or equal election id).
func (s *Server) leave(st *stream) {
	s.amu.Lock()
	defer s.amu.Unlock()
	r := st.role
	if r == nil {
		return
	}
	delete(r.streams, st)
	if r.primary == st {
		r.primary = nil
		s.setPacketPrimary(r)
		s.notifyAll(r)
	}
}

func (s *Server) setPacketPrimary(r *role) {
	if r.name == "" {
		s.pktPrimary.Store(r.primary)
	}
}

func (s *Server) notifyAll(r *role) {
	for o := range r.streams {
		s.notify(r, o)
	}
}

// notify sends o the arbitration state of its role (spec §5.4).
func (s *Server) notify(r *role, o *stream) {
	u := &p4v1.MasterArbitrationUpdate{DeviceId: s.opts.DeviceID, ElectionId: r.highest.proto()}
	if r.name != "" || r.config != nil {
		u.Role = &p4v1.Role{Name: r.name, Config: r.config}
	}
	switch {
	case r.primary == o:
		u.Status = &spb.Status{Code: int32(code.Code_OK), Message: "primary"}
	case r.primary != nil:
		u.Status = &spb.Status{Code: int32(code.Code_ALREADY_EXISTS), Message: "backup: another controller is primary"}
	default:
		u.Status = &spb.Status{Code: int32(code.Code_NOT_FOUND), Message: "backup: there is no primary"}
	}
	o.sendCtrl(&p4v1.StreamMessageResponse{Update: &p4v1.StreamMessageResponse_Arbitration{Arbitration: u}})
}

// enterPrimary admits a Write or pipeline push from (role, election id):
// NOT_FOUND for a role nobody arbitrated for, PERMISSION_DENIED unless it
// is the role's primary. The returned func must be called when the request
// is done. As PI does, a request with no election id is admitted while no
// controller of the role has a stream, which keeps tools like grpc_cli
// working against a switch nobody controls.
func (s *Server) enterPrimary(name string, u *p4v1.Uint128) (func(), error) {
	id := toElectionID(u)
	s.amu.Lock()
	defer s.amu.Unlock()
	r := s.roles[name]
	if r == nil {
		if name != "" {
			return nil, status.Errorf(codes.NotFound, "unknown role %q", name)
		}
		if !id.set {
			return func() {}, nil
		}
		return nil, status.Error(codes.PermissionDenied, "not primary: no controller has arbitrated")
	}
	if len(r.streams) == 0 && !id.set {
		return func() {}, nil
	}
	if r.primary == nil || !id.set || id != r.primary.id {
		return nil, status.Errorf(codes.PermissionDenied, "not primary for role %q", name)
	}
	r.inflight.Add(1)
	return r.inflight.Done, nil
}

// SendPacketIn sends a packet to the primary of the default role. It never
// blocks: with no primary, or its queue full, the packet is dropped and
// counted.
func (s *Server) SendPacketIn(payload []byte, md []*p4v1.PacketMetadata) {
	p := s.pktPrimary.Load()
	if p == nil {
		s.stats.packetInDrops.Add(1)
		return
	}
	m := &p4v1.StreamMessageResponse{Update: &p4v1.StreamMessageResponse_Packet{Packet: &p4v1.PacketIn{Payload: payload, Metadata: md}}}
	if !p.sendData(m) {
		s.stats.packetInDrops.Add(1)
		return
	}
	s.stats.packetIns.Add(1)
}

// handlePacketOut checks a PacketOut and hands it to the pipeline; a bad
// one is answered with a StreamError and the stream stays open.
func (s *Server) handlePacketOut(st *stream, po *p4v1.PacketOut) {
	s.amu.Lock()
	primary := st.role != nil && st.role.primary == st
	s.amu.Unlock()
	if !primary {
		s.stats.packetOutDrops.Add(1)
		s.packetOutError(st, po, codes.PermissionDenied, "only the primary controller may send packets")
		return
	}
	s.pmu.RLock()
	schema := s.schema
	s.pmu.RUnlock()
	if schema == nil {
		s.stats.packetOutDrops.Add(1)
		s.packetOutError(st, po, codes.FailedPrecondition, "no forwarding pipeline config has been committed")
		return
	}
	if err := checkPacketOut(schema, po); err != nil {
		s.stats.packetOutDrops.Add(1)
		s.packetOutError(st, po, codes.InvalidArgument, err.Error())
		return
	}
	h := s.packetOut.Load()
	if h == nil {
		s.stats.packetOutDrops.Add(1)
		return
	}
	if err := (*h)(po); err != nil {
		s.stats.packetOutDrops.Add(1)
		c := status.Code(err)
		if c == codes.Unknown {
			c = codes.InvalidArgument
		}
		s.packetOutError(st, po, c, err.Error())
		return
	}
	s.stats.packetOuts.Add(1)
}

func (s *Server) packetOutError(st *stream, po *p4v1.PacketOut, c codes.Code, msg string) {
	st.sendCtrl(&p4v1.StreamMessageResponse{Update: &p4v1.StreamMessageResponse_Error{Error: &p4v1.StreamError{
		CanonicalCode: int32(c),
		Message:       msg,
		Space:         ErrorSpace,
		Details:       &p4v1.StreamError_PacketOut{PacketOut: &p4v1.PacketOutError{PacketOut: po}},
	}}})
}

// checkPacketOut checks the metadata of po against the P4Info packet_out
// header: exactly one value per field, each fitting its width (spec §16.1).
func checkPacketOut(schema *p4rt.Schema, po *p4v1.PacketOut) error {
	pm, err := schema.PacketMetadata("packet_out")
	if err != nil {
		if len(po.GetMetadata()) > 0 {
			return fmt.Errorf("the pipeline has no packet_out header, yet the packet has %d metadata", len(po.GetMetadata()))
		}
		return nil
	}
	fields := pm.GetMetadata()
	seen := make([]bool, len(fields))
	for _, m := range po.GetMetadata() {
		i := -1
		for j, f := range fields {
			if f.GetId() == m.GetMetadataId() {
				i = j
				break
			}
		}
		if i < 0 {
			return fmt.Errorf("unknown packet_out metadata id %d", m.GetMetadataId())
		}
		if seen[i] {
			return fmt.Errorf("packet_out metadata %s given twice", fields[i].GetName())
		}
		seen[i] = true
		if _, err := canon(m.GetValue(), int(fields[i].GetBitwidth()), desc{"packet_out metadata ", fields[i].GetName()}); err != nil {
			return err
		}
	}
	for i, ok := range seen {
		if !ok {
			return fmt.Errorf("packet_out metadata %s is missing", fields[i].GetName())
		}
	}
	return nil
}
