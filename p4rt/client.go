package p4rt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Limits and defaults of the client.
const (
	// DefaultMaxBatch is the default number of updates per WriteRequest.
	// Large enough to amortise round trips, small enough that the per-update
	// error details of a failed batch fit in the response trailers.
	DefaultMaxBatch = 1000
	// DefaultPacketInBuffer and DefaultDigestBuffer size the channels of
	// PacketIns and Digests: a burst the application can absorb without the
	// stream reader ever blocking.
	DefaultPacketInBuffer = 1024
	DefaultDigestBuffer   = 256

	// maxWriteBytes bounds one WriteRequest. Servers accept 4 MiB by default
	// (the spec asks for at least that); the headroom covers the request
	// envelope and the per-update framing estimate being rough.
	maxWriteBytes = 4<<20 - 64<<10
	// maxReadBytes is the largest response message accepted: a wildcard read
	// of a big table arrives in few, large ReadResponses.
	maxReadBytes = 64 << 20
	// streamErrorBuffer and mastershipBuffer size the other event channels.
	streamErrorBuffer = 64
	mastershipBuffer  = 16
)

// ElectionID is a P4Runtime election id, an unsigned 128-bit number. Among the
// controllers of one (device, role) the switch makes the one with the highest
// id primary. The zero value means "no election id": the client is a backup
// that can read but never write. (The spec counts an explicit {0,0} as set and
// Stratum refuses it, so the client never sends it.)
type ElectionID struct{ High, Low uint64 }

// IsZero reports whether e is the zero value, i.e. no election id.
func (e ElectionID) IsZero() bool { return e == ElectionID{} }

// Compare returns -1, 0 or +1 as e is less than, equal to or greater than o.
func (e ElectionID) Compare(o ElectionID) int {
	switch {
	case e.High < o.High:
		return -1
	case e.High > o.High:
		return 1
	case e.Low < o.Low:
		return -1
	case e.Low > o.Low:
		return 1
	}
	return 0
}

// String prints the id in decimal when it fits 64 bits (the usual case: a
// timestamp or a counter), else as 128-bit hex.
func (e ElectionID) String() string {
	if e.High == 0 {
		return strconv.FormatUint(e.Low, 10)
	}
	return fmt.Sprintf("0x%x%016x", e.High, e.Low)
}

// proto returns the wire form, nil for the zero value so the field stays unset.
func (e ElectionID) proto() *p4v1.Uint128 {
	if e.IsZero() {
		return nil
	}
	return &p4v1.Uint128{High: e.High, Low: e.Low}
}

// electionIDFromProto converts the wire form; nil becomes the zero value.
func electionIDFromProto(u *p4v1.Uint128) ElectionID {
	return ElectionID{High: u.GetHigh(), Low: u.GetLow()}
}

// Mastership is one arbitration notification from the switch, or the client's
// own note that the stream was lost.
type Mastership struct {
	// Primary reports whether this client is the primary controller.
	Primary bool
	// ElectionID is the election id of the primary as the switch reported it
	// (the highest it has seen for the device and role); zero if the switch
	// has never had a primary or the stream was lost.
	ElectionID ElectionID
	// Status is the arbitration status: OK for the primary, ALREADY_EXISTS
	// for a backup while another client is primary, NOT_FOUND for a backup
	// while there is no primary, and UNAVAILABLE when the client itself
	// noted the stream going away.
	Status codes.Code
	// Message is the switch's status message, if any.
	Message string
}

