package bgp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gbgp "github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/packet/bmp"
)

// The UPDATEs here are built and serialized by GoBGP's own packet
// library, as GoBGP's BMP client would send them.

func serialize(t *testing.T, m interface {
	Serialize(...*gbgp.MarshallingOption) ([]byte, error)
}) []byte {
	t.Helper()
	b, err := m.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseUpdate(t *testing.T) {
	attrs := []gbgp.PathAttributeInterface{
		gbgp.NewPathAttributeOrigin(0),
		gbgp.NewPathAttributeAsPath([]gbgp.AsPathParamInterface{
			gbgp.NewAs4PathParam(gbgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65001, 4200000000}),
			gbgp.NewAs4PathParam(gbgp.BGP_ASPATH_ATTR_TYPE_SET, []uint32{65003}),
		}),
		gbgp.NewPathAttributeNextHop("192.0.2.1"),
		gbgp.NewPathAttributeMultiExitDisc(50),
		gbgp.NewPathAttributeLocalPref(200),
		gbgp.NewPathAttributeMpUnreachNLRI([]gbgp.AddrPrefixInterface{gbgp.NewIPAddrPrefix(16, "10.9.0.0")}),
	}
	m := gbgp.NewBGPUpdateMessage(
		[]*gbgp.IPAddrPrefix{gbgp.NewIPAddrPrefix(24, "10.1.1.0"), gbgp.NewIPAddrPrefix(0, "0.0.0.0")},
		attrs,
		[]*gbgp.IPAddrPrefix{gbgp.NewIPAddrPrefix(32, "10.2.2.2"), gbgp.NewIPAddrPrefix(19, "10.3.32.0"), gbgp.NewIPAddrPrefix(8, "10.0.0.0")})
	u, ok, err := parseUpdate(serialize(t, m), false)
	if err != nil || !ok || u.attrErr != nil {
		t.Fatalf("parseUpdate: ok %v, err %v, attributes %v", ok, err, u.attrErr)
	}
	prefixes := func(b []byte) []string {
		var out []string
		for len(b) > 0 {
			var p netip.Prefix
			if p, b, err = nextPrefix(b); err != nil {
				t.Fatal(err)
			}
			out = append(out, p.String())
		}
		return out
	}
	if got, want := prefixes(u.withdrawn), []string{"10.1.1.0/24", "0.0.0.0/0"}; !slices.Equal(got, want) {
		t.Errorf("withdrawn %v, want %v", got, want)
	}
	if got, want := prefixes(u.attrs.mpUnreach), []string{"10.9.0.0/16"}; !slices.Equal(got, want) {
		t.Errorf("MP_UNREACH %v, want %v", got, want)
	}
	if got, want := prefixes(u.nlri), []string{"10.2.2.2/32", "10.3.32.0/19", "10.0.0.0/8"}; !slices.Equal(got, want) {
		t.Errorf("NLRI %v, want %v", got, want)
	}
	var rt Route
	u.attrs.route(&rt)
	want := Route{NextHop: netip.MustParseAddr("192.0.2.1"), ASPath: []uint32{65001, 4200000000, 65003}, MED: 50, LocalPref: 200}
	if !routeEqual(rt, want) {
		t.Errorf("attributes %+v, want %+v", rt, want)
	}

	// A 2-octet session: AS_PATH with AS_TRANS, the real path in AS4_PATH
	// (RFC 6793), and IPv4 unicast in MP_REACH_NLRI.
	m = gbgp.NewBGPUpdateMessage(nil, []gbgp.PathAttributeInterface{
		gbgp.NewPathAttributeOrigin(0),
		gbgp.NewPathAttributeAsPath([]gbgp.AsPathParamInterface{gbgp.NewAsPathParam(gbgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint16{65001, 23456})}),
		gbgp.NewPathAttributeAs4Path([]*gbgp.As4PathParam{gbgp.NewAs4PathParam(gbgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{4200000000})}),
		gbgp.NewPathAttributeMpReachNLRI("192.0.2.9", []gbgp.AddrPrefixInterface{gbgp.NewIPAddrPrefix(24, "10.4.4.0")}),
	}, nil)
	u, _, err = parseUpdate(serialize(t, m), true)
	if err != nil || u.attrErr != nil {
		t.Fatalf("parseUpdate (2-octet): %v %v", err, u.attrErr)
	}
	rt = Route{}
	u.attrs.route(&rt)
	if want := []uint32{65001, 4200000000}; !slices.Equal(rt.ASPath, want) || rt.NextHop != netip.MustParseAddr("192.0.2.9") {
		t.Errorf("2-octet session: AS path %v next hop %v, want %v and 192.0.2.9", rt.ASPath, rt.NextHop, want)
	}
	if got := prefixes(u.attrs.mpReach); !slices.Equal(got, []string{"10.4.4.0/24"}) {
		t.Errorf("MP_REACH NLRI %v, want 10.4.4.0/24", got)
	}

	// Truncated attributes are an error of the attributes (the NLRI is
	// then withdrawn), not a crash.
	b := serialize(t, gbgp.NewBGPUpdateMessage(nil, []gbgp.PathAttributeInterface{gbgp.NewPathAttributeMultiExitDisc(1)}, []*gbgp.IPAddrPrefix{gbgp.NewIPAddrPrefix(24, "10.5.5.0")}))
	b[19+2+2+2] = 9 // MED's length
	if u, _, err := parseUpdate(b, false); err == nil && u.attrErr == nil {
		t.Errorf("a MED of the wrong length was read without an error")
	}
}

