package server

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ytypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/controller"
	p4gnmi "github.com/p4mesh/p4mesh/gnmi"
	"github.com/p4mesh/p4mesh/gnmi/oc"
	"github.com/p4mesh/p4mesh/identity"
)

// ribTestServer is ribBenchConfig with a static route competing with BGP
// in red, and red and blue peered both ways (red exporting its custom
// routes, so blue's RIB imports them), served over gRPC on loopback.
func ribTestServer(t *testing.T) (*Server, *controller.Server, gnmi.GNMIClient) {
	t.Helper()
	cfg := ribBenchConfig()
	cfg.ExportPolicies = []controller.ExportPolicy{{Name: "all"}}
	cfg.Peerings = []controller.Peering{
		{VPC: "red", PeerVPC: "blue", ExportPolicy: "all", ExportCustomRoutes: true},
		{VPC: "blue", PeerVPC: "red", ExportPolicy: "all"},
	}
	cfg.Routes = []controller.Route{
		{VPC: "red", Prefix: ribBenchPrefix(1), NextHop: "red-vm", Priority: 10},
		{VPC: "red", Prefix: ribBenchPrefix(2), NextHop: "", Priority: 5},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctl, err := controller.NewServer(controller.ServerOptions{Auth: identity.Auth{Insecure: true}, Store: controller.NoPersistence{Start: cfg}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Auth: identity.Auth{Insecure: true}, Controller: ctl, Poll: 20 * time.Millisecond, StateInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return srv, ctl, gnmi.NewGNMIClient(conn)
}

// randomRouteChange learns or withdraws routes of a few prefixes of red
// from its two attachments: equal attributes (ECMP), different MEDs or
// AS paths, prefixes inside red's subnet (refused) and one a static
// route holds.
func randomRouteChange(t *testing.T, r *rand.Rand, ctl *controller.Server) {
	t.Helper()
	var adds []controller.LearnedRoute
	var wds []controller.LearnedRouteKey
	for range 1 + r.IntN(4) {
		p := ribBenchPrefix(r.IntN(8))
		if r.IntN(6) == 0 {
			p = netip.MustParsePrefix(fmt.Sprintf("10.1.%d.0/24", r.IntN(3)))
		}
		nb := []string{"red-vpn1", "red-vpn2"}[r.IntN(2)]
		if r.IntN(3) == 0 {
			wds = append(wds, controller.LearnedRouteKey{Neighbor: nb, Prefix: p})
			continue
		}
		adds = append(adds, controller.LearnedRoute{Neighbor: nb, Prefix: p, ASPath: []uint32{65001, uint32(65100 + r.IntN(2))}[:1+r.IntN(2)],
			MED: uint32(r.IntN(2)), LocalPref: 100, NextHop: netip.AddrFrom4([4]byte{172, 31, 0, byte(1 + r.IntN(2))})})
	}
	if err := ctl.UpdateLearnedRoutes("red", adds, wds); err != nil {
		t.Fatal(err)
	}
}

// wholeGet is what Get answered when every RIB was in the one tree built
// whole: the updates of every node the path matches in it, by path, or
// the error's code. It is the reference the answers built from only what
// a path asks for are compared with.
func wholeGet(t *testing.T, srv *Server, ctl *controller.Server, p *gnmi.Path, enc gnmi.Encoding) (map[string]string, codes.Code) {
	t.Helper()
	d, err := p4gnmi.FromConfig(ctl.Config())
	if err != nil {
		t.Fatal(err)
	}
	p4gnmi.WithState(d, ctl.Peerings(), ctl.Stats())
	d.PopulateDefaults()
	out := map[string]string{}
	for _, x := range srv.expand(p) {
		nodes, err := ytypes.GetNode(srv.schema.RootSchema(), d, x, &ytypes.GetHandleWildcards{}, &ytypes.GetPartialKeyMatch{})
		if err != nil && status.Code(err) != codes.NotFound {
			return nil, codes.InvalidArgument
		}
		for _, n := range nodes {
			if isNil(n.Data) {
				continue
			}
			v, err := encodeValue(n.Data, n.Schema, enc)
			if err != nil {
				t.Fatal(err)
			}
			if j := string(jsonBytes(v)); j != "{}" {
				out[pathString(n.Path)] = j
			}
		}
	}
	if len(out) == 0 {
		if err := srv.missing(d, p); err != nil {
			return nil, status.Code(err)
		}
	}
	return out, codes.OK
}

// getUpdates is the server's answer to a Get of p, as wholeGet gives it.
func getUpdates(t *testing.T, c gnmi.GNMIClient, p *gnmi.Path, enc gnmi.Encoding) (map[string]string, codes.Code) {
	t.Helper()
	resp, err := c.Get(t.Context(), &gnmi.GetRequest{Path: []*gnmi.Path{p}, Encoding: enc})
	if err != nil {
		return nil, status.Code(err)
	}
	out := map[string]string{}
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			k := pathString(u.GetPath())
			if _, dup := out[k]; dup {
				t.Fatalf("Get %s: %s answered twice", pathString(p), k)
			}
			out[k] = string(jsonBytes(u.GetVal()))
		}
	}
	return out, codes.OK
}

// ribPaths are the paths the RIB tests read: every prefix and candidate
// of red's and blue's RIBs, their leaves, whole RIBs, and what lies
// above them.
func ribPaths(t *testing.T, ctl *controller.Server) []string {
	out := []string{
		"/p4mesh/vpcs/vpc[name=red]/state/routes",
		"/p4mesh/vpcs/vpc[name=*]/state/routes",
		"/p4mesh/vpcs/vpc[name=blue]/state/routes/route",
		"/p4mesh/vpcs/vpc[name=red]/state/routes/route[prefix=*]/chosen",
		"/p4mesh/vpcs/vpc[name=red]/state/routes/route[origin=bgp]/reason",
		"/p4mesh/vpcs/vpc[name=red]/state/*",
		"/p4mesh/vpcs/vpc[name=red]/state",
		"/p4mesh/vpcs/vpc[name=red]",
		"/p4mesh/vpcs/.../routes",
		"/p4mesh/vpcs",
		"/",
		"/p4mesh/vpcs/vpc[name=red]/state/routes/route[prefix=11.0.0.1/24]",
		"/p4mesh/vpcs/vpc[name=red]/state/routes/route[prefix=99.0.0.0/24][origin=bgp][source=red-vpn1]",
		"/p4mesh/vpcs/vpc[name=nosuch]/state/routes",
		"/p4mesh/vpcs/vpc[name=nosuch]/state/routes/route[prefix=11.0.0.0/24]",
	}
	for _, vpc := range []string{"red", "blue"} {
		for _, c := range ctl.RIB(vpc) {
			src := c.Source
			if src == "" {
				src = "-"
			}
			entry := fmt.Sprintf("/p4mesh/vpcs/vpc[name=%s]/state/routes/route[prefix=%s]", vpc, c.Prefix)
			full := fmt.Sprintf("%s[origin=%s][source=%s]", entry, c.Origin, src)
			out = append(out, entry, full, full+"/chosen", full+"/reason", full+"/next-hops")
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestRIBGetMatchesWhole: a Get of any path reaching into the RIBs (one
// prefix, one candidate's leaves, a whole RIB read in parts of three
// prefixes, what lies above) answers what the tree built whole answers,
// in both encodings, as routes are learned and withdrawn at random.
func TestRIBGetMatchesWhole(t *testing.T) {
	defer func(n int) { ribChunk = n }(ribChunk)
	ribChunk = 3
	srv, ctl, c := ribTestServer(t)
	r := rand.New(rand.NewPCG(10, 14))
	for step := range 12 {
		randomRouteChange(t, r, ctl)
		if len(ctl.RIB("red")) < 2*ribChunk && step > 2 {
			continue
		}
		for _, ps := range ribPaths(t, ctl) {
			p := path(t, ps)
			for _, enc := range []gnmi.Encoding{gnmi.Encoding_JSON_IETF, gnmi.Encoding_JSON} {
				want, wcode := wholeGet(t, srv, ctl, p, enc)
				got, gcode := getUpdates(t, c, p, enc)
				if gcode != wcode {
					t.Fatalf("step %d: Get %s (%s): code %s, want %s", step, ps, enc, gcode, wcode)
				}
				for k, w := range want {
					if !sameJSON(got[k], w) {
						t.Errorf("step %d: Get %s (%s): %s =\n%s\nwant\n%s", step, ps, enc, k, got[k], w)
					}
				}
				for k := range got {
					if _, ok := want[k]; !ok {
						t.Errorf("step %d: Get %s (%s): extra %s", step, ps, enc, k)
					}
				}
			}
		}
		if t.Failed() {
			return
		}
	}
}

// TestRIBSubscribeOnePrefix: an ON_CHANGE subscription to one prefix's
// candidates holds, after each random change of routes, exactly that
// prefix's leaves of the tree built whole, and hears nothing of a
// change that does not touch the prefix.
func TestRIBSubscribeOnePrefix(t *testing.T) {
	srv, ctl, c := ribTestServer(t)
	target := ribBenchPrefix(3)
	sub := fmt.Sprintf("/p4mesh/vpcs/vpc[name=red]/state/routes/route[prefix=%s]", target)
	st := stream(t, c, &gnmi.SubscriptionList{Encoding: gnmi.Encoding_JSON_IETF, Subscription: []*gnmi.Subscription{
		{Path: path(t, sub), Mode: gnmi.SubscriptionMode_ON_CHANGE}}})
	held := map[string]string{}
	apply := func(resp *gnmi.SubscribeResponse) {
		n := resp.GetUpdate()
		for _, u := range n.GetUpdate() {
			held[pathString(u.GetPath())] = string(u.GetVal().GetJsonIetfVal())
		}
		for _, d := range n.GetDelete() {
			delete(held, pathString(d))
		}
	}
	want := func() map[string]string {
		out := map[string]string{}
		for _, l := range wholeLeaves0(t, srv, ctl) {
			if matches(path(t, sub), l.path) {
				out[pathString(l.path)] = string(l.ietf.GetJsonIetfVal())
			}
		}
		return out
	}
	// The dump, then sync.
	for resp := st.next(t, 5*time.Second); !resp.GetSyncResponse(); resp = st.next(t, 5*time.Second) {
		apply(resp)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for step := range 30 {
		before := slices.ContainsFunc(ctl.RIB("red"), func(c controller.Candidate) bool { return c.Prefix == target })
		w0 := want()
		randomRouteChange(t, r, ctl)
		w := want()
		if !mapsEqual(w0, w) || before {
			// Whatever changed, the subscriber's copy must come to w.
			deadline := time.Now().Add(5 * time.Second)
			for !mapsEqual(held, w) && time.Now().Before(deadline) {
				if resp := st.poll(100 * time.Millisecond); resp != nil {
					apply(resp)
				}
			}
		}
		if !mapsEqual(held, w) {
			t.Fatalf("step %d: the subscriber holds\n%v\nwant\n%v", step, held, w)
		}
		if mapsEqual(w0, w) {
			// Nothing of the prefix changed: nothing comes.
			if resp := st.poll(50 * time.Millisecond); resp != nil && len(resp.GetUpdate().GetUpdate())+len(resp.GetUpdate().GetDelete()) > 0 {
				t.Fatalf("step %d: an update though the prefix did not change: %v", step, resp)
			}
		}
	}
}

// sameJSON: a and b are the same JSON value. JSON (not JSON_IETF) writes
// a list as an object keyed by its entries' keys, whose members a whole
// RIB read in parts lists in the RIB's order, not sorted as text.
func sameJSON(a, b string) bool {
	if a == b {
		return true
	}
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// wholeLeaves0 is every leaf of the tree built whole, the RIBs included.
func wholeLeaves0(t *testing.T, srv *Server, ctl *controller.Server) map[string]*leaf {
	t.Helper()
	d, err := p4gnmi.FromConfig(ctl.Config())
	if err != nil {
		t.Fatal(err)
	}
	p4gnmi.WithState(d, ctl.Peerings(), ctl.Stats())
	d.PopulateDefaults()
	m, err := srv.leaves(d)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRIBChangeBuildsNoTree: learning and withdrawing routes changes
// neither the tree Get shares nor the generation subscriptions share: a
// subscriber to anything but a RIB pays nothing for a route change.
func TestRIBChangeBuildsNoTree(t *testing.T) {
	srv, ctl, _ := ribTestServer(t)
	d0, err := srv.device()
	if err != nil {
		t.Fatal(err)
	}
	g0, err := srv.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 5 {
		rev := ctl.RIBRevision()
		randomRouteChange(t, r, ctl)
		if ctl.RIBRevision() == rev {
			continue
		}
		d, err := srv.device()
		if err != nil {
			t.Fatal(err)
		}
		g, err := srv.snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if d != d0 || g != g0 {
			t.Fatalf("a route change rebuilt the shared tree (%v) or made a new generation (%v)", d != d0, g != g0)
		}
	}
	// The tree has no RIB in it to have been spared.
	var routes *oc.P4Mesh_P4Mesh_Vpcs_Vpc_State_Routes
	if v := d0.GetP4Mesh().GetVpcs().GetVpc("red"); v != nil {
		routes = v.GetState().GetRoutes()
	}
	if routes != nil && routes.Route.Len() > 0 {
		t.Fatalf("the shared tree holds red's RIB")
	}
}

// next is the subscription's next response, within.
func (s *streamed) next(t *testing.T, within time.Duration) *gnmi.SubscribeResponse {
	t.Helper()
	select {
	case r := <-s.got:
		return r
	case err := <-s.err:
		t.Fatalf("the subscription ended: %v", err)
	case <-time.After(within):
		t.Fatalf("nothing from the subscription in %s", within)
	}
	return nil
}

// poll is the subscription's next response if one comes within, else nil.
func (s *streamed) poll(within time.Duration) *gnmi.SubscribeResponse {
	select {
	case r := <-s.got:
		return r
	case <-time.After(within):
		return nil
	}
}
