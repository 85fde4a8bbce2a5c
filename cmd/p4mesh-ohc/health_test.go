package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/p4rt"
)

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestReadiness: the OHC is ready only while it is primary on its switch
// and the switch holds a whole view from its controller.
func TestReadiness(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	swAddr := serveSwitch(t)

	// c1 is not up yet; c2 (blue's owner in red-blue.yaml) never is.
	c1 := freeAddr(t)
	metrics := freeAddr(t)
	var logs syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--host", "h1", "--controller", c1, "--switch", swAddr,
			"--election-id", "10", "--metrics-addr", metrics, "--log-level", "debug"}, &logs)
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the OHC did not stop")
		}
		if t.Failed() {
			t.Logf("OHC log:\n%s", logs.String())
		}
	}()

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + metrics + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor := func(what string, ok func(code int, body string) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body := get("/readyz")
			if ok(code, body) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz never %s: last %d %q", what, code, body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Primary on the switch, but no controller: alive, not ready.
	waitFor("says it waits for host programming", func(code int, body string) bool {
		return code == http.StatusServiceUnavailable && strings.Contains(body, "waiting for its controller's host programming")
	})
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}

	cfg, err := controller.LoadFile("../../controller/testdata/red-blue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	store, err := controller.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	srv, err := controller.NewServer(controller.ServerOptions{Store: store, Auth: identity.Auth{Insecure: true}, PeerGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cLis, err := net.Listen("tcp", c1)
	if err != nil {
		t.Fatal(err)
	}
	cg := grpc.NewServer()
	srv.Register(cg)
	go cg.Serve(cLis)
	t.Cleanup(cg.Stop)
	go srv.Run(ctx)
	waitFor("ready once c1 serves h1", func(code int, _ string) bool { return code == http.StatusOK })

	// Another client takes the switch with a higher election id: the OHC
	// no longer programs it, so it is not ready.
	other, err := p4rt.New(p4rt.Config{Addr: swAddr, DeviceID: 1, ElectionID: p4rt.ElectionID{Low: 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go other.Run(ctx)
	waitFor("says it lost the switch", func(code int, body string) bool {
		return code == http.StatusServiceUnavailable && strings.Contains(body, "not the primary")
	})
}