// vpcOf returns the speaker's server of vpc.
func vpcOf(s *Speaker, vpc string) *vpcServer {
	s.op.Lock()
	defer s.op.Unlock()
	return s.servers[vpc]
}

// TestBMPRefusesWithoutSecret: a local process that connects to the
// speaker's BMP port and names a VPC server without the speaker's secret
// is cut off before anything it sends is applied.
func TestBMPRefusesWithoutSecret(t *testing.T) {
	s, got := startSpeaker(t)
	red := newTestPeer(t, "127.0.0.2", 65001)
	if err := s.SetNeighbors(ctx, []Neighbor{red.neighbor("red-vpn", "red", 100, "10.1.0.254")}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "red-vpn")
	v := vpcOf(s, "red")

	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.bmp.port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ph := bmp.NewBMPPeerHeader(bmp.BMP_PEER_TYPE_GLOBAL, 0, 0, "127.0.0.2", 65001, "127.0.0.2", float64(time.Now().Unix()+5))
	open := gbgp.NewBGPOpenMessage(65001, 9, "127.0.0.2", nil)
	upd := gbgp.NewBGPUpdateMessage(nil, []gbgp.PathAttributeInterface{
		gbgp.NewPathAttributeOrigin(0),
		gbgp.NewPathAttributeAsPath([]gbgp.AsPathParamInterface{gbgp.NewAs4PathParam(gbgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65001})}),
		gbgp.NewPathAttributeNextHop("127.0.0.2"),
	}, []*gbgp.IPAddrPrefix{gbgp.NewIPAddrPrefix(24, "203.0.113.0")})
	var stream []byte
	for _, m := range []*bmp.BMPMessage{
		// The right server id, a wrong secret.
		bmp.NewBMPInitiation([]bmp.BMPInfoTLVInterface{bmp.NewBMPInfoTLVString(bmp.BMP_INIT_TLV_TYPE_SYS_DESCR, fmt.Sprintf("p4mesh %032x %d", 1, v.id))}),
		bmp.NewBMPPeerUpNotification(*ph, "127.0.0.1", 40000, 179, open, open),
		bmp.NewBMPRouteMonitoring(*ph, upd),
	} {
		stream = append(stream, serialize(t, m)...)
	}
	if _, err := c.Write(stream); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("the speaker kept a BMP connection without its secret open (read: %v)", err)
	}
	time.Sleep(500 * time.Millisecond)
	if r, ok := got.inVPC("red")["203.0.113.0/24"]; ok {
		t.Errorf("a route injected over BMP without the secret was learned: %+v", r)
	}
	v.mu.Lock()
	gen := v.gen
	v.mu.Unlock()
	if gen != 1 {
		t.Errorf("the server's BMP connection was replaced (generation %d)", gen)
	}
	// GoBGP's own stream is still the one in use.
	red.announce(t, route{prefix: "192.168.1.0/24"})
	eventually(t, 10*time.Second, "a route of the real stream learned", func() (bool, string) {
		_, ok := got.inVPC("red")["192.168.1.0/24"]
		return ok, fmt.Sprint(got.inVPC("red"))
	})
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestBMPReconnectResends: when the BMP connection breaks, what GoBGP
// had not written is lost; after it connects again and re-sends its
// adj-RIB-in, the speaker has exactly the neighbor's routes: the ones
// withdrawn meanwhile are gone, the ones announced meanwhile are there,
// and nothing else was withdrawn.
func TestBMPReconnectResends(t *testing.T) {
	s, got := startSpeaker(t)
	red := newTestPeer(t, "127.0.0.2", 65001)
	if err := s.SetNeighbors(ctx, []Neighbor{red.neighbor("red-vpn", "red", 100, "10.1.0.254")}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "red-vpn")
	red.announce(t, route{prefix: "192.168.1.0/24"}, route{prefix: "192.168.2.0/24"}, route{prefix: "192.168.3.0/24"})
	eventually(t, 10*time.Second, "3 routes", func() (bool, string) { return len(got.inVPC("red")) == 3, "" })

	v := vpcOf(s, "red")
	v.mu.Lock()
	v.conn.Close() // the speaker's end: the reader stops, GoBGP's writes fail
	v.mu.Unlock()
	red.withdraw(t, "192.168.2.0/24")
	red.announce(t, route{prefix: "192.168.4.0/24", med: 7})
	// GoBGP finds the connection broken only when a write fails: keep it
	// writing until it has connected again.
	want := map[string]bool{"192.168.1.0/24": true, "192.168.3.0/24": true, "192.168.4.0/24": true}
	for i := 0; ; i++ {
		v.mu.Lock()
		gen := v.gen
		v.mu.Unlock()
		if gen > 1 {
			break
		}
		if i == 100 {
			t.Fatal("GoBGP's BMP client did not connect again")
		}
		p := fmt.Sprintf("192.168.%d.0/24", 100+i)
		red.announce(t, route{prefix: p})
		want[p] = true
		time.Sleep(100 * time.Millisecond)
	}
	eventually(t, 10*time.Second, "exactly the router's routes", func() (bool, string) {
		rs := got.inVPC("red")
		if len(rs) != len(want) {
			return false, fmt.Sprint(rs)
		}
		for p := range want {
			if _, ok := rs[p]; !ok {
				return false, fmt.Sprint(rs)
			}
		}
		return rs["192.168.4.0/24"].MED == 7, fmt.Sprint(rs)
	})
	if n := got.withdrawals("192.168.2.0/24"); n != 1 {
		t.Errorf("192.168.2.0/24 withdrawn %d times, want 1", n)
	}
	for _, p := range []string{"192.168.1.0/24", "192.168.3.0/24"} {
		if n := got.withdrawals(p); n != 0 {
			t.Errorf("%s, announced throughout, was withdrawn %d times", p, n)
		}
	}
	if st := state(t, s, "red-vpn"); st.Accepted != uint64(len(want)) {
		t.Errorf("neighbor counts %d accepted, want %d", st.Accepted, len(want))
	}
}

