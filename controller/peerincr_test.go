package controller

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/identity"
)

// A peer controller's sides are followed incrementally
// (remoteChangedLocked). The test that keeps it honest runs two Servers
// through the same random sequence of peer side updates, endpoint changes
// and connectivity streams opening: one follows the sides as a
// controller does, the other recomputes every table and re-authorises
// every stream after each step. Their tables and the streams they revoke
// must stay identical.

// peerIncrBase is incrBase with a third controller, c3 owning orange, and
// local VPCs peered with both remote controllers' VPCs: red and yellow
// with c2's blue, green with c3's orange.
func peerIncrBase() *Config {
	c := incrBase()
	c.Directory = append(c.Directory, ControllerEntry{Name: "c3", Address: "127.0.0.1:7003", VPCs: []string{"orange"}})
	c.Peerings = append(c.Peerings,
		Peering{VPC: "green", PeerVPC: "orange", ExportPolicy: "all"},
		Peering{VPC: "yellow", PeerVPC: "blue", ExportPolicy: "priv"},
	)
	return c
}

// sider makes random peer sides: the hosts change most, as they do in
// production, but every field a peering reads changes now and then, to
// values that conflict with the local VPCs as well as ones that do not.
type sider struct {
	r     *rand.Rand
	sides map[string]map[string]*p4meshv1.PeerSide // what each controller said last
}

// sideKeys are the sides each remote controller may send: those local
// peerings read, and one no local peering reads (blue/green), whose
// hosts still vouch for the hosts' VPCs.
var sideKeys = map[string][]string{"c2": {"blue/red", "blue/yellow", "blue/green"}, "c3": {"orange/green"}}

// sideHosts are local hosts and others, so that the sides vouch for hosts
// that hold local streams and for ones that do not.
var sideHosts = []string{"h0", "h1", "h2", "h3", "h4", "x1"}

func (g *sider) side(key string) *p4meshv1.PeerSide {
	vpc, peer, _ := strings.Cut(key, "/")
	ps := &p4meshv1.PeerSide{Vpc: vpc, PeerVpc: peer, Configured: g.r.IntN(8) > 0, ExportPolicy: []string{"all", "web"}[g.r.IntN(2)],
		Vni: []uint32{200, 200, 500, 100}[g.r.IntN(4)]} // 100 is red's
	subnet := []string{"10.2.0.0/24", "10.2.0.0/24", "10.5.0.0/24", "10.1.0.0/24"}[g.r.IntN(4)] // 10.1.0.0/24 is red's
	ps.Subnets, ps.ExportedPrefixes = []string{subnet}, []string{subnet}
	if g.r.IntN(4) == 0 {
		ps.ExportedPrefixes = nil
	}
	for _, h := range sideHosts {
		if g.r.IntN(3) == 0 {
			ps.Hosts = append(ps.Hosts, h)
		}
	}
	if g.r.IntN(30) == 0 {
		ps.Vpc = "red" // a side naming a local VPC vouches for hosts in it
	}
	return ps
}

// update is controller ctl's next sides: mostly one side's hosts changed,
// sometimes a side replaced, added or removed, or all of them sent again.
func (g *sider) update(ctl string) map[string]*p4meshv1.PeerSide {
	out := map[string]*p4meshv1.PeerSide{}
	for k, v := range g.sides[ctl] {
		out[k] = v
	}
	keys := sideKeys[ctl]
	key := keys[g.r.IntN(len(keys))]
	switch n := g.r.IntN(10); {
	case n < 5 && out[key] != nil:
		ps := proto.Clone(out[key]).(*p4meshv1.PeerSide)
		h := sideHosts[g.r.IntN(len(sideHosts))]
		if i := slices.Index(ps.Hosts, h); i >= 0 {
			ps.Hosts = slices.Delete(ps.Hosts, i, i+1)
		} else {
			ps.Hosts = append(ps.Hosts, h)
			slices.Sort(ps.Hosts)
		}
		out[key] = ps
	case n < 8:
		out[key] = g.side(key)
	case n < 9:
		delete(out, key)
	}
	if len(out) == 0 {
		// An item store keeps no trace of a controller with no sides, so
		// hearing from one with none, or forgetting one that had none,
		// commits nothing, and the tables cannot move to say "waiting
		// for" it or stop saying so (setRemote, forgetRemote): a known
		// gap of the store, not of the incremental path.
		out[key] = g.side(key)
	}
	g.sides[ctl] = out
	return out
}

// streamLog records what becomes of the connectivity streams opened on a
// Server: by stream number, the error each was revoked with.
type streamLog struct {
	revoked map[int]string
}

// openStream opens stream id on s as subscribe does for authenticated
// host host, and reports whether it was authorised. It starts past the
// TLS handshake, with the identity the handshake would give.
func openStream(s *Server, l *streamLog, id int, host, vpc, policy string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	req := &p4meshv1.WatchRequest{Host: host, Vpc: vpc, ExportPolicy: policy}
	who := caller{id: identity.ID{TrustDomain: identity.DefaultTrustDomain, Kind: identity.Host, Name: host}, authed: true}
	ps, err := s.authorizeLocked(req, who)
	if err != nil || s.services[ps] == nil {
		return false
	}
	cancel := func(err error) { l.revoked[id] = errText(err) }
	s.services[ps].streams[&connStream{req: req, caller: who, cancel: cancel}] = struct{}{}
	return true
}

