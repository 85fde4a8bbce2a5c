//go:build linux

package bgp

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/internal/frrtest"
)

// The tests below use a real FRR bgpd (internal/frrtest) as the on-prem
// router, in its own namespace behind a veth; they need root and frr.

const frrAS = 65010

type frrOpts struct {
	gracefulRestart bool
	hold            int // seconds; 0 = 9
	speakerPassword string
	frrPassword     string
}

// startFRR starts a router and a speaker peered with it for VPC red; the
// speaker dials bgpd, which waits (passive).
func startFRR(t *testing.T, name string, o frrOpts) (*frrtest.Router, *Speaker, *learned) {
	t.Helper()
	if o.hold == 0 {
		o.hold = 9
	}
	r := frrtest.New(t, frrtest.Config{Name: name, AS: frrAS, RouterID: netip.MustParseAddr("10.255.1.1"),
		GracefulRestart: o.gracefulRestart, RestartTime: 8})
	r.SetNeighbors(frrtest.Neighbor{Address: r.Local, AS: speakerAS, Passive: true, Password: o.frrPassword,
		HoldTime: o.hold, Keepalive: o.hold / 3})
	r.Start()
	s, got := startSpeaker(t)
	n := Neighbor{Name: name, VPC: "red", VNI: 100, Address: r.Addr, PeerAS: frrAS,
		HoldTime: time.Duration(o.hold) * time.Second, ConnectRetry: time.Second,
		Password: o.speakerPassword, GracefulRestart: o.gracefulRestart, NextHop: netip.MustParseAddr("10.1.0.254")}
	if err := s.SetNeighbors(ctx, []Neighbor{n}); err != nil {
		t.Fatal(err)
	}
	return r, s, got
}

func waitFRR(t *testing.T, r *frrtest.Router, s *Speaker, name string) {
	t.Helper()
	eventually(t, 30*time.Second, "session with FRR established on both sides", func() (bool, string) {
		st := state(t, s, name)
		return st.State == "established" && r.Established(r.Local), fmt.Sprintf("%+v", st)
	})
}

func TestFRRLearnAndWithdraw(t *testing.T) {
	r, s, got := startFRR(t, "learn", frrOpts{})
	waitFRR(t, r, s, "learn")
	r.Announce(netip.MustParsePrefix("192.168.50.0/24"), "metric 50", "as-path prepend 65100 65101")
	r.Announce(netip.MustParsePrefix("192.168.51.0/24"))
	eventually(t, 15*time.Second, "FRR's two routes learned with their attributes", func() (bool, string) {
		rs := got.inVPC("red")
		want := Route{VPC: "red", Neighbor: "learn", Prefix: netip.MustParsePrefix("192.168.50.0/24"),
			NextHop: r.Addr, ASPath: []uint32{frrAS, 65100, 65101}, MED: 50}
		return len(rs) == 2 && routeEqual(rs["192.168.50.0/24"], want), fmt.Sprint(rs)
	})
	r.Withdraw(netip.MustParsePrefix("192.168.50.0/24"))
	eventually(t, 15*time.Second, "withdrawn route gone", func() (bool, string) {
		rs := got.inVPC("red")
		_, ok := rs["192.168.51.0/24"]
		return len(rs) == 1 && ok, fmt.Sprint(rs)
	})

	// bgpd stopping sends a NOTIFICATION: the routes go at once, not
	// after the 9 s hold time.
	r.Stop()
	eventually(t, 3*time.Second, "routes gone on FRR's NOTIFICATION", func() (bool, string) {
		st := state(t, s, "learn")
		return len(got.inVPC("red")) == 0 && strings.Contains(st.LastError, "NOTIFICATION"), fmt.Sprintf("%+v", st)
	})
}

func TestFRRSeesAdvertised(t *testing.T) {
	r, s, _ := startFRR(t, "adv", frrOpts{})
	if err := s.Advertise(ctx, "red", prefixes("10.1.0.0/16", "10.9.0.0/24")); err != nil {
		t.Fatal(err)
	}
	if err := s.Advertise(ctx, "blue", prefixes("10.2.0.0/16")); err != nil {
		t.Fatal(err)
	}
	waitFRR(t, r, s, "adv")
	eventually(t, 15*time.Second, "show ip bgp json: red's prefixes, next hop the attachment, path our AS", func() (bool, string) {
		rs, err := r.Routes()
		if err != nil {
			return false, err.Error()
		}
		ok := len(rs) == 2
		for _, p := range []string{"10.1.0.0/16", "10.9.0.0/24"} {
			paths := rs[netip.MustParsePrefix(p)]
			ok = ok && len(paths) == 1 && paths[0].NextHop == netip.MustParseAddr("10.1.0.254") && paths[0].Path == fmt.Sprint(speakerAS)
		}
		return ok, fmt.Sprintf("%+v", rs)
	})
	if err := s.Advertise(ctx, "red", prefixes("10.9.0.0/24")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "10.1.0.0/16 withdrawn from FRR", func() (bool, string) {
		rs, err := r.Routes()
		_, ok := rs[netip.MustParsePrefix("10.9.0.0/24")]
		return err == nil && len(rs) == 1 && ok, fmt.Sprintf("%+v %v", rs, err)
	})
}

func TestFRRPassword(t *testing.T) {
	r, s, _ := startFRR(t, "md5", frrOpts{speakerPassword: "s3cret-Key", frrPassword: "s3cret-Key"})
	waitFRR(t, r, s, "md5")

	bad, bs, _ := startFRR(t, "md5bad", frrOpts{speakerPassword: "wrong", frrPassword: "s3cret-Key"})
	time.Sleep(8 * time.Second) // several connect attempts
	if st := state(t, bs, "md5bad"); st.State == "established" || bad.Established(bad.Local) {
		t.Errorf("session established with mismatching TCP MD5 passwords: %+v", st)
	}
}