// holdBMP holds back the speaker's BMP stream until the returned func is
// called.
func holdBMP(s *Speaker) (release func()) {
	var mu sync.Mutex
	mu.Lock()
	h := func() { mu.Lock(); mu.Unlock() } //nolint:staticcheck // a gate
	s.testHookBMP.Store(&h)
	var once sync.Once
	return func() { once.Do(func() { s.testHookBMP.Store(nil); mu.Unlock() }) }
}

// TestNoResurrectionAfterSessionDrop: the routes of a session that ends
// are withdrawn, also when its UPDATEs are still in the BMP stream after
// GoBGP has dropped them: the session's Peer Down comes after them.
func TestNoResurrectionAfterSessionDrop(t *testing.T) {
	s, got := startSpeaker(t)
	red := newTestPeer(t, "127.0.0.2", 65001)
	if err := s.SetNeighbors(ctx, []Neighbor{red.neighbor("red-vpn", "red", 100, "10.1.0.254")}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "red-vpn")
	v := vpcOf(s, "red")
	release := holdBMP(s)
	defer release()
	red.announce(t, route{prefix: "192.168.1.0/24"}, route{prefix: "192.168.2.0/24"})
	eventually(t, 10*time.Second, "GoBGP has the routes", func() (bool, string) {
		rs, _ := s.Learned(ctx, "red")
		return len(rs) == 2, fmt.Sprint(rs)
	})
	red.srv.Stop() // NOTIFICATION: GoBGP drops the routes
	eventually(t, 10*time.Second, "the session down in GoBGP", func() (bool, string) {
		var st string
		v.srv.ListPeer(context.Background(), &api.ListPeerRequest{Address: "127.0.0.2"}, func(p *api.Peer) {
			st = p.GetState().GetSessionState().String()
		})
		return st != "" && st != api.PeerState_ESTABLISHED.String(), st
	})
	release()
	eventually(t, 10*time.Second, "the late announcements seen, then withdrawn with the session", func() (bool, string) {
		return got.withdrawals("192.168.1.0/24") == 1 && got.withdrawals("192.168.2.0/24") == 1 && len(got.inVPC("red")) == 0,
			fmt.Sprint(got.inVPC("red"))
	})
	time.Sleep(500 * time.Millisecond)
	if rs := got.inVPC("red"); len(rs) != 0 {
		t.Errorf("routes of the dropped session came back: %v", rs)
	}
}
