// Package pki makes a lab's certificate authority and issues the
// certificates p4mesh's daemons and operators present: one ECDSA P-256 CA
// per deployment, and leaf certificates whose one spiffe:// URI SAN is the
// holder's identity. Production deployments bring their own CA (SPIRE,
// cert-manager, a corporate PKI); this is what the demo, the tests and a
// first lab run on.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/mtls"
)

// File names inside a PKI directory.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca.key"
)

// CA is a certificate authority that can issue.
type CA struct {
	Cert        *x509.Certificate
	Key         *ecdsa.PrivateKey
	TrustDomain string
}

// NewCA makes a self-signed CA for trustDomain, valid for validity.
func NewCA(trustDomain string, validity time.Duration) (*CA, error) {
	if _, err := identity.New(trustDomain, identity.Operator, "x"); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "p4mesh CA " + trustDomain, Organization: []string{"p4mesh"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, TrustDomain: trustDomain}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

// Leaf is an issued certificate and its key, PEM-encoded.
type Leaf struct {
	CertPEM, KeyPEM []byte
}

// Issue makes a certificate for id, usable as TLS server and client (a
// controller is both), with hosts (DNS names or IPs) as extra SANs so that
// clients that check names (gnmic, grpcurl) accept a server too.
func (ca *CA) Issue(id identity.ID, hosts []string, validity time.Duration) (Leaf, error) {
	if id.TrustDomain != ca.TrustDomain {
		return Leaf{}, fmt.Errorf("%s is not of this CA's trust domain %q", id, ca.TrustDomain)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Leaf{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: string(id.Kind) + "/" + id.Name, Organization: []string{"p4mesh"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	tmpl.URIs = []*url.URL{id.URL()}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if after := ca.Cert.NotAfter; tmpl.NotAfter.After(after) {
		tmpl.NotAfter = after
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return Leaf{}, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Leaf{}, err
	}
	return Leaf{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}, nil
}

// CertPEM is the CA's certificate, what every party trusts.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Save writes the CA into dir (ca.pem, and ca.key readable by the owner
// only). It refuses to overwrite an existing CA: every certificate issued
// by it would stop being trusted.
func (ca *CA) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		return fmt.Errorf("%s already holds a CA (%s); remove it first if you mean to replace it", dir, CAKeyFile)
	}
	kder, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, CAKeyFile), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, CACertFile), ca.CertPEM(), 0o644)
}

// LoadCA reads a CA saved by Save.
func LoadCA(dir string) (*CA, error) {
	cpem, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("no CA in %s (run p4meshctl pki init): %w", dir, err)
	}
	kpem, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	cb, _ := pem.Decode(cpem)
	kb, _ := pem.Decode(kpem)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("%s: CA certificate or key is not PEM", dir)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CACertFile, err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CAKeyFile, err)
	}
	td := strings.TrimPrefix(cert.Subject.CommonName, "p4mesh CA ")
	if td == cert.Subject.CommonName {
		return nil, errors.New("not a CA made by p4meshctl pki: its subject names no trust domain")
	}
	return &CA{Cert: cert, Key: key, TrustDomain: td}, nil
}

// FileBase is the file name (without .pem/.key) an identity's certificate
// is saved under: host-h1, controller-c2, operator-alice.
func FileBase(id identity.ID) string { return string(id.Kind) + "-" + id.Name }

// SaveLeaf writes l into dir as <base>.pem and <base>.key (owner-only)
// and returns their paths. The key is written first and both by rename, so
// a daemon reloading mid-write sees either the old pair or the new one
// (it keeps the old one while they do not match).
func SaveLeaf(dir, base string, l Leaf) (certPath, keyPath string, err error) {
	certPath, keyPath = filepath.Join(dir, base+".pem"), filepath.Join(dir, base+".key")
	if err := writeFile(keyPath, l.KeyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeFile(certPath, l.CertPEM, 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Lab is a CA kept in a directory, issuing certificates into it: what
// `p4meshctl pki` manages, and what tests and the demo run on.
type Lab struct {
	Dir string
	CA  *CA
}

// OpenLab loads the CA in dir, or makes one for trustDomain there.
func OpenLab(dir, trustDomain string) (*Lab, error) {
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		ca, err := LoadCA(dir)
		if err != nil {
			return nil, err
		}
		if trustDomain != "" && ca.TrustDomain != trustDomain {
			return nil, fmt.Errorf("%s holds the CA of trust domain %q, not %q", dir, ca.TrustDomain, trustDomain)
		}
		return &Lab{Dir: dir, CA: ca}, nil
	}
	if trustDomain == "" {
		trustDomain = identity.DefaultTrustDomain
	}
	ca, err := NewCA(trustDomain, 10*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := ca.Save(dir); err != nil {
		return nil, err
	}
	return &Lab{Dir: dir, CA: ca}, nil
}

// Issue makes (or remakes) the certificate of kind/name in the lab's
// directory, valid for a year, and returns the files a daemon is given.
func (l *Lab) Issue(kind identity.Kind, name string, hosts ...string) (mtls.Files, error) {
	return l.issue(kind, name, "", hosts)
}

// IssueReplica is Issue for one replica of a controller that runs as a
// replica set: the certificate carries the controller's identity, as
// clients check it (any replica of controller c2 is
// spiffe://<domain>/controller/c2), with a key of its own, saved under
// ReplicaFileBase so that replicas' files do not overwrite each other and
// one replica's key can be replaced alone.
func (l *Lab) IssueReplica(kind identity.Kind, name, replica string, hosts ...string) (mtls.Files, error) {
	if !validReplica(replica) {
		return mtls.Files{}, fmt.Errorf("replica %q: want 1 to 63 letters, digits, '-', '_' or '.' (e.g. its index, 1, 2, 3)", replica)
	}
	return l.issue(kind, name, replica, hosts)
}

// ReplicaFileBase is the file name of one replica's certificate:
// controller-c2@1. '@' is in no identity name, so it cannot clash with
// another identity's FileBase.
func ReplicaFileBase(id identity.ID, replica string) string { return FileBase(id) + "@" + replica }

func validReplica(r string) bool {
	if r == "" || len(r) > 63 {
		return false
	}
	for _, c := range r {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return r != "." && r != ".."
}

func (l *Lab) issue(kind identity.Kind, name, replica string, hosts []string) (mtls.Files, error) {
	id, err := identity.New(l.CA.TrustDomain, kind, name)
	if err != nil {
		return mtls.Files{}, err
	}
	leaf, err := l.CA.Issue(id, hosts, 365*24*time.Hour)
	if err != nil {
		return mtls.Files{}, err
	}
	base := FileBase(id)
	if replica != "" {
		base = ReplicaFileBase(id, replica)
	}
	cert, key, err := SaveLeaf(l.Dir, base, leaf)
	if err != nil {
		return mtls.Files{}, err
	}
	return mtls.Files{Cert: cert, Key: key, CA: filepath.Join(l.Dir, CACertFile)}, nil
}