// Config configures a Client. Zero values of optional fields mean the
// documented defaults.
type Config struct {
	// Addr is the switch's P4Runtime address, "host:port" (or any gRPC
	// target). Required.
	Addr string
	// DeviceID is the P4Runtime device id. Required and never 0: v1.5 of the
	// spec reserves 0, and BMv2's default of 0 is a classic misconfiguration.
	DeviceID uint64
	// ElectionID is this controller's election id. Zero means none: the
	// client is a standby that reads and receives notifications but is never
	// primary. Choosing ids (e.g. higher after each controller restart, since
	// a switch remembers the highest it has seen) is the caller's job.
	ElectionID ElectionID
	// Role is the controller role; "" is the default role, which leaves the
	// role unset on the wire as the spec requires.
	Role string
	// TLS enables TLS (and mTLS when it carries a client certificate); nil
	// means plaintext. See TLSConfig.
	TLS *tls.Config
	// MaxBatch is the most updates sent in one WriteRequest (default
	// DefaultMaxBatch). Each request is also kept under 4 MB.
	MaxBatch int
	// WritesInFlight is how many WriteRequests one Write call keeps in
	// flight when it splits its updates into several (default 1: one
	// after the other). A switch may apply the updates of one request in
	// any order (P4Runtime §12), so a caller must not rely on order inside
	// one Write call anyway, and requests of the same call in flight
	// together change no guarantee; dependent updates (members before the
	// groups naming them) belong in separate Write calls, each waited for.
	WritesInFlight int
	// Backoff paces reconnection attempts (default 100ms doubling to 10s).
	Backoff Backoff
	// Logger receives connection, arbitration and reconnect events. Default:
	// discard.
	Logger *slog.Logger
	// PacketInBuffer and DigestBuffer size the PacketIns and Digests channels
	// (defaults DefaultPacketInBuffer, DefaultDigestBuffer). When one is full
	// the newest message is dropped and counted, because blocking would stall
	// arbitration notifications behind a slow consumer.
	PacketInBuffer int
	DigestBuffer   int
	// DialOptions are appended to the client's own dial options, so they can
	// override them (e.g. keepalive parameters: none are set by default,
	// because servers refuse pings more frequent than they allow).
	DialOptions []grpc.DialOption
}

// ClientStats are counters of events the client absorbed rather than passed
// on, for metrics.
type ClientStats struct {
	PacketInsDropped    uint64 // PacketIns channel full
	DigestsDropped      uint64 // Digests channel full
	StreamErrorsDropped uint64 // StreamErrors channel full
	MastershipDropped   uint64 // older Mastership events replaced by newer ones
	Arbitrations        uint64 // streams that completed arbitration
	// Elections counts the times the switch made this client primary: a
	// stream arbitrated as primary, or a promotion on an open one. Another
	// controller may have written in between, so an owner of the switch's
	// state reads it back after each.
	Elections uint64
}

// Client is a P4Runtime client for one device: it keeps a StreamChannel open
// (reconnecting with backoff), tracks mastership, and offers pipeline push,
// batched writes with per-update errors, streamed reads and packet/digest I/O.
// Run drives the connection; the other methods may be called from any
// goroutine, before or while Run runs. A Client is used once: after Run
// returns or Close is called, methods return ErrClosed.
type Client struct {
	cfg      Config
	log      *slog.Logger
	dialOpts []grpc.DialOption

	// Run's goroutine is the only sender on these channels, and closes them
	// when it returns, so consumers ranging over them stop.
	packetIns    chan *p4v1.PacketIn
	digests      chan *p4v1.DigestList
	streamErrors chan *p4v1.StreamError
	mastership   chan Mastership

	packetInsDropped    atomic.Uint64
	digestsDropped      atomic.Uint64
	streamErrorsDropped atomic.Uint64
	mastershipDropped   atomic.Uint64
	arbitrations        atomic.Uint64
	elections           atomic.Uint64

	mu sync.Mutex
	// mu guards the following fields.
	conn      *grpc.ClientConn   // connection of the current attempt; nil between attempts
	sess      *clientStream      // open stream after the arbitration request went out; nil otherwise
	connected bool               // the switch answered arbitration on sess
	primary   bool               // the switch's latest word: this client is primary
	lastErr   error              // why the last attempt ended; cleared by a successful arbitration
	started   bool               // Run was called
	closed    bool               // Close was called or Run returned
	cancelRun context.CancelFunc // stops Run; set once started
	runDone   chan struct{}      // closed when Run returns; set once started
	changed   chan struct{}      // closed (and replaced) on every change of the fields above
}

// clientStream is one open StreamChannel.
type clientStream struct {
	stream p4v1.P4Runtime_StreamChannelClient
	// sendSem holds one token: gRPC forbids concurrent Send on a stream, and
	// a channel (unlike a mutex) lets a waiting sender give up on its ctx.
	sendSem chan struct{}
}

// send sends one message on the stream, serialised with other senders.
func (s *clientStream) send(ctx context.Context, m *p4v1.StreamMessageRequest) error {
	select {
	case s.sendSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.sendSem }()
	if err := s.stream.Send(m); err != nil {
		if errors.Is(err, io.EOF) {
			// The stream ended; its status goes to Run's reader, not here.
			return fmt.Errorf("stream channel closed: %w", ErrNotConnected)
		}
		return err
	}
	return nil
}

