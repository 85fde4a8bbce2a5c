package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/internal/daemon"
	"github.com/p4mesh/p4mesh/mtls"
	"github.com/p4mesh/p4mesh/pki"
)

// These tests run the controllers with mutual TLS, as deployed: each has a
// controller certificate of the lab CA, follows its peers with it, and
// every call is made with a certificate (or, for the attacks, without one
// or with the wrong one).

// testPKI is a lab CA in a directory.
type testPKI struct {
	t   *testing.T
	dir string
	ca  *pki.CA
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, err := pki.NewCA(identity.DefaultTrustDomain, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	return &testPKI{t: t, dir: dir, ca: ca}
}

func (p *testPKI) source(kind identity.Kind, name string) *mtls.Source {
	p.t.Helper()
	id, err := identity.New(p.ca.TrustDomain, kind, name)
	if err != nil {
		p.t.Fatal(err)
	}
	leaf, err := p.ca.Issue(id, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		p.t.Fatal(err)
	}
	cert, key, err := pki.SaveLeaf(p.dir, pki.FileBase(id), leaf)
	if err != nil {
		p.t.Fatal(err)
	}
	src, err := mtls.Load(mtls.Files{Cert: cert, Key: key, CA: filepath.Join(p.dir, pki.CACertFile)}, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	return src
}

// dialAs connects with kind/name's certificate, accepting only a
// controller at the far end.
func (p *testPKI) dialAs(addr string, kind identity.Kind, name string) *grpc.ClientConn {
	p.t.Helper()
	return dialCreds(p.t, addr, mtls.ClientCredentials(p.source(kind, name), mtls.ExpectKind("", identity.Controller)))
}

func dialCreds(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// secureTwoControllers starts c1 (red, green) and c2 (blue, peered back)
// with mTLS. c1 also has host h4, whose only endpoint is in green: a host
// of the deployment that is in no VPC peered with blue.
func secureTwoControllers(t *testing.T, p *testPKI) (c1, c2 string) {
	t.Helper()
	l1, l2 := listen(t), listen(t)
	a1, a2 := l1.Addr().String(), l2.Addr().String()
	cfg1 := c1Config(t, a1, a2)
	h4 := *hostOf(cfg1, "h3")
	h4.ID, h4.UnderlayIP, h4.MAC = "h4", ip("192.168.0.4"), mustMAC("02:aa:00:00:00:04")
	cfg1.Hosts = append(cfg1.Hosts, h4)
	cfg1.Endpoints = append(cfg1.Endpoints, Endpoint{ID: "green-vm4", VPC: "green", Kind: KindVM, IP: ip("10.3.0.40"), MAC: mustMAC("02:03:00:00:00:28"), Host: "h4", Port: 2})
	serveSecure(t, p, "c1", l1, cfg1)
	serveSecure(t, p, "c2", l2, c2Config(t, a1, a2, true))
	return a1, a2
}

func serveSecure(t *testing.T, p *testPKI, name string, lis net.Listener, cfg *Config) {
	t.Helper()
	store, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Startup(cfg, true); err != nil {
		t.Fatal(err)
	}
	src := p.source(identity.Controller, name)
	logs := &syncBuffer{}
	srv, err := NewServer(ServerOptions{
		Store: store, PeerGrace: 300 * time.Millisecond,
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(mtls.ClientCredentials(src, mtls.ExpectKind("", identity.Controller)))},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The daemons' limits, small enough to reach in a test.
	gs := grpc.NewServer(append(daemon.ServerOptions(daemon.Limits{StreamsPerPeer: testStreamsPerPeer}), grpc.Creds(mtls.ServerCredentials(src)))...)
	srv.Register(gs)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); gs.Serve(lis) }()
	go func() { defer wg.Done(); srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		gs.Stop()
		wg.Wait()
		if t.Failed() {
			t.Logf("%s log:\n%s", name, logs.String())
		}
	})
}

// firstEvent opens a stream and returns its first event or the error the
// stream ended with.
func firstEvent(t *testing.T, conn *grpc.ClientConn, open openFunc, req *p4meshv1.WatchRequest) (*p4meshv1.Event, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	st, err := open(ctx, conn, req)
	if err != nil {
		return nil, err
	}
	return st.Recv()
}

func peerWatch(ctx context.Context, conn *grpc.ClientConn, req *p4meshv1.WatchRequest) (grpc.ServerStreamingClient[p4meshv1.Event], error) {
	return p4meshv1.NewPeersClient(conn).WatchPeerSides(ctx, req)
}

func TestMTLSAttacksRefused(t *testing.T) {
	p := newTestPKI(t)
	a1, a2 := secureTwoControllers(t, p)
	other := newTestPKI(t) // another CA, same trust domain: an impostor's

	cases := []struct {
		name string
		conn *grpc.ClientConn
		open openFunc
		req  *p4meshv1.WatchRequest
		code codes.Code
		msg  string
	}{
		{"plaintext client", dialCreds(t, a1, insecure.NewCredentials()), hostWatch, &p4meshv1.WatchRequest{Host: "h1"}, codes.Unavailable, ""},
		{"no client certificate", dialCreds(t, a1, noCertCreds(t, p)), hostWatch, &p4meshv1.WatchRequest{Host: "h1"}, codes.Unauthenticated, "no client certificate"},
		{"certificate of another CA", dialCreds(t, a1, trustingBoth(t, other, p, identity.Host, "h1")), hostWatch, &p4meshv1.WatchRequest{Host: "h1"}, codes.Unauthenticated, "unknown authority"},
		{"host asks another host's programming", p.dialAs(a1, identity.Host, "h1"), hostWatch, &p4meshv1.WatchRequest{Host: "h2"}, codes.PermissionDenied, "only for host h1"},
		{"host not in the configuration", p.dialAs(a1, identity.Host, "attacker"), hostWatch, &p4meshv1.WatchRequest{}, codes.NotFound, `"attacker" is not in`},
		{"operator asks host programming", p.dialAs(a1, identity.Operator, "alice"), hostWatch, &p4meshv1.WatchRequest{Host: "h1"}, codes.PermissionDenied, "for [host]"},
		{"host asks peer sides", p.dialAs(a1, identity.Host, "h1"), peerWatch, &p4meshv1.WatchRequest{Controller: "c2"}, codes.PermissionDenied, "for [controller]"},
		{"controller outside the directory asks peer sides", p.dialAs(a1, identity.Controller, "c9"), peerWatch, &p4meshv1.WatchRequest{Controller: "c2"}, codes.PermissionDenied, "not in the directory"},
		// h4's only endpoint is green: it claims to be in red, peered
		// with blue, as the unauthenticated attack did.
		{"host claims a peered VPC it has no endpoint in", p.dialAs(a2, identity.Host, "h4"), destWatch, &p4meshv1.WatchRequest{Host: "h4", Vpc: "blue", ExportPolicy: "blue-web", PeerVpc: "red"}, codes.PermissionDenied, "may not watch blue"},
		{"host asks a VPC's own view without an endpoint in it", p.dialAs(a1, identity.Host, "h1"), destWatch, &p4meshv1.WatchRequest{Vpc: "green"}, codes.PermissionDenied, "no endpoint in VPC green"},
		{"host asks another host's view of its VPC", p.dialAs(a1, identity.Host, "h4"), destWatch, &p4meshv1.WatchRequest{Host: "h1", Vpc: "red"}, codes.PermissionDenied, "no endpoint in VPC red"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev, err := firstEvent(t, c.conn, c.open, c.req)
			if err == nil {
				t.Fatalf("served %v; want %v", ev, c.code)
			}
			if status.Code(err) != c.code || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v; want %v mentioning %q", err, c.code, c.msg)
			}
		})
	}
	t.Run("report for another host", func(t *testing.T) {
		_, err := p4meshv1.NewHostProgrammingClient(p.dialAs(a1, identity.Host, "h1")).Report(t.Context(), &p4meshv1.HostReport{Host: "h2", Entries: map[string]uint64{"x": 999999}})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("got %v; want PermissionDenied", err)
		}
	})
}