func TestFRRGracefulRestart(t *testing.T) {
	r, s, got := startFRR(t, "gr", frrOpts{gracefulRestart: true})
	waitFRR(t, r, s, "gr")
	keep, drop := netip.MustParsePrefix("192.168.60.0/24"), netip.MustParsePrefix("192.168.61.0/24")
	r.Announce(keep)
	r.Announce(drop)
	eventually(t, 15*time.Second, "both routes learned", func() (bool, string) { return len(got.inVPC("red")) == 2, "" })

	r.Kill()
	eventually(t, 5*time.Second, "the session down, as a graceful restart", func() (bool, string) {
		st := state(t, s, "gr")
		return st.State != "established" && strings.Contains(st.LastError, "restarts gracefully"), fmt.Sprintf("%+v", st)
	})
	time.Sleep(3 * time.Second)
	if rs := got.inVPC("red"); len(rs) != 2 {
		t.Fatalf("3s into an 8s restart time, routes are %v; want both kept", rs)
	}
	// FRR comes back without one of them: that one goes after End-of-RIB,
	// the other is fresh again.
	r.Withdraw(drop)
	r.Start()
	eventually(t, 15*time.Second, "after the restart: the re-announced route kept, the other gone", func() (bool, string) {
		rs := got.inVPC("red")
		_, ok := rs[keep.String()]
		return len(rs) == 1 && ok, fmt.Sprint(rs)
	})
	if n := got.withdrawals(keep.String()); n != 0 {
		t.Errorf("%v was withdrawn %d times during a graceful restart that re-announced it", keep, n)
	}

	// Killed and not back within the restart time: everything goes.
	r.Kill()
	killed := time.Now()
	eventually(t, 20*time.Second, "routes gone once the 8s restart time is over", func() (bool, string) {
		return len(got.inVPC("red")) == 0, fmt.Sprint(got.inVPC("red"))
	})
	if el := time.Since(killed); el < 7*time.Second {
		t.Errorf("stale routes dropped %v after the kill, before the 8s restart time", el)
	}
}

func TestFRRHoldTimerExpiry(t *testing.T) {
	r, s, got := startFRR(t, "hold", frrOpts{hold: 6})
	waitFRR(t, r, s, "hold")
	r.Announce(netip.MustParsePrefix("192.168.70.0/24"))
	eventually(t, 15*time.Second, "route learned", func() (bool, string) { return len(got.inVPC("red")) == 1, "" })

	r.SetLink(false) // silence: no FIN, no NOTIFICATION, nothing
	down := time.Now()
	time.Sleep(2 * time.Second)
	if len(got.inVPC("red")) != 1 {
		t.Fatalf("route removed 2s after the link went down, before the 6s hold time")
	}
	eventually(t, 15*time.Second, "route removed after the hold time, with the reason", func() (bool, string) {
		st := state(t, s, "hold")
		return len(got.inVPC("red")) == 0 && st.State != "established", fmt.Sprintf("%+v", st)
	})
	if el := time.Since(down); el < 5*time.Second {
		t.Errorf("route removed %v after the link went down; hold time is 6s", el)
	}
	if st := state(t, s, "hold"); !strings.Contains(st.LastError, "hold timer expired") {
		t.Errorf("LastError = %q, want it to name the hold timer", st.LastError)
	}
}

// TestFRRGracefulRestartEORBeforeRoutes: after a graceful restart, FRR's
// End-of-RIB (from GoBGP's watch) can overtake the routes it re-announced
// (in the BMP stream, held back here): only the route FRR did not
// announce again is withdrawn, the others never are.
func TestFRRGracefulRestartEORBeforeRoutes(t *testing.T) {
	r, s, got := startFRR(t, "grlag", frrOpts{gracefulRestart: true})
	waitFRR(t, r, s, "grlag")
	keep1, keep2, drop := netip.MustParsePrefix("192.168.62.0/24"), netip.MustParsePrefix("192.168.63.0/24"), netip.MustParsePrefix("192.168.64.0/24")
	for _, p := range []netip.Prefix{keep1, keep2, drop} {
		r.Announce(p)
	}
	eventually(t, 15*time.Second, "3 routes learned", func() (bool, string) { return len(got.inVPC("red")) == 3, "" })
	v := vpcOf(s, "red")
	staleCount := func() int {
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.nbrs[r.Addr].stale
	}
	r.Kill()
	eventually(t, 5*time.Second, "the routes kept stale (Peer Down through BMP)", func() (bool, string) {
		return staleCount() == 3, fmt.Sprint(staleCount())
	})
	release := holdBMP(s)
	defer release()
	r.Withdraw(drop)
	r.Start()
	eventually(t, 15*time.Second, "End-of-RIB: the route not announced again withdrawn", func() (bool, string) {
		_, ok := got.inVPC("red")[drop.String()]
		return !ok, fmt.Sprint(got.inVPC("red"))
	})
	// The re-announced routes are still held back in the BMP stream.
	for _, p := range []netip.Prefix{keep1, keep2} {
		if n := got.withdrawals(p.String()); n != 0 {
			t.Errorf("%v, re-announced, was withdrawn %d times at End-of-RIB", p, n)
		}
	}
	release()
	eventually(t, 10*time.Second, "the re-announced routes fresh again", func() (bool, string) {
		rs := got.inVPC("red")
		return len(rs) == 2 && staleCount() == 0, fmt.Sprint(rs, staleCount())
	})
	for _, p := range []netip.Prefix{keep1, keep2} {
		if n := got.withdrawals(p.String()); n != 0 {
			t.Errorf("%v, re-announced, was withdrawn %d times", p, n)
		}
	}
}