// New validates cfg and returns a Client. It does not connect: call Run.
func New(cfg Config) (*Client, error) {
	if cfg.Addr == "" {
		return nil, errors.New("p4rt: config: Addr is required")
	}
	if cfg.DeviceID == 0 {
		return nil, errors.New("p4rt: config: DeviceID must not be 0 (P4Runtime v1.5 reserves it; start BMv2 with --device-id 1 or higher)")
	}
	if cfg.MaxBatch < 0 {
		return nil, fmt.Errorf("p4rt: config: MaxBatch %d is negative", cfg.MaxBatch)
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.WritesInFlight < 0 {
		return nil, fmt.Errorf("p4rt: config: WritesInFlight %d is negative", cfg.WritesInFlight)
	}
	if cfg.WritesInFlight == 0 {
		cfg.WritesInFlight = 1
	}
	if cfg.PacketInBuffer <= 0 {
		cfg.PacketInBuffer = DefaultPacketInBuffer
	}
	if cfg.DigestBuffer <= 0 {
		cfg.DigestBuffer = DefaultDigestBuffer
	}
	cfg.Backoff = cfg.Backoff.withDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}

	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS.Clone())
	}
	// Per-update Write errors travel in the trailers: one p4.v1.Error per
	// update. Size the header list for a full batch (about 100 bytes per
	// update on top of 8 KiB), or an overflow turns every per-update error
	// into a bare RESOURCE_EXHAUSTED.
	hdr := uint64(8<<10) + 100*uint64(cfg.MaxBatch)
	if hdr > math.MaxUint32 {
		hdr = math.MaxUint32
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithMaxHeaderListSize(uint32(hdr)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxReadBytes)),
	}
	opts = append(opts, cfg.DialOptions...)

	return &Client{
		cfg:          cfg,
		log:          cfg.Logger.With("p4rt_addr", cfg.Addr, "device_id", cfg.DeviceID),
		dialOpts:     opts,
		packetIns:    make(chan *p4v1.PacketIn, cfg.PacketInBuffer),
		digests:      make(chan *p4v1.DigestList, cfg.DigestBuffer),
		streamErrors: make(chan *p4v1.StreamError, streamErrorBuffer),
		mastership:   make(chan Mastership, mastershipBuffer),
		changed:      make(chan struct{}),
	}, nil
}

// notifyLocked wakes every goroutine waiting for a state change. c.mu held.
func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// wait blocks until ready (evaluated with c.mu held) is true, the client is
// closed, or ctx is done.
func (c *Client) wait(ctx context.Context, what string, ready func() bool) error {
	for {
		c.mu.Lock()
		if ready() {
			c.mu.Unlock()
			return nil
		}
		if c.closed {
			c.mu.Unlock()
			return ErrClosed
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("p4rt: waiting for %s on %s: %w", what, c.cfg.Addr, ctx.Err())
		}
	}
}

// waitConn returns the current connection, waiting for Run to create one.
func (c *Client) waitConn(ctx context.Context) (*grpc.ClientConn, error) {
	var conn *grpc.ClientConn
	err := c.wait(ctx, "a connection", func() bool {
		conn = c.conn
		return conn != nil
	})
	return conn, err
}

// Run connects to the switch and keeps the StreamChannel open until ctx is
// done: it dials, opens the stream, sends the arbitration request and reads
// the stream, dispatching arbitration notifications, packet-ins, digests and
// stream errors. Whenever the stream or connection breaks - including when the
// switch refuses the arbitration (unknown device NOT_FOUND, election id in use
// INVALID_ARGUMENT) - it logs why, records it for LastError and retries after
// a jittered exponential backoff, reset by each successful arbitration: a
// refusal may be fixed on the switch side without restarting us.
//
// Run returns nil when ctx is cancelled (cancellation is how callers stop it,
// not a failure), ErrClosed if Close came first, or an error if called twice.
// When it returns, the event channels are closed and the client is done.
func (c *Client) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.started {
		c.mu.Unlock()
		return errors.New("p4rt: Run called more than once")
	}
	c.started = true
	ctx, cancel := context.WithCancel(ctx)
	c.cancelRun = cancel
	c.runDone = make(chan struct{})
	c.mu.Unlock()

	defer func() {
		cancel()
		c.mu.Lock()
		c.closed = true
		c.notifyLocked()
		c.mu.Unlock()
		c.closeChannels()
		close(c.runDone)
	}()

	attempt := 0
	for {
		arbitrated, err := c.runSession(ctx)
		if ctx.Err() != nil {
			c.log.Info("p4runtime client stopped")
			return nil
		}
		if arbitrated {
			attempt = 0
		}
		c.mu.Lock()
		c.lastErr = err
		c.mu.Unlock()

		delay := c.cfg.Backoff.Delay(attempt)
		attempt++
		level := slog.LevelWarn
		if isTerminalStreamCode(status.Code(err)) {
			// The switch refused us on purpose; retrying only helps once
			// someone fixes the configuration, so make it stand out.
			level = slog.LevelError
		}
		c.log.Log(ctx, level, "p4runtime stream ended; reconnecting",
			"err", err, "code", status.Code(err), "delay", delay, "attempt", attempt)

		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			c.log.Info("p4runtime client stopped")
			return nil
		case <-t.C:
		}
	}
}

