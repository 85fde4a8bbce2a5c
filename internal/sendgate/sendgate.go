// Package sendgate bounds what watch clients that stop reading can make a
// p4mesh server hold. grpc-go queues up to 64 KiB of encoded messages per
// stream behind a client that does not read (several times that in heap
// for small events), and frees the queue only when the stream is reset or
// its connection closes; a handler blocked in Send stays blocked until
// then. Only a stream in the middle of a burst of sends can build such a
// queue, so the Gate (a watch.Gate) bounds those streams, overall and per
// client, and closes the connection of a client whose stream has had a
// send blocked for longer than StallTimeout: the client reconnects and
// resumes from its revision, or was never going to read.
package sendgate

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/peer"

	"github.com/p4mesh/p4mesh/internal/daemon"
	"github.com/p4mesh/p4mesh/watch"
)

// Defaults for Options. 256 streams stalled with full queues cost the
// controller about 110 MiB (436 KiB each, measured with destination
// events); 32 per client lets an OHC catch up on many services at once
// while taking an eighth of the room. 30 s is far beyond what a client
// that reads needs to take one message, even from a loaded host.
const (
	DefaultStreams        = 256
	DefaultStreamsPerPeer = 32
	DefaultStallTimeout   = 30 * time.Second
)

// Options configure a Gate. The zero value means the defaults, with
// stalls logged but no connection closed.
type Options struct {
	// Streams bounds the streams sending at once; 0 means DefaultStreams.
	Streams int
	// StreamsPerPeer bounds those of one identity (of one connection
	// when nobody is authenticated, as for the stream limits), so that a
	// few clients cannot take all of Streams; 0 means
	// DefaultStreamsPerPeer.
	StreamsPerPeer int
	// StallTimeout is how long one send may stay blocked before its
	// client is taken not to read and its connection closed; 0 means
	// DefaultStallTimeout.
	StallTimeout time.Duration
	// Conns is the server's listener wrapped by Track, through which the
	// gate closes connections. Nil: stalls are only logged.
	Conns  *Listener
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Streams <= 0 {
		o.Streams = DefaultStreams
	}
	if o.StreamsPerPeer <= 0 {
		o.StreamsPerPeer = DefaultStreamsPerPeer
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Gate hands out places to send, overall and per peer, and watches the
// streams holding them for sends that do not return. A stream takes its
// peer's place first, then an overall one, so that the overall queue
// holds at most StreamsPerPeer streams of any one peer and peers take
// turns; channels wake their waiters in order.
type Gate struct {
	opts  Options
	log   *slog.Logger
	slots chan struct{} // a token per stream in the gate
	epoch time.Time     // what stream.since counts from, on the monotonic clock

	// mu guards the fields below.
	mu sync.Mutex
	// peers holds the places of every peer with a stream entering or in
	// the gate, and no other: an entry goes with its last stream, so
	// clients that come and go leave nothing behind.
	peers   map[string]*peerSlots
	holders map[*stream]struct{} // streams in the gate
	stalls  uint64
}

// peerSlots are one peer's places.
type peerSlots struct {
	slots chan struct{}
	users int // streams of the peer entering or in the gate
}

// New returns a Gate. Run it to close stalled clients' connections.
func New(o Options) *Gate {
	o = o.withDefaults()
	return &Gate{
		opts:    o,
		log:     o.Logger,
		slots:   make(chan struct{}, o.Streams),
		epoch:   time.Now(),
		peers:   make(map[string]*peerSlots),
		holders: make(map[*stream]struct{}),
	}
}

// For returns the gate of one stream: ctx is the stream's, whose peer
// (identity, connection) it counts against and, when it stalls, closes.
func (g *Gate) For(ctx context.Context) watch.Gate {
	s := &stream{g: g, key: daemon.PeerKey(ctx)}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		s.addr = p.Addr.String()
	}
	return s
}

// Stats are a Gate's counters.
type Stats struct {
	Sending int // streams in the gate
	Waiting int // streams waiting to enter
	// Stalls counts the sends found blocked for longer than StallTimeout:
	// each got its connection closed, or a log line without Conns.
	Stalls uint64
}

// Stats returns the gate's counters.
func (g *Gate) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	users := 0
	for _, p := range g.peers {
		users += p.users
	}
	return Stats{Sending: len(g.holders), Waiting: users - len(g.holders), Stalls: g.stalls}
}

