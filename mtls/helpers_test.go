package mtls_test

import (
	"crypto/tls"
	"crypto/x509"
)

func tlsNoCert(pool *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}