// isTerminalStreamCode reports whether a stream-ending code means the switch
// refused this client (spec §5, "Rules for Handling MasterArbitrationUpdate
// Messages") rather than a transport failure.
func isTerminalStreamCode(c codes.Code) bool {
	switch c {
	case codes.NotFound, codes.InvalidArgument, codes.FailedPrecondition,
		codes.ResourceExhausted, codes.PermissionDenied, codes.Unauthenticated:
		return true
	}
	return false
}

// closeChannels closes the event channels. Called once, by Run on return or
// by Close when Run never started, so no sender remains.
func (c *Client) closeChannels() {
	close(c.packetIns)
	close(c.digests)
	close(c.streamErrors)
	close(c.mastership)
}

// runSession makes one connection attempt and serves its stream until it
// breaks or ctx ends. arbitrated reports whether the switch answered the
// arbitration request, which resets the backoff.
func (c *Client) runSession(ctx context.Context) (arbitrated bool, err error) {
	c.log.Info("connecting to p4runtime server", "election_id", c.cfg.ElectionID, "role", c.cfg.Role)
	conn, err := grpc.NewClient(c.cfg.Addr, c.dialOpts...)
	if err != nil {
		return false, fmt.Errorf("p4rt: dial %s: %w", c.cfg.Addr, err)
	}
	sctx, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	c.conn = conn
	c.notifyLocked()
	c.mu.Unlock()
	defer func() {
		cancel()
		c.mu.Lock()
		wasConnected, wasPrimary := c.connected, c.primary
		c.conn, c.sess, c.connected, c.primary = nil, nil, false, false
		c.notifyLocked()
		c.mu.Unlock()
		if wasConnected {
			if wasPrimary {
				c.log.Warn("p4runtime mastership lost: stream closed")
			}
			c.publishMastership(Mastership{Status: codes.Unavailable, Message: "stream channel closed"})
		}
		// Closing the connection per attempt stops its goroutines and makes
		// the next attempt start from a fresh dial instead of gRPC's own
		// (slower, uncapped by our Backoff) reconnect schedule.
		conn.Close()
	}()

	stream, err := p4v1.NewP4RuntimeClient(conn).StreamChannel(sctx)
	if err != nil {
		return false, fmt.Errorf("p4rt: open stream channel to %s: %w", c.cfg.Addr, err)
	}
	sess := &clientStream{stream: stream, sendSem: make(chan struct{}, 1)}
	arb := &p4v1.MasterArbitrationUpdate{
		DeviceId:   c.cfg.DeviceID,
		ElectionId: c.cfg.ElectionID.proto(),
	}
	if c.cfg.Role != "" {
		arb.Role = &p4v1.Role{Name: c.cfg.Role}
	}
	err = sess.send(sctx, &p4v1.StreamMessageRequest{
		Update: &p4v1.StreamMessageRequest_Arbitration{Arbitration: arb},
	})
	if err != nil && !errors.Is(err, ErrNotConnected) {
		return false, fmt.Errorf("p4rt: send arbitration to %s: %w", c.cfg.Addr, err)
	}
	// On ErrNotConnected the stream already ended: Recv below reports why.
	c.mu.Lock()
	c.sess = sess
	c.notifyLocked()
	c.mu.Unlock()

	for {
		msg, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("stream closed by the server")
			}
			return arbitrated, fmt.Errorf("p4rt: stream channel to %s: %w", c.cfg.Addr, err)
		}
		switch u := msg.GetUpdate().(type) {
		case *p4v1.StreamMessageResponse_Arbitration:
			c.handleArbitration(u.Arbitration, !arbitrated)
			arbitrated = true
		case *p4v1.StreamMessageResponse_Packet:
			select {
			case c.packetIns <- u.Packet:
			default:
				c.packetInsDropped.Add(1)
			}
		case *p4v1.StreamMessageResponse_Digest:
			select {
			case c.digests <- u.Digest:
			default:
				// Unacked, the switch will resend it after its ack timeout.
				c.digestsDropped.Add(1)
			}
		case *p4v1.StreamMessageResponse_Error:
			c.log.Warn("p4runtime stream error", "code", codes.Code(u.Error.GetCanonicalCode()), "message", u.Error.GetMessage())
			select {
			case c.streamErrors <- u.Error:
			default:
				c.streamErrorsDropped.Add(1)
			}
		default:
			c.log.Debug("p4runtime stream message ignored", "type", fmt.Sprintf("%T", u))
		}
	}
}

