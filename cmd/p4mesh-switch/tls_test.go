package main

import (
	"context"
	"net"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/mtls"
	"github.com/p4mesh/p4mesh/p4rt"
	"github.com/p4mesh/p4mesh/pki"
)

func TestRunMutualTLS(t *testing.T) {
	lab, err := pki.OpenLab(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(kind identity.Kind, name string) mtls.Files {
		f, err := lab.Issue(kind, name, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	sw := issue(identity.Host, "h1")
	caFile := sw.CA

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ready := make(chan net.Addr, 1)
	done := make(chan int, 1)
	var logs syncBuffer
	go func() {
		done <- run(ctx, []string{"--grpc-addr", "127.0.0.1:0", "--tls-cert", sw.Cert, "--tls-key", sw.Key, "--tls-ca", caFile},
			&logs, hooks{ready: func(g, _ net.Addr) { ready <- g }})
	}()
	var addr net.Addr
	select {
	case addr = <-ready:
	case <-done:
		t.Fatalf("run exited:\n%s", logs.String())
	}

	connect := func(certFile, keyFile string) error {
		tc, err := p4rt.TLSConfig(caFile, certFile, keyFile, "")
		if err != nil {
			t.Fatal(err)
		}
		c, err := p4rt.New(p4rt.Config{Addr: addr.String(), DeviceID: 1, ElectionID: p4rt.ElectionID{Low: 1}, TLS: tc})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go c.Run(ctx)
		wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
		defer wcancel()
		return c.WaitPrimary(wctx)
	}
	// The OHC of the switch's own host, and an operator, may program it.
	for _, who := range []mtls.Files{issue(identity.Host, "h1"), issue(identity.Operator, "alice")} {
		if err := connect(who.Cert, who.Key); err != nil {
			t.Fatalf("%s: %v", who.Cert, err)
		}
	}
	// Nobody else may even ask its capabilities.
	capabilities := func(creds credentials.TransportCredentials) error {
		cc, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		_, err = p4v1.NewP4RuntimeClient(cc).Capabilities(ctx, &p4v1.CapabilitiesRequest{})
		return err
	}
	for _, c := range []struct {
		name  string
		files mtls.Files
		code  codes.Code
	}{
		{"another host's OHC", issue(identity.Host, "h2"), codes.PermissionDenied},
		{"a controller", issue(identity.Controller, "c1"), codes.PermissionDenied},
		{"a viewer", issue(identity.Viewer, "bob"), codes.PermissionDenied},
		{"no certificate", mtls.Files{CA: caFile}, codes.Unauthenticated},
	} {
		tc, err := p4rt.TLSConfig(caFile, c.files.Cert, c.files.Key, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := capabilities(credentials.NewTLS(tc)); status.Code(err) != c.code {
			t.Errorf("%s: %v, want %v", c.name, err, c.code)
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("run = %d:\n%s", code, logs.String())
	}
}
