// Package identity is who a p4mesh peer is: a SPIFFE-style ID carried as
// the one spiffe:// URI SAN of its certificate, and read from the verified
// chain of a gRPC connection. Every authorisation decision in p4mesh is
// taken on an ID from here, never on a name a request claims.
//
//	spiffe://<trust-domain>/host/h1        an OHC (and its host's switch)
//	spiffe://<trust-domain>/controller/c2  a controller of the directory
//	spiffe://<trust-domain>/operator/alice configures over gNMI
//	spiffe://<trust-domain>/viewer/bob     reads over gNMI (Get, Subscribe)
package identity

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Kind is what a peer is, and so what it may do.
type Kind string

const (
	Host       Kind = "host"
	Controller Kind = "controller"
	Operator   Kind = "operator"
	Viewer     Kind = "viewer"
)

// Kinds are the kinds p4mesh issues and accepts.
var Kinds = []Kind{Host, Controller, Operator, Viewer}

// DefaultTrustDomain is the trust domain of `p4meshctl pki` and of every
// daemon not told otherwise.
const DefaultTrustDomain = "p4mesh"

// ID is one peer's identity.
type ID struct {
	TrustDomain string
	Kind        Kind
	Name        string
}

// name matches host ids, controller names and user names: what p4mesh's
// configuration accepts for ids, so an ID can name any of them.
var name = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// New checks and makes an ID.
func New(trustDomain string, kind Kind, n string) (ID, error) {
	id := ID{TrustDomain: trustDomain, Kind: kind, Name: n}
	return id, id.check()
}

func (id ID) check() error {
	if !name.MatchString(id.TrustDomain) {
		return fmt.Errorf("trust domain %q: want letters, digits, '.', '_' or '-'", id.TrustDomain)
	}
	known := false
	for _, k := range Kinds {
		known = known || k == id.Kind
	}
	if !known {
		return fmt.Errorf("kind %q: want one of host, controller, operator, viewer", id.Kind)
	}
	if !name.MatchString(id.Name) {
		return fmt.Errorf("name %q: want letters, digits, '.', '_' or '-', starting with a letter or digit", id.Name)
	}
	return nil
}

// String is the ID's URI, spiffe://<trust-domain>/<kind>/<name>.
func (id ID) String() string {
	return "spiffe://" + id.TrustDomain + "/" + string(id.Kind) + "/" + id.Name
}

// URL is the ID as it goes into a certificate's URI SANs.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/" + string(id.Kind) + "/" + id.Name}
}

// Parse reads spiffe://<trust-domain>/<kind>/<name>.
func Parse(s string) (ID, error) {
	u, err := url.Parse(s)
	if err != nil {
		return ID{}, fmt.Errorf("identity %q: %w", s, err)
	}
	if u.Scheme != "spiffe" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" {
		return ID{}, fmt.Errorf("identity %q: want spiffe://<trust-domain>/<kind>/<name>", s)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 2 {
		return ID{}, fmt.Errorf("identity %q: want spiffe://<trust-domain>/<kind>/<name>", s)
	}
	id := ID{TrustDomain: u.Host, Kind: Kind(parts[0]), Name: parts[1]}
	if err := id.check(); err != nil {
		return ID{}, fmt.Errorf("identity %q: %w", s, err)
	}
	return id, nil
}

// FromCert is the identity a certificate carries: exactly one spiffe://
// URI SAN. Two would make "who is this" ambiguous, so they are refused.
func FromCert(c *x509.Certificate) (ID, error) {
	var found []*url.URL
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			found = append(found, u)
		}
	}
	switch len(found) {
	case 0:
		return ID{}, fmt.Errorf("certificate %q carries no spiffe:// URI SAN", c.Subject.CommonName)
	case 1:
		return Parse(found[0].String())
	default:
		return ID{}, fmt.Errorf("certificate %q carries %d spiffe:// URI SANs; p4mesh wants exactly one", c.Subject.CommonName, len(found))
	}
}

// FromContext is the identity of the peer of a gRPC call, from the chain
// the TLS handshake verified. With no TLS, or no client certificate, it
// fails with Unauthenticated.
func FromContext(ctx context.Context) (ID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ID{}, status.Error(codes.Unauthenticated, "no peer information: not a gRPC call")
	}
	if id, err, ok := fromAuthInfo(p.AuthInfo); ok {
		if err != nil {
			return ID{}, status.Error(codes.Unauthenticated, err.Error())
		}
		return id, nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return ID{}, status.Error(codes.Unauthenticated, "the connection is not TLS: a client certificate is required")
	}
	chains := ti.State.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return ID{}, status.Error(codes.Unauthenticated, "no verified client certificate: present one issued by this deployment's CA")
	}
	id, err := FromCert(chains[0][0])
	if err != nil {
		return ID{}, status.Error(codes.Unauthenticated, err.Error())
	}
	return id, nil
}

// Peer names the far end of a call for logs and limits: its identity when
// it has one, else its address.
func Peer(ctx context.Context) string {
	if id, err := FromContext(ctx); err == nil {
		return id.String()
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		host := p.Addr.String()
		if i := strings.LastIndexByte(host, ':'); i > 0 {
			host = host[:i]
		}
		return "addr:" + host
	}
	return "unknown"
}

// Verified is what a transport that checks certificates itself attaches to
// a connection (see package mtls): the identity it proved, or why none.
type Verified interface {
	PeerIdentity() (ID, error)
}

// fromAuthInfo prefers the transport's own verdict over the chain crypto/tls
// verified, so a transport that accepted a handshake without verifying it
// (to answer Unauthenticated rather than cut the connection) is honoured.
func fromAuthInfo(ai credentials.AuthInfo) (ID, error, bool) {
	if v, ok := ai.(Verified); ok {
		id, err := v.PeerIdentity()
		return id, err, true
	}
	return ID{}, nil, false
}

// Auth is how a server decides who calls it.
type Auth struct {
	// TrustDomain is the only trust domain accepted ("" means
	// DefaultTrustDomain).
	TrustDomain string
	// Insecure serves without TLS: nobody is authenticated, and a caller
	// is taken to be whoever its request says (labs and tests only; the
	// daemons refuse it on non-loopback addresses unless told --insecure).
	Insecure bool
}

// Caller is the authenticated identity of ctx's peer. ok is false with a
// nil error only under Insecure, where the caller cannot be known and the
// request's own claim stands.
func (a Auth) Caller(ctx context.Context) (id ID, ok bool, err error) {
	if a.Insecure {
		return ID{}, false, nil
	}
	id, err = FromContext(ctx)
	if err != nil {
		return ID{}, false, err
	}
	td := a.TrustDomain
	if td == "" {
		td = DefaultTrustDomain
	}
	if id.TrustDomain != td {
		return ID{}, false, status.Errorf(codes.Unauthenticated, "%s is not of trust domain %q", id, td)
	}
	return id, true, nil
}

// Interceptors refuse every call whose caller allow refuses: with
// Unauthenticated when it has no identity, PermissionDenied when allow
// says no. Under auth.Insecure they let everything through.
func Interceptors(auth Auth, allow func(ID) error) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	check := func(ctx context.Context) error {
		id, ok, err := auth.Caller(ctx)
		if err != nil || !ok {
			return err
		}
		if err := allow(id); err != nil {
			return status.Error(codes.PermissionDenied, err.Error())
		}
		return nil
	}
	unary := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := check(ctx); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := check(ss.Context()); err != nil {
			return err
		}
		return h(srv, ss)
	}
	return unary, stream
}
