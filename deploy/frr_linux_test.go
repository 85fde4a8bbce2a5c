//go:build linux

package deploy

import (
	"context"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/internal/bgplink"
	"github.com/p4mesh/p4mesh/internal/frrtest"
)

// frrAddrs substitutes the two documentation addresses of deploy/frr
// (192.0.2.254, the speaker; 192.0.2.1, the router) with the ones
// frrtest's veth pair has, and nothing else; it fails if either is not
// there.
func frrAddrs(t *testing.T, name, text string, speaker, router netip.Addr) string {
	t.Helper()
	for _, s := range []struct {
		re   *regexp.Regexp
		with netip.Addr
	}{
		{regexp.MustCompile(`\b192\.0\.2\.254\b`), speaker},
		{regexp.MustCompile(`\b192\.0\.2\.1\b`), router},
	} {
		if !s.re.MatchString(text) {
			t.Fatalf("%s: no %s to substitute", name, s.re)
		}
		text = s.re.ReplaceAllString(text, s.with.String())
	}
	return text
}

// TestFRRExampleLive runs deploy/frr/frr.conf in a real FRR bgpd
// (frrtest: its own namespace behind a veth, no zebra) and
// deploy/frr/p4mesh-bgp.yaml in a controller with its BGP speaker
// (internal/bgplink, as p4mesh-controller runs it), only the two
// addresses substituted: the session establishes with the password and
// timers of the files, the on-prem prefix reaches red's RIB, red's and
// blue's subnets reach FRR with the attachment as next hop, and the
// route-maps hold: green's subnet, which the controller sends, is not in
// FRR's table, and a prefix FRR originates outside ONPREM-OUT never
// reaches red.
func TestFRRExampleLive(t *testing.T) {
	frrtest.Need(t)
	conf, snippet := frrFiles(t)
	loadFRRConfig(t, snippet) // the files as shipped load

	r := frrtest.New(t, frrtest.Config{Name: "deploy", AS: 65001})
	r.SetConf(frrAddrs(t, "frr.conf", conf, r.Local, r.Addr))
	c := loadFRRConfig(t, frrAddrs(t, "p4mesh-bgp.yaml", snippet, r.Local, r.Addr))
	r.Start()

	srv, err := controller.NewServer(controller.ServerOptions{Store: controller.NoPersistence{Start: c}, Auth: identity.Auth{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	l := bgplink.New(srv, bgplink.Options{Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)), Interval: 100 * time.Millisecond, ConnectRetry: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	defer func() { cancel(); <-done }()

	wait := func(what string, within time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not within %v: %s\nFRR:\n%s\n%s", within, what, r.Vtysh("show ip bgp summary", "show ip bgp"), r.Logs())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	wait("the session established on both sides", 30*time.Second, func() bool {
		ns := srv.Stats().BGPNeighbors
		return r.Established(r.Local) && len(ns) == 1 && ns[0].State == "established" && ns[0].Attachment == "red-vpn"
	})
	onPrem := netip.MustParsePrefix("192.168.101.0/24")
	wait("FRR's on-prem prefix chosen in red's RIB, from red-vpn", 15*time.Second, func() bool {
		for _, x := range srv.RIB("red") {
			if x.Origin == controller.OriginBGP && x.Prefix == onPrem && x.Chosen && x.Source == "red-vpn" {
				return true
			}
		}
		return false
	})
	wait("red's and blue's subnets in FRR's table, next hop red-vpn's 10.1.255.1", 15*time.Second, func() bool {
		rs, err := r.Routes()
		if err != nil {
			return false
		}
		for _, p := range []string{"10.1.0.0/16", "10.2.0.0/16"} {
			got := rs[netip.MustParsePrefix(p)]
			if len(got) != 1 || got[0].NextHop != netip.MustParseAddr("10.1.255.1") || got[0].Path != "64512" {
				return false
			}
		}
		return true
	})

	// Least privilege, both ways. The controller sends green's subnet
	// (red is peered with green) and FRR's inbound route-map drops it;
	// FRR originates 192.168.200.0/24, which p4mesh's import filter
	// would take, and its outbound route-map keeps it in.
	r.Announce(netip.MustParsePrefix("192.168.200.0/24"))
	time.Sleep(3 * time.Second) // several updates' worth at FRR's and GoBGP's pace
	rs, err := r.Routes()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rs[netip.MustParsePrefix("10.3.0.0/16")]; ok {
		t.Errorf("green's 10.3.0.0/16 is in FRR's table: the inbound route-map let it in")
	}
	if _, ok := rs[netip.MustParsePrefix("192.168.200.0/24")]; !ok {
		t.Errorf("FRR did not originate 192.168.200.0/24, so the check below proves nothing: %v", rs)
	}
	for _, x := range srv.RIB("red") {
		if x.Origin == controller.OriginBGP && x.Prefix != onPrem {
			t.Errorf("red learned %s over BGP; frr.conf announces only %s", x.Prefix, onPrem)
		}
	}
	if ns := srv.Stats().BGPNeighbors; len(ns) != 1 || ns[0].Accepted != 1 {
		t.Errorf("want the session accepting exactly one prefix, got %+v", ns)
	}
	out := r.Vtysh("show ip bgp summary")
	t.Logf("vtysh -c 'show ip bgp summary':\n%s", out)
	if !strings.Contains(out, r.Local.String()) {
		t.Errorf("show ip bgp summary does not list the speaker %s", r.Local)
	}
}

// testWriter sends the Link's log to the test's.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
