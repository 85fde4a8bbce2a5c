// Package mtls gives p4mesh's gRPC servers and clients mutual TLS from
// three PEM files (certificate, key, CA), re-read from disk when they
// change so certificates rotate without a restart, and identities from
// package identity instead of host names.
package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/p4mesh/p4mesh/identity"
)

// Files are where a daemon's certificate, its key and the CA it trusts
// live.
type Files struct {
	Cert, Key, CA string
}

// Empty reports whether no file is named.
func (f Files) Empty() bool { return f.Cert == "" && f.Key == "" && f.CA == "" }

// Check says which flag is missing when some but not all are named.
func (f Files) Check() error {
	if f.Empty() {
		return nil
	}
	var missing []string
	if f.Cert == "" {
		missing = append(missing, "--tls-cert")
	}
	if f.Key == "" {
		missing = append(missing, "--tls-key")
	}
	if f.CA == "" {
		missing = append(missing, "--tls-ca")
	}
	if len(missing) > 0 {
		return fmt.Errorf("mutual TLS needs --tls-cert, --tls-key and --tls-ca; missing %v", missing)
	}
	return nil
}

// Source holds the current certificate and CA pool read from Files. Each
// handshake asks it for them; it re-reads the files when their size or
// modification time moved, and keeps serving the last good pair while a
// rotation is half-written (a new certificate beside an old key).
type Source struct {
	files Files
	log   *slog.Logger

	mu    sync.Mutex
	stamp [3]fileStamp
	cert  *tls.Certificate
	pool  *x509.CertPool
	id    identity.ID
}

type fileStamp struct {
	size int64
	mod  time.Time
}

// Load reads the files once; an error names the file and what is wrong.
func Load(f Files, log *slog.Logger) (*Source, error) {
	if err := f.Check(); err != nil {
		return nil, err
	}
	if f.Empty() {
		return nil, errors.New("mtls: no certificate files named")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{files: f, log: log}
	if err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// ID is the identity of this side's own certificate.
func (s *Source) ID() identity.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id
}

func stamps(f Files) ([3]fileStamp, error) {
	var out [3]fileStamp
	for i, p := range []string{f.Cert, f.Key, f.CA} {
		fi, err := os.Stat(p)
		if err != nil {
			return out, err
		}
		out[i] = fileStamp{fi.Size(), fi.ModTime()}
	}
	return out, nil
}

// reload reads the files unconditionally.
func (s *Source) reload() error {
	st, err := stamps(s.files)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(s.files.Cert, s.files.Key)
	if err != nil {
		return fmt.Errorf("--tls-cert %s / --tls-key %s: %w", s.files.Cert, s.files.Key, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("--tls-cert %s: %w", s.files.Cert, err)
	}
	id, err := identity.FromCert(leaf)
	if err != nil {
		return fmt.Errorf("--tls-cert %s: %w", s.files.Cert, err)
	}
	cert.Leaf = leaf
	pemCA, err := os.ReadFile(s.files.CA)
	if err != nil {
		return fmt.Errorf("--tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		return fmt.Errorf("--tls-ca %s: no PEM certificate in it", s.files.CA)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("--tls-cert %s does not chain to --tls-ca %s: %w", s.files.Cert, s.files.CA, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert != nil && s.stamp != st {
		s.log.Info("TLS certificate reloaded", "cert", s.files.Cert, "identity", id.String(), "not_after", leaf.NotAfter)
	}
	s.stamp, s.cert, s.pool, s.id = st, &cert, pool, id
	return nil
}

// current returns the certificate and pool, re-reading the files first when
// they changed. Three stats per handshake are cheap next to a handshake.
func (s *Source) current() (*tls.Certificate, *x509.CertPool) {
	st, err := stamps(s.files)
	s.mu.Lock()
	same := err == nil && st == s.stamp
	cert, pool := s.cert, s.pool
	s.mu.Unlock()
	if same || err != nil {
		return cert, pool
	}
	if err := s.reload(); err != nil {
		// Mid-rotation (one file written, not the other) or a bad file:
		// keep serving what worked, and say so.
		s.log.Warn("TLS files changed but do not load; keeping the previous certificate", "err", err)
		return cert, pool
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert, s.pool
}

// verify checks a peer's chain against the current CA pool and reads its
// identity.
func verify(rawCerts [][]byte, pool *x509.CertPool, usage x509.ExtKeyUsage) (identity.ID, error) {
	if len(rawCerts) == 0 {
		return identity.ID{}, errors.New("no client certificate: present one issued by this deployment's CA (p4meshctl pki)")
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return identity.ID{}, fmt.Errorf("unparsable peer certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return identity.ID{}, fmt.Errorf("certificate %q not accepted: %w", certs[0].Subject.CommonName, err)
	}
	return identity.FromCert(certs[0])
}

// authInfo is a TLS connection's AuthInfo with the identity the server
// proved (or why it could not).
type authInfo struct {
	credentials.TLSInfo
	id  identity.ID
	err error
}

func (a authInfo) PeerIdentity() (identity.ID, error) { return a.id, a.err }

// serverCreds completes every handshake whose client proves possession of
// its certificate's key, then verifies the chain itself: a client with no
// certificate, or one from another CA, is then answered Unauthenticated
// per call, instead of a cut connection that tells it nothing.
type serverCreds struct {
	credentials.TransportCredentials
	src *Source
}

// ServerCredentials are gRPC server credentials for src.
func ServerCredentials(src *Source) credentials.TransportCredentials {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, _ := src.current()
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*cert},
				// The chain is verified in ServerHandshake, against
				// the pool current at that moment.
				ClientAuth: tls.RequestClientCert,
				NextProtos: []string{"h2"},
			}, nil
		},
	}
	return &serverCreds{TransportCredentials: credentials.NewTLS(cfg), src: src}
}

func (c *serverCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return conn, ai, err
	}
	ti := ai.(credentials.TLSInfo)
	_, pool := c.src.current()
	var rawCerts [][]byte
	for _, pc := range ti.State.PeerCertificates {
		rawCerts = append(rawCerts, pc.Raw)
	}
	id, verr := verify(rawCerts, pool, x509.ExtKeyUsageClientAuth)
	return conn, authInfo{TLSInfo: ti, id: id, err: verr}, nil
}