// handleArbitration applies one arbitration notification.
func (c *Client) handleArbitration(a *p4v1.MasterArbitrationUpdate, first bool) {
	code := codes.Code(a.GetStatus().GetCode())
	primary := code == codes.OK
	if primary && c.cfg.ElectionID.IsZero() {
		// Without an election id our writes carry none and will be refused;
		// claiming mastership would only mislead callers.
		c.log.Warn("p4runtime server reports primary for a client without election id; staying backup")
		primary = false
	}
	m := Mastership{
		Primary:    primary,
		ElectionID: electionIDFromProto(a.GetElectionId()),
		Status:     code,
		Message:    a.GetStatus().GetMessage(),
	}
	c.mu.Lock()
	was := c.primary
	c.connected, c.primary, c.lastErr = true, primary, nil
	c.notifyLocked()
	c.mu.Unlock()

	if primary && !was {
		c.elections.Add(1)
	}
	switch {
	case first:
		c.arbitrations.Add(1)
		c.log.Info("p4runtime arbitration done", "primary", primary, "status", code,
			"primary_election_id", m.ElectionID, "election_id", c.cfg.ElectionID)
	case was && !primary:
		// Another controller arbitrated with a higher id, or the switch
		// dropped us: our writes are refused from now on.
		c.log.Warn("p4runtime mastership lost", "status", code, "message", m.Message,
			"primary_election_id", m.ElectionID, "election_id", c.cfg.ElectionID)
	case was != primary:
		c.log.Info("p4runtime mastership changed", "primary", primary, "status", code,
			"primary_election_id", m.ElectionID)
	default:
		c.log.Debug("p4runtime arbitration update", "primary", primary, "status", code,
			"primary_election_id", m.ElectionID)
	}
	c.publishMastership(m)
}

// publishMastership queues m, dropping the oldest queued event when full: a
// consumer wants the latest state, and the stream reader must never block on
// it. Only Run's goroutine calls it, so the loop ends.
func (c *Client) publishMastership(m Mastership) {
	for {
		select {
		case c.mastership <- m:
			return
		default:
		}
		select {
		case <-c.mastership:
			c.mastershipDropped.Add(1)
		default:
		}
	}
}

// IsPrimary reports whether the switch's latest arbitration notification on
// the open stream made this client primary.
func (c *Client) IsPrimary() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.primary
}

// WaitPrimary blocks until this client is primary, ctx is done, or the client
// is closed. A client without election id waits until ctx ends.
func (c *Client) WaitPrimary(ctx context.Context) error {
	return c.wait(ctx, "mastership", func() bool { return c.primary })
}

// WaitConnected blocks until the stream is open and the switch has answered
// the arbitration request (as primary or backup).
func (c *Client) WaitConnected(ctx context.Context) error {
	return c.wait(ctx, "arbitration", func() bool { return c.connected })
}

// LastError returns why the most recent connection attempt ended (for
// example the switch refusing the device id with NOT_FOUND), or nil once an
// arbitration has since succeeded. status.Code works on it.
func (c *Client) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// Mastership returns the channel of arbitration notifications, including a
// synthetic UNAVAILABLE one when the stream is lost. It is buffered and keeps
// the newest events: when the consumer falls behind the oldest are dropped.
// It is closed when Run returns.
func (c *Client) Mastership() <-chan Mastership { return c.mastership }

// PacketIns returns the channel of packets the switch sent to the controller.
// When it is full new packets are dropped and counted (ClientStats); it is
// closed when Run returns.
func (c *Client) PacketIns() <-chan *p4v1.PacketIn { return c.packetIns }

// Digests returns the channel of digest lists. Ack each with AckDigest. When
// it is full new lists are dropped and counted: unacked, the switch resends
// them. It is closed when Run returns.
func (c *Client) Digests() <-chan *p4v1.DigestList { return c.digests }