// recomputeAll is what a Server did after every change of peer sides
// before they were followed incrementally: every table derived again, at
// a new revision, and every open stream authorised again.
func recomputeAll(s *Server) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked(0)
	s.gen++ // revokeLocked checks every stream only after a new configuration
	s.recomputeLocked()
}

func TestPeerSidesMatchRecompute(t *testing.T) {
	steps := 500
	if testing.Short() {
		steps = 200
	}
	seed := rand.Uint64()
	if s := os.Getenv("P4MESH_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (P4MESH_SEED=%d reproduces)", seed, seed)

	base := peerIncrBase()
	items, b := openItems(t, t.TempDir())
	defer b.Close()
	if _, err := items.Startup(base, false); err != nil {
		t.Fatal(err)
	}
	inc := newIncrServer(t, items)
	whole := newIncrServer(t, NoPersistence{Start: base.Clone()})
	r := rand.New(rand.NewPCG(seed, 2))
	g := &changer{r: r, cfg: whole.Config}
	sg := &sider{r: r, sides: map[string]map[string]*p4meshv1.PeerSide{}}
	incLog, wholeLog := &streamLog{revoked: map[int]string{}}, &streamLog{revoked: map[int]string{}}
	ctx := context.Background()
	heard := map[string]bool{} // the controllers whose sides are known
	wasReady := false
	streams, sideUpdates, revoked := 0, 0, 0
	services := base.PublishedServices()

	for step := range steps {
		var what string
		switch n := r.IntN(100); {
		case n < 25:
			ch := g.change()
			what = "change" + describeChange(ch)
			errInc, errWhole := inc.ApplyChange(ch), whole.ApplyChange(ch)
			if errText(errInc) != errText(errWhole) {
				t.Fatalf("step %d: %s\n%v\n%v", step, what, errInc, errWhole)
			}
		case n < 45:
			host := sideHosts[r.IntN(len(sideHosts))]
			ps := services[r.IntN(len(services))]
			what = fmt.Sprintf("stream %d: %s watches %s", streams, host, ps)
			okInc := openStream(inc, incLog, streams, host, ps.VPC, ps.Policy)
			okWhole := openStream(whole, wholeLog, streams, host, ps.VPC, ps.Policy)
			if okInc != okWhole {
				t.Fatalf("step %d: %s: authorised %v by the incremental server, %v by the other", step, what, okInc, okWhole)
			}
			streams++
		case n < 97:
			ctl := []string{"c2", "c2", "c3"}[r.IntN(3)]
			sides := sg.update(ctl)
			what = fmt.Sprintf("%s sends %v", ctl, sides)
			inc.setRemote(ctx, ctl, sides)
			whole.setRemote(ctx, ctl, sides)
			heard[ctl] = true
			sideUpdates++
		default:
			ctl := []string{"c2", "c3"}[r.IntN(2)]
			what = "forget " + ctl
			inc.forgetRemote(ctl)
			whole.forgetRemote(ctl)
			delete(sg.sides, ctl)
			delete(heard, ctl)
		}
		// Readiness is for good once both were heard from at once.
		wasReady = wasReady || heard["c2"] && heard["c3"]
		recomputeAll(whole)

		if d := tablesDiff(inc, whole); d != "" {
			t.Fatalf("step %d: %s\nwatch tables differ (incremental vs recomputed):\n%s", step, what, d)
		}
		if d := referenceDiff(inc); d != "" {
			t.Fatalf("step %d: %s\nwatch tables differ from the reference derivation:\n%s", step, what, d)
		}
		if d := itemsDiffText(incLog.revoked, wholeLog.revoked); d != "" {
			t.Fatalf("step %d: %s\nstreams revoked differ (incremental vs recomputed):\n%s", step, what, d)
		}
		if inc.rev != items.Revision() {
			t.Fatalf("step %d: %s: tables at revision %d, the store at %d", step, what, inc.rev, items.Revision())
		}
		inc.mu.Lock()
		for id, tb := range inc.hosts {
			if tb.Revision() != inc.rev {
				t.Fatalf("step %d: %s: host/%s at revision %d, the server at %d", step, what, id, tb.Revision(), inc.rev)
			}
		}
		inc.mu.Unlock()
		select {
		case <-inc.ready:
			if !wasReady {
				t.Fatalf("step %d: ready before c2 and c3 were heard from", step)
			}
		default:
			if wasReady {
				t.Fatalf("step %d: not ready after c2 and c3 were heard from", step)
			}
		}
	}
	revoked = len(incLog.revoked)
	active := 0
	for _, p := range inc.Peerings() {
		if p.Active {
			active++
		}
	}
	t.Logf("%d peer side updates, %d streams opened, %d revoked; %d endpoints, %d active peerings at the end",
		sideUpdates, streams, revoked, len(inc.Config().Endpoints), active)
	// A generator that never revoked a stream, or never opened enough,
	// would leave revocation untested.
	if revoked < streams/10 || streams < steps/10 {
		t.Errorf("%d streams opened, %d revoked in %d steps: the generator no longer exercises revocation", streams, revoked, steps)
	}
}

// itemsDiffText says how two maps of strings differ, "" if they do not.
func itemsDiffText(a, b map[int]string) string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, fmt.Sprintf("stream %d: only the first revoked it: %s", k, v))
		} else if v != w {
			out = append(out, fmt.Sprintf("stream %d:\n    %s\n    %s", k, v, w))
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			out = append(out, fmt.Sprintf("stream %d: only the second revoked it: %s", k, v))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}
