// Package etcdtest runs a real etcd for tests: the embedded server of
// go.etcd.io/etcd/server/v3, one member, in the test's process, so the
// tests that need etcd need no package installed.
package etcdtest

import (
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// ready bounds the server's start: generous, as -race on a loaded machine
// is slow; a deadline, never an assertion about speed.
const ready = 30 * time.Second

// Start runs a one-member etcd on loopback ports the kernel picks, its
// data in a temporary directory, until the test ends; it returns the
// client address, host:port.
func Start(t testing.TB) string {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	u, _ := url.Parse("http://127.0.0.1:0")
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*u}, []url.URL{*u}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*u}, []url.URL{*u}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("etcd: %v", err)
	case <-time.After(ready):
		t.Fatal("etcd not ready")
	}
	return e.Clients[0].Addr().String()
}
