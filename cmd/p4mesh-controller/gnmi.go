package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"google.golang.org/grpc"

	"github.com/p4mesh/p4mesh/controller"
	gnmiserver "github.com/p4mesh/p4mesh/gnmi/server"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/internal/daemon"
	"github.com/p4mesh/p4mesh/mtls"
)

// gnmiOptions are the gNMI server's flags. The gNMI specification makes
// TLS a MUST; p4mesh makes it mutual, since who may Set is decided by the
// client's certificate: --gnmi-tls-* when given, else the controller's
// own --tls-* files; plaintext needs --gnmi-insecure or --insecure.
type gnmiOptions struct {
	addr              string
	cert, key, ca     string
	insecurePlaintext bool
	// maxMsgSize bounds a gNMI message either way: a Set of a whole
	// configuration and a Get of / are one message each.
	maxMsgSize int
}

func (g gnmiOptions) own() bool { return g.cert != "" || g.key != "" || g.ca != "" }

func (g gnmiOptions) check(tls *mtls.Flags) error {
	if g.maxMsgSize <= 0 {
		return usageErr("--gnmi-max-msg-size %d: must be positive", g.maxMsgSize)
	}
	if g.addr == "" {
		if g.own() || g.insecurePlaintext {
			return usageErr("--gnmi-tls-* and --gnmi-insecure need --gnmi-addr")
		}
		return nil
	}
	switch {
	case g.insecurePlaintext && g.own():
		return usageErr("--gnmi-insecure and --gnmi-tls-* contradict each other")
	case g.own() && (g.cert == "" || g.key == ""):
		return usageErr("--gnmi-tls-cert and --gnmi-tls-key go together")
	case g.own() && g.ca == "":
		// Server-only TLS would let anyone who can connect Set.
		return usageErr("--gnmi-tls-ca is required with --gnmi-tls-cert: clients are authorised by their certificates (operator and viewer identities), so they must present one")
	case !g.own() && !g.insecurePlaintext && !tls.TLS() && !tls.Insecure:
		return usageErr("gNMI needs mutual TLS (--tls-cert, --tls-key and --tls-ca, or --gnmi-tls-*) or, explicitly, --gnmi-insecure")
	}
	return nil
}

// startGNMI serves gNMI for srv on its own gRPC server and listener. Its
// Subscribe streams end when streams does, so that a stop need not wait
// for subscribers to leave.
func startGNMI(o gnmiOptions, tls *mtls.Flags, srv *controller.Server, log *slog.Logger, streams context.Context) (*grpc.Server, net.Listener, error) {
	opts := append(daemon.ServerOptions(daemon.Limits{}),
		grpc.ChainStreamInterceptor(daemon.EndStreamsOn(streams)),
		grpc.MaxRecvMsgSize(o.maxMsgSize),
		grpc.MaxSendMsgSize(o.maxMsgSize),
	)
	auth := identity.Auth{TrustDomain: tls.TrustDomain, Insecure: true}
	switch {
	case o.own():
		src, err := mtls.Load(mtls.Files{Cert: o.cert, Key: o.key, CA: o.ca}, log)
		if err != nil {
			return nil, nil, fmt.Errorf("--gnmi-tls-*: %w", err)
		}
		opts, auth.Insecure = append(opts, grpc.Creds(mtls.ServerCredentials(src))), false
	case tls.TLS() && !o.insecurePlaintext:
		src, err := tls.Source(log)
		if err != nil {
			return nil, nil, err
		}
		opts, auth.Insecure = append(opts, grpc.Creds(mtls.ServerCredentials(src))), false
	}
	gsrv, err := gnmiserver.New(gnmiserver.Options{Controller: srv, Logger: log.With("service", "gnmi"), Auth: auth})
	if err != nil {
		return nil, nil, err
	}
	lis, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--gnmi-addr: %w", err)
	}
	g := grpc.NewServer(opts...)
	gsrv.Register(g)
	go g.Serve(lis)
	log.Info("gNMI serving", "addr", lis.Addr().String(), "mtls", !auth.Insecure)
	return g, lis, nil
}