// Run looks for stalled streams until ctx ends, every second or a quarter
// of StallTimeout if that is shorter: a stall is noticed between
// StallTimeout and that much later.
func (g *Gate) Run(ctx context.Context) {
	t := time.NewTicker(min(time.Second, g.opts.StallTimeout/4))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.closeStalled()
		}
	}
}

// closeStalled closes the connections of the streams in the gate whose
// send in progress has been blocked for StallTimeout, each stall once.
func (g *Gate) closeStalled() {
	now := g.now()
	type stall struct {
		peer    string
		longest time.Duration
		streams int
	}
	conns := map[string]*stall{} // by address
	g.mu.Lock()
	for s := range g.holders {
		since := s.since.Load()
		if since == 0 || since == s.reported || time.Duration(now-since) < g.opts.StallTimeout {
			continue
		}
		s.reported = since
		g.stalls++
		c := conns[s.addr]
		if c == nil {
			c = &stall{peer: s.key}
			conns[s.addr] = c
		}
		c.longest = max(c.longest, time.Duration(now-since))
		c.streams++
	}
	g.mu.Unlock()

	for addr, c := range conns {
		attrs := []any{"peer", c.peer, "addr", addr, "stalled_streams", c.streams,
			"blocked_for", c.longest.Round(time.Millisecond), "stall_timeout", g.opts.StallTimeout}
		switch {
		case g.opts.Conns == nil:
			g.log.Warn("watch client not reading: a send has been blocked past the stall timeout; its queue stays until the connection ends (no connection tracker)", attrs...)
		case g.opts.Conns.CloseConn(addr):
			g.log.Warn("watch client not reading: a send has been blocked past the stall timeout; closed its connection", attrs...)
		default:
			g.log.Warn("watch client not reading: a send has been blocked past the stall timeout; its connection is not one the tracker accepted", attrs...)
		}
	}
}

// now is the time since g.epoch, plus one so that it is never the zero
// that stream.since keeps for "not sending".
func (g *Gate) now() int64 { return int64(time.Since(g.epoch)) + 1 }

// stream is one stream's use of the gate; watch calls it from the
// stream's goroutine only.
type stream struct {
	g    *Gate
	key  string // daemon.PeerKey
	addr string // the connection's remote address, to close it by
	peer *peerSlots

	// since is when the send in progress began (Gate.now), 0 when none
	// is: Progress writes it on every send, Run reads it.
	since atomic.Int64
	// reported is the since of the last stall reported; g.mu guards it.
	reported int64
}

var _ watch.Gate = (*stream)(nil)

// Enter takes a place of the stream's peer, then one of the gate.
func (s *stream) Enter(ctx context.Context) error {
	g := s.g
	g.mu.Lock()
	p := g.peers[s.key]
	if p == nil {
		p = &peerSlots{slots: make(chan struct{}, g.opts.StreamsPerPeer)}
		g.peers[s.key] = p
	}
	p.users++
	g.mu.Unlock()

	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		g.release(s.key, p)
		return ctx.Err()
	}
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		<-p.slots
		g.release(s.key, p)
		return ctx.Err()
	}
	g.mu.Lock()
	s.peer = p
	g.holders[s] = struct{}{}
	g.mu.Unlock()
	return nil
}

// Leave gives both places back.
func (s *stream) Leave() {
	g := s.g
	g.mu.Lock()
	p := s.peer
	s.peer = nil
	delete(g.holders, s)
	g.mu.Unlock()
	s.since.Store(0)
	<-g.slots
	<-p.slots
	g.release(s.key, p)
}

// release forgets a stream of p, and p with its last.
func (g *Gate) release(key string, p *peerSlots) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p.users--; p.users == 0 {
		delete(g.peers, key)
	}
}

// Progress records when the send in progress began.
func (s *stream) Progress(sending bool) {
	if sending {
		s.since.Store(s.g.now())
	} else {
		s.since.Store(0)
	}
}
