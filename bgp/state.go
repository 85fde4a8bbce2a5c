package bgp

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// NeighborState is what the speaker knows about one session now.
type NeighborState struct {
	Name, VPC string
	Address   netip.Addr
	// State is the BGP FSM state: idle, connect, active, opensent,
	// openconfirm or established.
	State string
	// Uptime is how long the session has been established (0 if not).
	Uptime time.Duration
	// Received counts prefixes received, Accepted those the import
	// filter let through. Received leaves out routes with the speaker's
	// own AS in their path (a router sending the VPC's prefixes back),
	// which GoBGP drops as loops before the speaker sees them, though its
	// max-prefixes limit counts them.
	Received, Accepted uint64
	// LastError says why the session last went down, or why it cannot
	// stay up (for example the max-prefix limit), in words.
	LastError string
}

// Neighbors returns the state of every configured neighbor, by name.
//
// It asks GoBGP nothing: the state is the last one the watch reported
// (onPeer), and the counts are the speaker's own. GoBGP's ListPeer
// counts a neighbor's routes by walking its whole adj-RIB-in on the
// server's goroutine, which then handles no UPDATE: with a million routes
// and state read every second, that walk was a quarter of the process's
// CPU and held back learning.
func (s *Speaker) Neighbors(ctx context.Context) ([]NeighborState, error) {
	s.op.Lock()
	if err := s.running(); err != nil {
		s.op.Unlock()
		return nil, err
	}
	cfg := make(map[netip.Addr]Neighbor, len(s.neighbors))
	for a, n := range s.neighbors {
		cfg[a] = n
	}
	vs := make([]*vpcServer, 0, len(s.servers))
	for _, vpc := range slices.Sorted(maps.Keys(s.servers)) {
		vs = append(vs, s.servers[vpc])
	}
	s.op.Unlock()
	var out []NeighborState
	now := time.Now()
	for _, v := range vs {
		v.mu.Lock()
		for addr, nr := range v.nbrs {
			n, ok := cfg[addr]
			if !ok || n.VPC != v.vpc {
				continue // removed; its record stays for late events
			}
			st := NeighborState{Name: n.Name, VPC: n.VPC, Address: addr, LastError: s.gl.lastError(addr),
				State: cmp.Or(nr.state, "idle"), Accepted: uint64(len(nr.routes))}
			st.Received = st.Accepted + uint64(len(nr.rejected))
			if st.State == "established" {
				st.Uptime = now.Sub(nr.since)
			}
			out = append(out, st)
		}
		v.mu.Unlock()
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bgp: list neighbors: %w", err)
	}
	slices.SortFunc(out, func(a, b NeighborState) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// gobgpLogger takes GoBGP's log lines into slog, and keeps from them the
// one thing GoBGP's API does not tell: why each session last went down.
type gobgpLogger struct {
	log *slog.Logger
	mu  sync.Mutex
	// lastErr is guarded by mu, by neighbor address.
	lastErr map[netip.Addr]string
}

func newGoBGPLogger(l *slog.Logger) *gobgpLogger {
	return &gobgpLogger{log: l, lastErr: make(map[netip.Addr]string)}
}

func (g *gobgpLogger) lastError(a netip.Addr) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lastErr[a]
}

// forget drops what is known about a removed neighbor, so a neighbor added
// again at its address starts clean.
func (g *gobgpLogger) forget(a netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.lastErr, a)
}

// record notes the reasons GoBGP logs for a session going down. The
// messages are GoBGP v3.37's (pkg/server/fsm.go, peer.go).
func (g *gobgpLogger) record(msg string, f gobgplog.Fields) {
	key, _ := f["Key"].(string)
	addr, err := netip.ParseAddr(key)
	if err != nil {
		return
	}
	var why string
	switch msg {
	case "prefix limit reached":
		if _, warning := f["Pct"]; warning {
			return
		}
		why = "neighbor sent more prefixes than its max-prefixes limit; session shut down until the neighbor gets another limit"
	case "Peer Down":
		why = downReason(fmt.Sprint(f["Reason"]))
	case "hold timer expired":
		why = downReason("hold-timer-expired")
	default:
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	// A max-prefix shutdown is followed by its own "Peer Down"; keep the
	// reason that says what to do.
	if msg == "Peer Down" && strings.HasPrefix(g.lastErr[addr], "neighbor sent more prefixes") {
		return
	}
	g.lastErr[addr] = why
}

// downReason puts GoBGP's reason for a session going down (fsm.go's
// fsmStateReason) in words.
func downReason(r string) string {
	switch {
	case r == "hold-timer-expired":
		return "hold timer expired: nothing received from the neighbor within the hold time"
	case r == "graceful-restart":
		return "connection lost; the neighbor restarts gracefully, its routes are kept for its restart time"
	case r == "read-failed" || r == "write-failed":
		return "connection lost (" + r + ")"
	case strings.HasPrefix(r, "notification-received "):
		return "neighbor sent a NOTIFICATION: " + strings.TrimPrefix(r, "notification-received ")
	case strings.HasPrefix(r, "notification-sent "):
		return "speaker sent a NOTIFICATION: " + strings.TrimPrefix(r, "notification-sent ")
	case r == "restart-timer-expired":
		return "the neighbor did not come back within its graceful-restart time; its routes were withdrawn"
	}
	return "session down: " + r
}

func (g *gobgpLogger) attrs(f gobgplog.Fields) []any {
	a := make([]any, 0, 2*len(f))
	for k, v := range f {
		a = append(a, k, v)
	}
	return a
}

func (g *gobgpLogger) Panic(msg string, f gobgplog.Fields) {
	g.log.Error("gobgp: "+msg, g.attrs(f)...)
	panic("gobgp: " + msg)
}

func (g *gobgpLogger) Fatal(msg string, f gobgplog.Fields) {
	g.log.Error("gobgp: "+msg, g.attrs(f)...)
	panic("gobgp: " + msg)
}

func (g *gobgpLogger) Error(msg string, f gobgplog.Fields) {
	g.log.Error("gobgp: "+msg, g.attrs(f)...)
}

func (g *gobgpLogger) Warn(msg string, f gobgplog.Fields) {
	g.record(msg, f)
	g.log.Warn("gobgp: "+msg, g.attrs(f)...)
}

func (g *gobgpLogger) Info(msg string, f gobgplog.Fields) {
	g.record(msg, f)
	lvl := slog.LevelDebug
	if msg == "Peer Up" || msg == "Peer Down" {
		lvl = slog.LevelInfo
	}
	g.logAt(lvl, msg, f)
}

func (g *gobgpLogger) Debug(msg string, f gobgplog.Fields) { g.logAt(slog.LevelDebug, msg, f) }

// logAt builds the attributes only when the line will be written: GoBGP
// logs at debug level per path and per message.
func (g *gobgpLogger) logAt(lvl slog.Level, msg string, f gobgplog.Fields) {
	if g.log.Enabled(context.Background(), lvl) {
		g.log.Log(context.Background(), lvl, "gobgp: "+msg, g.attrs(f)...)
	}
}

func (g *gobgpLogger) SetLevel(gobgplog.LogLevel) {}

// GetLevel tells GoBGP to build debug messages only when slog wants them.
func (g *gobgpLogger) GetLevel() gobgplog.LogLevel {
	if g.log.Enabled(context.Background(), slog.LevelDebug) {
		return gobgplog.DebugLevel
	}
	return gobgplog.InfoLevel
}