// StreamErrors returns the channel of StreamError messages, the switch's
// reports of stream messages it could not process (a malformed PacketOut, an
// unknown digest ack). Full means dropped; closed when Run returns.
func (c *Client) StreamErrors() <-chan *p4v1.StreamError { return c.streamErrors }

// Stats returns the client's drop and arbitration counters.
func (c *Client) Stats() ClientStats {
	return ClientStats{
		PacketInsDropped:    c.packetInsDropped.Load(),
		DigestsDropped:      c.digestsDropped.Load(),
		StreamErrorsDropped: c.streamErrorsDropped.Load(),
		MastershipDropped:   c.mastershipDropped.Load(),
		Arbitrations:        c.arbitrations.Load(),
		Elections:           c.elections.Load(),
	}
}

// Close stops Run, waits for it to return, and makes every later call return
// ErrClosed. Cancelling Run's context does the same; Close is for owners that
// do not hold that context. It is safe to call more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	wasClosed := c.closed
	c.closed = true
	started, cancel, done := c.started, c.cancelRun, c.runDone
	c.notifyLocked()
	c.mu.Unlock()
	if started {
		cancel()
		<-done
		return nil
	}
	if !wasClosed {
		c.closeChannels()
	}
	return nil
}

// currentSession returns the open stream, and whether this client is primary.
func (c *Client) currentSession() (*clientStream, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, false, ErrClosed
	}
	return c.sess, c.primary, nil
}

// SendPacketOut sends a packet to the switch's data plane. Only the primary
// may: the switch would drop it from a backup, so the client refuses with
// ErrNotPrimary instead of failing silently. A send error is returned.
// ctx bounds the wait for other senders, not the send itself (gRPC's Send has
// no context of its own; it ends with the stream).
func (c *Client) SendPacketOut(ctx context.Context, p *p4v1.PacketOut) error {
	sess, primary, err := c.currentSession()
	if err != nil {
		return err
	}
	if sess == nil || !primary {
		return ErrNotPrimary
	}
	err = sess.send(ctx, &p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_Packet{Packet: p}})
	if err != nil {
		return fmt.Errorf("p4rt: send packet-out: %w", err)
	}
	return nil
}

// AckDigest acknowledges a digest list, so the switch may send the same data
// again (the spec's digest de-duplication) and does not resend this list. It
// needs the stream the list came on: ErrNotConnected if it is gone.
func (c *Client) AckDigest(ctx context.Context, d *p4v1.DigestList) error {
	sess, _, err := c.currentSession()
	if err != nil {
		return err
	}
	if sess == nil {
		return ErrNotConnected
	}
	err = sess.send(ctx, &p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_DigestAck{
		DigestAck: &p4v1.DigestListAck{DigestId: d.GetDigestId(), ListId: d.GetListId()},
	}})
	if err != nil {
		return fmt.Errorf("p4rt: ack digest %d list %d: %w", d.GetDigestId(), d.GetListId(), err)
	}
	return nil
}

