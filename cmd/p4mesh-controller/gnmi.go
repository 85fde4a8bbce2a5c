package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/p4mesh/p4mesh/controller"
	gnmiserver "github.com/p4mesh/p4mesh/gnmi/server"
)

// gnmiOptions are the gNMI server's flags. The gNMI specification makes
// TLS a MUST, so plaintext needs --gnmi-insecure.
type gnmiOptions struct {
	addr              string
	cert, key, ca     string
	insecurePlaintext bool
}

func (g gnmiOptions) check() error {
	if g.addr == "" {
		if g.cert != "" || g.key != "" || g.ca != "" || g.insecurePlaintext {
			return usageErr("--gnmi-tls-* and --gnmi-insecure need --gnmi-addr")
		}
		return nil
	}
	switch {
	case g.insecurePlaintext && (g.cert != "" || g.key != "" || g.ca != ""):
		return usageErr("--gnmi-insecure and --gnmi-tls-* contradict each other")
	case !g.insecurePlaintext && (g.cert == "" || g.key == ""):
		return usageErr("gNMI needs TLS (--gnmi-tls-cert and --gnmi-tls-key, and --gnmi-tls-ca for mTLS) or, explicitly, --gnmi-insecure")
	}
	return nil
}

// startGNMI serves gNMI for srv on its own gRPC server and listener.
func startGNMI(o gnmiOptions, srv *controller.Server, log *slog.Logger) (*grpc.Server, net.Listener, error) {
	gsrv, err := gnmiserver.New(gnmiserver.Options{Controller: srv, Logger: log.With("service", "gnmi")})
	if err != nil {
		return nil, nil, err
	}
	var opts []grpc.ServerOption
	if !o.insecurePlaintext {
		cfg, err := serverTLS(o.cert, o.key, o.ca)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	lis, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--gnmi-addr: %w", err)
	}
	g := grpc.NewServer(opts...)
	gsrv.Register(g)
	go g.Serve(lis)
	log.Info("gNMI serving", "addr", lis.Addr().String(), "tls", !o.insecurePlaintext, "mtls", o.ca != "")
	return g, lis, nil
}

func serverTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--gnmi-tls-cert/--gnmi-tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--gnmi-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--gnmi-tls-ca: no PEM certificate in %s", caFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
