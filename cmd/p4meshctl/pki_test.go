package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/internal/replicaset"
	"github.com/p4mesh/p4mesh/mtls"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPKILabReplicas issues a lab for a directory where c2 runs as three
// replicas: each gets a certificate of its own with c2's identity, and a
// client that expects exactly controller c2 accepts whichever replica
// serves the replica set it dials.
func TestPKILabReplicas(t *testing.T) {
	var addrs []string
	for range 2 {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, lis.Addr().String())
		lis.Close()
	}
	replicas := append(slices.Clone(addrs), "10.0.0.3:7002")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c1.yaml")
	yaml := fmt.Sprintf("controller: c1\ndirectory:\n  - name: c1\n    address: 10.0.0.1:7001\n  - name: c2\n    replicas: [%s]\nhosts:\n  - id: h1\n", strings.Join(replicas, ", "))
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	pkiDir := filepath.Join(dir, "pki")
	out, err := runCmd(t, "pki", "lab", "--dir", pkiDir, "--config", cfg)
	if err != nil {
		t.Fatalf("pki lab: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(pkiDir, "controller-c2.pem")); err == nil {
		t.Error("pki lab wrote controller-c2.pem for a replica set; want one certificate per replica")
	}
	if _, err := os.Stat(filepath.Join(pkiDir, "controller-c1.pem")); err != nil {
		t.Errorf("a one-address controller's certificate: %v", err)
	}
	want := identity.ID{TrustDomain: identity.DefaultTrustDomain, Kind: identity.Controller, Name: "c2"}
	var keys []string
	for i, a := range replicas {
		base := filepath.Join(pkiDir, fmt.Sprintf("controller-c2@%d", i+1))
		c := readCert(t, base+".pem")
		if id, err := identity.FromCert(c); err != nil || id != want {
			t.Errorf("replica %d's certificate is %v, %v; want %s", i+1, id, err, want)
		}
		host, _, _ := net.SplitHostPort(a)
		if !slices.ContainsFunc(c.IPAddresses, func(ip net.IP) bool { return ip.String() == host }) {
			t.Errorf("replica %d's certificate lacks its host %s: %v", i+1, host, c.IPAddresses)
		}
		key, err := os.ReadFile(base + ".key")
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(keys, string(key)) {
			t.Errorf("replica %d shares a key with another replica", i+1)
		}
		keys = append(keys, string(key))
	}

	// The replica set served by replica 1 then replica 2, each with its
	// own certificate; the client (host h1) expects controller c2.
	files := func(base string) mtls.Files {
		return mtls.Files{Cert: filepath.Join(pkiDir, base+".pem"), Key: filepath.Join(pkiDir, base+".key"), CA: filepath.Join(pkiDir, "ca.pem")}
	}
	client, err := mtls.Load(files("host-h1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := replicaset.Dial(addrs, grpc.WithTransportCredentials(mtls.ClientCredentials(client, mtls.ExpectID(want))))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for i, a := range addrs {
		src, err := mtls.Load(files(fmt.Sprintf("controller-c2@%d", i+1)), nil)
		if err != nil {
			t.Fatal(err)
		}
		lis, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		g := grpc.NewServer(grpc.Creds(mtls.ServerCredentials(src)))
		healthpb.RegisterHealthServer(g, health.NewServer())
		go g.Serve(lis)
		deadline := time.Now().Add(20 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d with its own certificate not accepted: %v", i+1, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		g.Stop()
	}

	// pki issue --replica issues one more, and refuses a replica name
	// that would escape the directory.
	if out, err := runCmd(t, "pki", "issue", "--dir", pkiDir, "--replica", "4", "--san", "10.0.0.4", "controller/c2"); err != nil || !strings.Contains(out, "(replica 4)") {
		t.Fatalf("pki issue --replica: %v\n%s", err, out)
	}
	if id, err := identity.FromCert(readCert(t, filepath.Join(pkiDir, "controller-c2@4.pem"))); err != nil || id != want {
		t.Errorf("controller-c2@4.pem is %v, %v; want %s", id, err, want)
	}
	if _, err := runCmd(t, "pki", "issue", "--dir", pkiDir, "--replica", "../x", "controller/c2"); err == nil || !strings.Contains(err.Error(), `replica "../x"`) {
		t.Errorf("pki issue --replica ../x = %v; want it refused", err)
	}
}