// TestMTLSLegitimateCallers are the same channels used as meant: each
// identity gets what is its own, and a peer VPC's host is recognised by
// what its owner vouches for, with no claim in the request.
func TestMTLSLegitimateCallers(t *testing.T) {
	p := newTestPKI(t)
	a1, a2 := secureTwoControllers(t, p)

	// h1's programming, with and without naming the host.
	for _, req := range []*p4meshv1.WatchRequest{{}, {Host: "h1"}} {
		e := watchRaw(t, p.dialAs(a1, identity.Host, "h1"), hostWatch, req)
		items, _, _ := e.snapshot(t)
		if items["host"].GetHost().GetId() != "h1" {
			t.Fatalf("host watch %v: got %v", req, items)
		}
	}
	// h3 holds blue-out (c2's): c2 vouches for it in its peer side, so
	// c1 serves it red under "all" though the request claims nothing.
	// c2 learns the peering after a moment: wait for it.
	deadline := time.Now().Add(waitTimeout)
	for {
		ev, err := firstEvent(t, p.dialAs(a1, identity.Host, "h3"), destWatch, &p4meshv1.WatchRequest{Vpc: "red", ExportPolicy: "all"})
		if err == nil {
			if ev.GetDestination() == nil && ev.GetType() != p4meshv1.Event_SYNCED {
				t.Fatalf("first event %v", ev)
			}
			break
		}
		if status.Code(err) != codes.PermissionDenied || time.Now().After(deadline) {
			t.Fatalf("h3 watching red under all: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// And c1's h1 (red) gets blue under blue-web from c2.
	if _, err := firstEvent(t, p.dialAs(a2, identity.Host, "h1"), destWatch, &p4meshv1.WatchRequest{Vpc: "blue", ExportPolicy: "blue-web"}); err != nil {
		t.Fatalf("h1 watching blue under blue-web: %v", err)
	}
	if _, err := p4meshv1.NewHostProgrammingClient(p.dialAs(a1, identity.Host, "h1")).Report(t.Context(), &p4meshv1.HostReport{Entries: map[string]uint64{"x": 3}}); err != nil {
		t.Fatalf("h1 reporting for itself: %v", err)
	}
}

// noCertCreds trust the lab's CA and show no certificate.
func noCertCreds(t *testing.T, p *testPKI) credentials.TransportCredentials {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Cert)
	return credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
}

// trustingBoth shows a certificate of issuer as kind/name, trusting both
// CAs, so that the handshake completes and the server's verdict is what
// is tested.
func trustingBoth(t *testing.T, issuer, server *testPKI, kind identity.Kind, name string) credentials.TransportCredentials {
	t.Helper()
	src := issuer.source(kind, name)
	a, _ := os.ReadFile(filepath.Join(issuer.dir, pki.CACertFile))
	b, _ := os.ReadFile(filepath.Join(server.dir, pki.CACertFile))
	if err := os.WriteFile(filepath.Join(issuer.dir, pki.CACertFile), append(a, b...), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = src
	// Reloaded on the next handshake: the source watches its files.
	return mtls.ClientCredentials(src, nil)
}

// testStreamsPerPeer is the per-identity stream limit of secure test
// controllers.
const testStreamsPerPeer = 6

// TestMTLSStreamLimitPerIdentity: one host holding its limit of streams
// is refused more with ResourceExhausted, while another host is served.
func TestMTLSStreamLimitPerIdentity(t *testing.T) {
	p := newTestPKI(t)
	a1, _ := secureTwoControllers(t, p)
	h1 := p.dialAs(a1, identity.Host, "h1")
	for range testStreamsPerPeer {
		e := watchRaw(t, h1, hostWatch, &p4meshv1.WatchRequest{})
		e.snapshot(t)
	}
	if ev, err := firstEvent(t, h1, hostWatch, &p4meshv1.WatchRequest{}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("stream %d of h1: %v, %v; want ResourceExhausted", testStreamsPerPeer+1, ev, err)
	}
	if _, err := firstEvent(t, p.dialAs(a1, identity.Host, "h2"), hostWatch, &p4meshv1.WatchRequest{}); err != nil {
		t.Fatalf("h2 beside h1's full share: %v", err)
	}
}

// TestInventedHostsHoldNothing: watches for host ids no configuration
// names are NotFound and leave no host table behind, in plaintext too.
func TestInventedHostsHoldNothing(t *testing.T) {
	c1, _ := twoControllers(t, true)
	before := c1.srv.Stats().Hosts
	conn := dial(t, c1.addr)
	for i := range 50 {
		_, err := firstEvent(t, conn, hostWatch, &p4meshv1.WatchRequest{Host: fmt.Sprintf("invented-%d", i)})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("watch of invented host %d: %v, want NotFound", i, err)
		}
	}
	if after := c1.srv.Stats().Hosts; after != before {
		t.Fatalf("host tables went from %d to %d after watches of invented hosts", before, after)
	}
}