// GetPipelineCookie returns the cookie of the pipeline installed on the
// switch (GetForwardingPipelineConfig with COOKIE_ONLY); ok is false when no
// pipeline or no cookie is installed. Servers answer FAILED_PRECONDITION
// before the first push (PI, Stratum); that is "no pipeline", not an error.
func (c *Client) GetPipelineCookie(ctx context.Context) (cookie uint64, ok bool, err error) {
	cfg, err := c.GetPipeline(ctx, p4v1.GetForwardingPipelineConfigRequest_COOKIE_ONLY)
	if status.Code(err) == codes.FailedPrecondition {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if cfg.GetCookie() == nil {
		return 0, false, nil
	}
	return cfg.GetCookie().GetCookie(), true, nil
}

// GetPipeline returns the switch's forwarding pipeline config, with the parts
// respType asks for. Reading needs neither mastership nor election id.
func (c *Client) GetPipeline(ctx context.Context, respType p4v1.GetForwardingPipelineConfigRequest_ResponseType) (*p4v1.ForwardingPipelineConfig, error) {
	conn, err := c.waitConn(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := p4v1.NewP4RuntimeClient(conn).GetForwardingPipelineConfig(ctx, &p4v1.GetForwardingPipelineConfigRequest{
		DeviceId:     c.cfg.DeviceID,
		ResponseType: respType,
	})
	if err != nil {
		return nil, fmt.Errorf("p4rt: get pipeline config (%s): %w", respType, err)
	}
	return resp.GetConfig(), nil
}

// SetPipeline installs a forwarding pipeline: P4Info p, target-specific
// deviceConfig, identified by cookie (a fingerprint of both, chosen by the
// caller). For VERIFY_AND_COMMIT and RECONCILE_AND_COMMIT it first reads the
// switch's cookie and skips the push (pushed=false) when it already equals
// cookie: VERIFY_AND_COMMIT wipes all forwarding state, so re-pushing the
// same pipeline after every controller restart would flush the switch. Other
// actions are passed through; COMMIT is sent without a config, as the spec
// requires. A cookie of 0 means "no fingerprint": never skip, send no cookie.
// Only the primary may push; RECONCILE_AND_COMMIT may be UNIMPLEMENTED.
func (c *Client) SetPipeline(ctx context.Context, p *p4configv1.P4Info, deviceConfig []byte, cookie uint64, action p4v1.SetForwardingPipelineConfigRequest_Action) (pushed bool, err error) {
	commits := action == p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT ||
		action == p4v1.SetForwardingPipelineConfigRequest_RECONCILE_AND_COMMIT
	if commits && cookie != 0 {
		cur, ok, err := c.GetPipelineCookie(ctx)
		if err != nil {
			return false, err
		}
		if ok && cur == cookie {
			c.log.Debug("p4runtime pipeline already installed", "cookie", cookie)
			return false, nil
		}
	}

	var cfg *p4v1.ForwardingPipelineConfig
	if action != p4v1.SetForwardingPipelineConfigRequest_COMMIT {
		if p == nil {
			return false, fmt.Errorf("p4rt: set pipeline (%s): nil P4Info", action)
		}
		cfg = &p4v1.ForwardingPipelineConfig{P4Info: p, P4DeviceConfig: deviceConfig}
		if cookie != 0 {
			cfg.Cookie = &p4v1.ForwardingPipelineConfig_Cookie{Cookie: cookie}
		}
	}
	conn, err := c.waitConn(ctx)
	if err != nil {
		return false, err
	}
	_, err = p4v1.NewP4RuntimeClient(conn).SetForwardingPipelineConfig(ctx, &p4v1.SetForwardingPipelineConfigRequest{
		DeviceId:   c.cfg.DeviceID,
		Role:       c.cfg.Role,
		ElectionId: c.cfg.ElectionID.proto(),
		Action:     action,
		Config:     cfg,
	})
	if err != nil {
		return false, fmt.Errorf("p4rt: set pipeline (%s, cookie %#x): %w", action, cookie, err)
	}
	c.log.Info("p4runtime pipeline pushed", "action", action, "cookie", cookie)
	return true, nil
}

// Write applies updates in batches of at most MaxBatch updates and 4 MB,
// each sent with the device id, role, election id and CONTINUE_ON_ERROR. A
// failed batch does not stop the later ones (unless ctx ends), matching what
// CONTINUE_ON_ERROR means within a batch. It returns nil when every update
// succeeded, a *WriteError naming each failed update by its index in updates,
// or another error when nothing could be sent (no connection, client closed).
// The switch may apply a batch in any order, so callers put dependencies
// (members before groups before table entries) in separate Writes; for the
// same reason the batches of one call may be in flight together
// (WritesInFlight), the errors still reported in the caller's order. Write
// waits, within ctx, for Run to have a connection; call WaitPrimary first,
// since only the primary's writes are accepted.
func (c *Client) Write(ctx context.Context, updates []*p4v1.Update) error {
	if len(updates) == 0 {
		return nil
	}
	conn, err := c.waitConn(ctx)
	if err != nil {
		return err
	}
	enc, err := encodeUpdates(updates)
	if err != nil {
		return fmt.Errorf("p4rt: write: %w", err)
	}
	var bounds [][2]int
	for start := 0; start < len(updates); {
		end := c.batchEnd(enc, start)
		bounds = append(bounds, [2]int{start, end})
		start = end
	}
	head := &p4v1.WriteRequest{
		DeviceId:   c.cfg.DeviceID,
		Role:       c.cfg.Role,
		ElectionId: c.cfg.ElectionID.proto(),
		Atomicity:  p4v1.WriteRequest_CONTINUE_ON_ERROR,
	}
	// Each batch's outcome, merged in the caller's order at the end
	// whatever order the requests finished in.
	type outcome struct {
		failed []UpdateError
		why    error
	}
	res := make([]outcome, len(bounds))
	send := func(i int) {
		start, end := bounds[i][0], bounds[i][1]
		batch := updates[start:end]
		req, err := newEncodedWrite(head, enc, start, end)
		if err == nil {
			err = conn.Invoke(ctx, p4v1.P4Runtime_Write_FullMethodName, req, &p4v1.WriteResponse{},
				grpc.ForceCodecV2(theWriteCodec))
		}
		if err != nil {
			res[i].failed, res[i].why = decodeWriteStatus(err, batch, start)
		}
	}
	// Up to WritesInFlight requests at once; a request starts only while
	// ctx is live, so what was never sent is known exactly.
	sent := len(bounds)
	if c.cfg.WritesInFlight <= 1 || len(bounds) == 1 {
		for i := range bounds {
			send(i)
			if res[i].failed != nil && ctx.Err() != nil && i+1 < len(bounds) {
				sent = i + 1
				break
			}
		}
	} else {
		slots := make(chan struct{}, c.cfg.WritesInFlight)
		var wg sync.WaitGroup
		for i := range bounds {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				sent = i
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				send(i)
			}()
		}
		wg.Wait()
	}
	werr := &WriteError{Total: len(updates)}
	var batchErrs []error
	for i := range sent {
		werr.Failed = append(werr.Failed, res[i].failed...)
		if res[i].why != nil {
			batchErrs = append(batchErrs, res[i].why)
		}
	}
	if sent < len(bounds) {
		// Report what was never sent, so the caller knows exactly which
		// updates did not apply.
		first := bounds[sent][0]
		code := status.FromContextError(ctx.Err()).Code()
		for i := first; i < len(updates); i++ {
			werr.Failed = append(werr.Failed, UpdateError{
				Index: i, Update: updates[i], Code: code, Message: "not sent: " + ctx.Err().Error(),
			})
		}
		batchErrs = append(batchErrs, fmt.Errorf("updates %d..%d not sent: %w", first, len(updates)-1, ctx.Err()))
	}
	if len(werr.Failed) == 0 {
		return nil
	}
	werr.Err = errors.Join(batchErrs...)
	return werr
}

// batchEnd returns the end of the batch starting at start: at most MaxBatch
// updates and maxWriteBytes, but always at least one update (an oversized
// update goes alone and the switch reports on it).
func (c *Client) batchEnd(enc *encodedUpdates, start int) int {
	size, end := 0, start
	for end < len(enc.off)-1 && end-start < c.cfg.MaxBatch {
		s := enc.size(end) + 8 // + tag and length prefix of the repeated field
		if end > start && size+s > maxWriteBytes {
			break
		}
		size += s
		end++
	}
	return end
}

// Read reads entities (wildcards allowed, e.g. a TableEntry with table_id 0
// for every table) and calls fn for each entity as the responses stream in,
// so a large table is never held in memory twice. An error from fn stops the
// read and is returned as is. Reading needs neither mastership nor election
// id; it waits, within ctx, for Run to have a connection.
func (c *Client) Read(ctx context.Context, entities []*p4v1.Entity, fn func(*p4v1.Entity) error) error {
	if len(entities) == 0 {
		return errors.New("p4rt: read: no entities")
	}
	conn, err := c.waitConn(ctx)
	if err != nil {
		return err
	}
	// Cancelling ends the server stream when fn stops early.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := p4v1.NewP4RuntimeClient(conn).Read(ctx, &p4v1.ReadRequest{
		DeviceId: c.cfg.DeviceID,
		Role:     c.cfg.Role,
		Entities: entities,
	})
	if err != nil {
		return fmt.Errorf("p4rt: read: %w", err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("p4rt: read: %w", err)
		}
		for _, e := range resp.GetEntities() {
			if err := fn(e); err != nil {
				return err
			}
		}
	}
}

// ReadAll is Read collecting the entities into a slice.
func (c *Client) ReadAll(ctx context.Context, entities []*p4v1.Entity) ([]*p4v1.Entity, error) {
	var out []*p4v1.Entity
	err := c.Read(ctx, entities, func(e *p4v1.Entity) error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// TLSConfig builds a client TLS configuration: caFile (PEM) is the pool of
// CAs trusted to sign the switch's certificate ("" = the system pool);
// certFile and keyFile, both or neither, are the client certificate for mTLS;
// serverName overrides the name checked in the switch's certificate (needed
// when dialling an IP address). TLS 1.2 is the minimum.
func TLSConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("p4rt: tls: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("p4rt: tls: no PEM certificate in CA file %s", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("p4rt: tls: client certificate and key must be given together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("p4rt: tls: load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
