package mtls_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
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
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/mtls"
	"github.com/p4mesh/p4mesh/pki"
)

// lab is a CA in a directory with certificates issued on demand.
type lab struct {
	t   *testing.T
	dir string
	ca  *pki.CA
}

func newLab(t *testing.T, td string) *lab {
	t.Helper()
	ca, err := pki.NewCA(td, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	return &lab{t: t, dir: dir, ca: ca}
}

func (l *lab) issue(kind identity.Kind, name string) mtls.Files {
	l.t.Helper()
	id, err := identity.New(l.ca.TrustDomain, kind, name)
	if err != nil {
		l.t.Fatal(err)
	}
	leaf, err := l.ca.Issue(id, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		l.t.Fatal(err)
	}
	cert, key, err := pki.SaveLeaf(l.dir, pki.FileBase(id), leaf)
	if err != nil {
		l.t.Fatal(err)
	}
	return mtls.Files{Cert: cert, Key: key, CA: filepath.Join(l.dir, pki.CACertFile)}
}

func load(t *testing.T, f mtls.Files) *mtls.Source {
	t.Helper()
	s, err := mtls.Load(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// whoami serves the health service and records the identity each call
// was made with.
type whoami struct {
	mu   sync.Mutex
	ids  []identity.ID
	errs []error
}

func (w *whoami) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	id, _, err := (identity.Auth{TrustDomain: "lab"}).Caller(ctx)
	w.mu.Lock()
	w.ids, w.errs = append(w.ids, id), append(w.errs, err)
	w.mu.Unlock()
	_ = id
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func serve(t *testing.T, creds credentials.TransportCredentials) (string, *whoami) {
	t.Helper()
	w := &whoami{}
	g := grpc.NewServer(grpc.Creds(creds), grpc.UnaryInterceptor(w.intercept))
	healthpb.RegisterHealthServer(g, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().String(), w
}

func call(t *testing.T, addr string, creds credentials.TransportCredentials) (*peer.Peer, error) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var p peer.Peer
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	return &p, err
}

func TestIdentityFromClientCertificate(t *testing.T) {
	l := newLab(t, "lab")
	srv := load(t, l.issue(identity.Controller, "c1"))
	addr, w := serve(t, mtls.ServerCredentials(srv))
	cli := load(t, l.issue(identity.Host, "h1"))
	if _, err := call(t, addr, mtls.ClientCredentials(cli, mtls.ExpectKind("lab", identity.Controller))); err != nil {
		t.Fatalf("call with a host certificate: %v", err)
	}
	if got := w.ids[len(w.ids)-1].String(); got != "spiffe://lab/host/h1" {
		t.Fatalf("server saw %q, want spiffe://lab/host/h1", got)
	}
}

func TestRefusedClients(t *testing.T) {
	l := newLab(t, "lab")
	srv := load(t, l.issue(identity.Controller, "c1"))
	addr, _ := serve(t, mtls.ServerCredentials(srv))
	caPool := x509.NewCertPool()
	caPool.AddCert(l.ca.Cert)

	other := newLab(t, "lab") // same trust domain, another CA: an impostor
	// The deployment's own CA, misused to issue into another trust domain.
	otherTD := &lab{t: t, dir: t.TempDir(), ca: &pki.CA{Cert: l.ca.Cert, Key: l.ca.Key, TrustDomain: "elsewhere"}}
	// The client trusts both CAs so that the handshake completes and the
	// server's verdict is what is tested.
	both := func(f mtls.Files) mtls.Files {
		caPEM, _ := os.ReadFile(f.CA)
		mine, _ := os.ReadFile(filepath.Join(l.dir, pki.CACertFile))
		p := filepath.Join(t.TempDir(), "both.pem")
		os.WriteFile(p, append(caPEM, mine...), 0o644)
		f.CA = p
		return f
	}
	cases := []struct {
		name  string
		creds credentials.TransportCredentials
		want  string
	}{
		{"no client certificate", credentials.NewTLS(tlsNoCert(caPool)), "no client certificate"},
		{"certificate of another CA", mtls.ClientCredentials(load(t, both(other.issue(identity.Host, "h1"))), nil), "unknown authority"},
		{"another trust domain", mtls.ClientCredentials(load(t, otherTDFiles(otherTD, l)), nil), "not of trust domain"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := call(t, addr, c.creds)
			if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want Unauthenticated mentioning %q", err, c.want)
			}
		})
	}
	t.Run("plaintext", func(t *testing.T) {
		_, err := call(t, addr, insecure.NewCredentials())
		if err == nil {
			t.Fatal("a plaintext client was served by a TLS server")
		}
	})
}

func TestClientRefusesServerOfAnotherCA(t *testing.T) {
	l := newLab(t, "lab")
	other := newLab(t, "lab")
	addr, _ := serve(t, mtls.ServerCredentials(load(t, other.issue(identity.Controller, "c1"))))
	_, err := call(t, addr, mtls.ClientCredentials(load(t, l.issue(identity.Host, "h1")), mtls.ExpectKind("lab", identity.Controller)))
	if err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("got %v, want the server refused for its unknown authority", err)
	}
}

