package mtls

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/p4mesh/p4mesh/identity"
)

// Flags are the TLS flags every p4mesh daemon takes, the same way:
//
//	--tls-cert, --tls-key, --tls-ca   mutual TLS, identities from certificates
//	--trust-domain                    the SPIFFE trust domain accepted
//	--insecure                        plaintext, nobody authenticated
//
// Without certificates a daemon serves plaintext only on a loopback
// address (a lab on one machine), and only with --insecure anywhere else.
type Flags struct {
	Files       Files
	TrustDomain string
	Insecure    bool

	// cache shares one Source among the copies of Flags that Register
	// made it for (options structs are passed by value).
	cache *sourceCache
}

type sourceCache struct {
	once sync.Once
	src  *Source
	err  error
}

// Register adds the flags to fs; what describes the daemon's channels
// in the help text ("the controller API", "P4Runtime").
func (f *Flags) Register(fs *flag.FlagSet, what string) {
	f.cache = &sourceCache{}
	fs.StringVar(&f.Files.Cert, "tls-cert", "", "certificate (PEM) this daemon presents on "+what+"; its spiffe:// URI SAN is its identity (p4meshctl pki)")
	fs.StringVar(&f.Files.Key, "tls-key", "", "private key (PEM) of --tls-cert")
	fs.StringVar(&f.Files.CA, "tls-ca", "", "CA (PEM) every peer's certificate must chain to; re-read, with --tls-cert and --tls-key, when the files change")
	fs.StringVar(&f.TrustDomain, "trust-domain", identity.DefaultTrustDomain, "SPIFFE trust domain of every accepted identity")
	fs.BoolVar(&f.Insecure, "insecure", false, "plaintext with no authentication: anyone who reaches "+what+" is trusted (labs only)")
}

// Check validates the combination of flags.
func (f *Flags) Check() error {
	if f.Insecure && !f.Files.Empty() {
		return errors.New("--insecure and --tls-* contradict each other")
	}
	return f.Files.Check()
}

// CheckListen refuses plaintext on a non-loopback address without
// --insecure: a command-line error, found before anything starts.
func (f *Flags) CheckListen(addr string) error {
	if !f.TLS() && !f.Insecure && !Loopback(addr) {
		return fmt.Errorf("%s is not a loopback address: serve it with --tls-cert, --tls-key and --tls-ca (p4meshctl pki makes them), or in plaintext with --insecure", addr)
	}
	return nil
}

// TLS reports whether mutual TLS is on.
func (f *Flags) TLS() bool { return !f.Files.Empty() }

// Source loads the files once.
func (f *Flags) Source(log *slog.Logger) (*Source, error) {
	if f.cache == nil {
		return Load(f.Files, log)
	}
	f.cache.once.Do(func() { f.cache.src, f.cache.err = Load(f.Files, log) })
	return f.cache.src, f.cache.err
}

// Server is how a daemon serves on addr: its credentials (nil for
// plaintext) and how its services tell callers apart. Plaintext is refused
// on a non-loopback address without --insecure.
func (f *Flags) Server(addr string, log *slog.Logger) ([]grpc.ServerOption, identity.Auth, error) {
	auth := identity.Auth{TrustDomain: f.TrustDomain}
	if !f.TLS() {
		if err := f.CheckListen(addr); err != nil {
			return nil, auth, err
		}
		if log != nil && !f.Insecure {
			log.Warn("serving plaintext on loopback: every local process is trusted; use --tls-* to authenticate", "addr", addr)
		}
		auth.Insecure = true
		return nil, auth, nil
	}
	src, err := f.Source(log)
	if err != nil {
		return nil, auth, err
	}
	return []grpc.ServerOption{grpc.Creds(ServerCredentials(src))}, auth, nil
}

// Dial is how a daemon reaches servers whose identity expect accepts.
func (f *Flags) Dial(expect Expect, log *slog.Logger) (grpc.DialOption, error) {
	if !f.TLS() {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	src, err := f.Source(log)
	if err != nil {
		return nil, err
	}
	return grpc.WithTransportCredentials(ClientCredentials(src, expect)), nil
}

// Credentials are the client credentials for expect; nil without TLS.
func (f *Flags) Credentials(expect Expect, log *slog.Logger) (credentials.TransportCredentials, error) {
	if !f.TLS() {
		return nil, nil
	}
	src, err := f.Source(log)
	if err != nil {
		return nil, err
	}
	return ClientCredentials(src, expect), nil
}

// Loopback reports whether a listen address reaches only this machine:
// "localhost", 127.0.0.0/8 or ::1. An empty host (":7001") is every
// interface.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ExpectID accepts exactly id.
func ExpectID(id identity.ID) Expect {
	return func(got identity.ID) error {
		if got != id {
			return fmt.Errorf("server is %s, want %s", got, id)
		}
		return nil
	}
}
