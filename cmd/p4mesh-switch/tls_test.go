package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/p4rt"
)

// writeCert signs a certificate for name with parent (self-signed when nil)
// and writes cert and key as PEM files in dir.
func writeCert(t *testing.T, dir, name string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key, certFile, keyFile
}

func TestRunMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caFile, _ := writeCert(t, dir, "ca", true, nil, nil)
	_, _, srvCert, srvKey := writeCert(t, dir, "switch", false, ca, caKey)
	_, _, cliCert, cliKey := writeCert(t, dir, "controller", false, ca, caKey)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ready := make(chan net.Addr, 1)
	done := make(chan int, 1)
	var logs syncBuffer
	go func() {
		done <- run(ctx, []string{"--grpc-addr", "127.0.0.1:0", "--tls-cert", srvCert, "--tls-key", srvKey, "--tls-ca", caFile},
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
	if err := connect(cliCert, cliKey); err != nil {
		t.Fatalf("controller with a CA-signed certificate: %v", err)
	}
	if err := connect("", ""); err == nil {
		t.Fatal("a controller without a client certificate became primary under mTLS")
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("run = %d:\n%s", code, logs.String())
	}
}