func TestClientChecksServerKind(t *testing.T) {
	l := newLab(t, "lab")
	addr, _ := serve(t, mtls.ServerCredentials(load(t, l.issue(identity.Host, "h9"))))
	_, err := call(t, addr, mtls.ClientCredentials(load(t, l.issue(identity.Host, "h1")), mtls.ExpectKind("lab", identity.Controller)))
	if err == nil || !strings.Contains(err.Error(), "want a [controller]") {
		t.Fatalf("got %v, want a host posing as controller refused", err)
	}
}

// TestRotation replaces the server's certificate on disk: the next
// connection is served with the new one, with no restart.
func TestRotation(t *testing.T) {
	l := newLab(t, "lab")
	files := l.issue(identity.Controller, "c1")
	srv := load(t, files)
	addr, _ := serve(t, mtls.ServerCredentials(srv))
	cli := mtls.ClientCredentials(load(t, l.issue(identity.Host, "h1")), nil)
	serialOf := func() string {
		p, err := call(t, addr, cli)
		if err != nil {
			t.Fatal(err)
		}
		return p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].SerialNumber.String()
	}
	before := serialOf()
	onDisk := func() string {
		b, _ := os.ReadFile(files.Cert)
		blk, _ := pem.Decode(b)
		c, _ := x509.ParseCertificate(blk.Bytes)
		return c.SerialNumber.String()
	}
	if before != onDisk() {
		t.Fatal("served certificate is not the one on disk")
	}
	l.issue(identity.Controller, "c1") // rewrites the same files
	after := serialOf()
	if after == before || after != onDisk() {
		t.Fatalf("after rotation the server presented serial %s; before %s, on disk %s", after, before, onDisk())
	}
}

func otherTDFiles(o, l *lab) mtls.Files {
	f := o.issue(identity.Host, "h1")
	f.CA = filepath.Join(l.dir, pki.CACertFile)
	return f
}

// TestFilesCheck: the three files go together, and the error names what
// is missing.
func TestFilesCheck(t *testing.T) {
	for _, c := range []struct {
		f     mtls.Files
		empty bool
		want  string
	}{
		{mtls.Files{}, true, ""},
		{mtls.Files{Cert: "c"}, false, "missing [--tls-key --tls-ca]"},
		{mtls.Files{Key: "k"}, false, "missing [--tls-cert --tls-ca]"},
		{mtls.Files{CA: "a"}, false, "missing [--tls-cert --tls-key]"},
		{mtls.Files{Cert: "c", Key: "k", CA: "a"}, false, ""},
	} {
		if got := c.f.Empty(); got != c.empty {
			t.Errorf("%+v.Empty() = %v", c.f, got)
		}
		err := c.f.Check()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v.Check() = %v, want %q", c.f, err, c.want)
		}
	}
}
