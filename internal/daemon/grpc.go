package daemon

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/identity"
)

// Limits bound what clients can make a daemon's gRPC server hold.
type Limits struct {
	// StreamsPerPeer bounds the streams open at once by one identity (by
	// one connection when nobody is authenticated); 0 means 8192, room
	// for an OHC pulling 2,000 peer services from one controller.
	StreamsPerPeer int
	// Streams bounds the streams open at once on the server; 0 means
	// 65536.
	Streams int
	// MaxConnectionAge makes clients reconnect now and then, so that a
	// rotated certificate or a moved replica is picked up and no
	// connection lives forever; 0 means 1h. Streams are given
	// MaxConnectionAgeGrace to move (watches resume where they were).
	MaxConnectionAge, MaxConnectionAgeGrace time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.StreamsPerPeer <= 0 {
		l.StreamsPerPeer = 8192
	}
	if l.Streams <= 0 {
		l.Streams = 65536
	}
	if l.MaxConnectionAge <= 0 {
		l.MaxConnectionAge = time.Hour
	}
	if l.MaxConnectionAgeGrace <= 0 {
		l.MaxConnectionAgeGrace = 10 * time.Minute
	}
	return l
}

// Client keepalive: a ping after 30 s of silence, the connection dropped
// when none is answered in 10 s. A half-open connection (a peer rebooted,
// a NAT forgot it) is noticed within 40 s instead of never. The servers'
// enforcement policy (MinTime) accepts exactly this.
const (
	KeepaliveTime    = 30 * time.Second
	KeepaliveTimeout = 10 * time.Second
)

// ClientKeepalive is the dial option every p4mesh client uses.
func ClientKeepalive() grpc.DialOption {
	return grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: KeepaliveTime, Timeout: KeepaliveTimeout, PermitWithoutStream: true})
}

// ServerOptions are keepalive enforcement, connection age and stream
// limits: what every p4mesh gRPC server runs with.
func ServerOptions(l Limits) []grpc.ServerOption {
	l = l.withDefaults()
	sl := newStreamLimiter(l.StreamsPerPeer, l.Streams)
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveTime / 2, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time: KeepaliveTime, Timeout: KeepaliveTimeout,
			MaxConnectionAge: l.MaxConnectionAge, MaxConnectionAgeGrace: l.MaxConnectionAgeGrace,
		}),
		grpc.ChainStreamInterceptor(sl.intercept),
	}
}

// streamLimiter counts open streams per peer and overall.
type streamLimiter struct {
	perPeer, total int

	mu     sync.Mutex
	open   int
	byPeer map[string]int
}

func newStreamLimiter(perPeer, total int) *streamLimiter {
	return &streamLimiter{perPeer: perPeer, total: total, byPeer: map[string]int{}}
}

// PeerKey names who a limit counts a call against: the identity when
// there is one; else the connection, the only thing that tells
// unauthenticated clients apart.
func PeerKey(ctx context.Context) string {
	if id, err := identity.FromContext(ctx); err == nil {
		return id.String()
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return "conn:" + p.Addr.String()
	}
	return "unknown"
}

func (l *streamLimiter) acquire(key, method string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.total {
		return status.Errorf(codes.ResourceExhausted, "%s refused: the server holds its limit of %d open streams; retry later", method, l.total)
	}
	if l.byPeer[key] >= l.perPeer {
		return status.Errorf(codes.ResourceExhausted, "%s refused: %s holds its limit of %d open streams", method, key, l.perPeer)
	}
	l.open++
	l.byPeer[key]++
	return nil
}

func (l *streamLimiter) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byPeer[key]--; l.byPeer[key] <= 0 {
		delete(l.byPeer, key)
	}
}

func (l *streamLimiter) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	key := PeerKey(ss.Context())
	if err := l.acquire(key, info.FullMethod); err != nil {
		return err
	}
	defer l.release(key)
	return handler(srv, ss)
}