func (c *serverCreds) Clone() credentials.TransportCredentials {
	return &serverCreds{TransportCredentials: c.TransportCredentials.Clone(), src: c.src}
}

// Expect checks the identity of a server a client reached.
type Expect func(identity.ID) error

// ExpectKind accepts a server of one of kinds in trustDomain.
func ExpectKind(trustDomain string, kinds ...identity.Kind) Expect {
	if trustDomain == "" {
		trustDomain = identity.DefaultTrustDomain
	}
	return func(id identity.ID) error {
		if id.TrustDomain != trustDomain {
			return fmt.Errorf("server is %s, not of trust domain %q", id, trustDomain)
		}
		for _, k := range kinds {
			if id.Kind == k {
				return nil
			}
		}
		return fmt.Errorf("server is %s, want a %v", id, kinds)
	}
}

// ClientCredentials are gRPC client credentials for src: the client shows
// src's certificate and accepts a server whose chain leads to src's CA and
// whose identity expect accepts. Host names are not checked: identities
// are (one CA per deployment, SPIFFE-style).
func ClientCredentials(src *Source, expect Expect) credentials.TransportCredentials {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := src.current()
			return cert, nil
		},
		// Verification is VerifyConnection's, against the pool current
		// at the handshake; crypto/tls's own would check host names.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, pool := src.current()
			var rawCerts [][]byte
			for _, pc := range cs.PeerCertificates {
				rawCerts = append(rawCerts, pc.Raw)
			}
			id, err := verify(rawCerts, pool, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			if expect != nil {
				return expect(id)
			}
			return nil
		},
	}
	return credentials.NewTLS(cfg)
}
