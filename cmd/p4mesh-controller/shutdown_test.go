package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// stopBound is how soon after SIGTERM an idle controller must have exited:
// a requirement (a restart right after must find its ports free), not a
// performance figure.
const stopBound = time.Second

// TestStopEndsStreams stops the controller while an OHC's watch, a gNMI
// STREAM subscription and a gNMI POLL subscription (its handler waits in
// Recv) are open: it ends them with UNAVAILABLE, so clients reconnect, and
// exits within stopBound rather than after its grace period.
func TestStopEndsStreams(t *testing.T) {
	dir := t.TempDir()
	cfgPath := writeConfig(t, filepath.Join(dir, "c1.yaml"), closedPort(t), nil)
	c := start(t, "--config", cfgPath, "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0",
		"--gnmi-addr", "127.0.0.1:0", "--gnmi-insecure")

	dial := func(addr string) *grpc.ClientConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	w, err := p4meshv1.NewHostProgrammingClient(dial(c.grpc.String())).Watch(t.Context(), &p4meshv1.WatchRequest{Host: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	g := gnmi.NewGNMIClient(dial(c.gnmi.String()))
	subscribe := func(mode gnmi.SubscriptionList_Mode) gnmi.GNMI_SubscribeClient {
		t.Helper()
		sub, err := g.Subscribe(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		err = sub.Send(&gnmi.SubscribeRequest{Request: &gnmi.SubscribeRequest_Subscribe{Subscribe: &gnmi.SubscriptionList{
			Mode: mode, Encoding: gnmi.Encoding_JSON_IETF,
			Subscription: []*gnmi.Subscription{{Path: &gnmi.Path{}, Mode: gnmi.SubscriptionMode_ON_CHANGE}},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		for {
			r, err := sub.Recv()
			if err != nil {
				t.Fatalf("%s subscription: %v", mode, err)
			}
			if r.GetSyncResponse() {
				return sub
			}
		}
	}
	stream, poll := subscribe(gnmi.SubscriptionList_STREAM), subscribe(gnmi.SubscriptionList_POLL)

	start := time.Now()
	c.cancel()
	select {
	case code := <-c.done:
		close(c.done)
		if code != 0 {
			t.Fatalf("run = %d after cancel, want 0", code)
		}
		if took := time.Since(start); took > stopBound {
			t.Errorf("run returned %v after cancel with streams open, want within %v", took, stopBound)
		}
	case <-time.After(2 * shutdownGrace):
		t.Fatal("run did not return after cancel")
	}
	for {
		if _, err = w.Recv(); err != nil {
			break
		}
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("the watch ended with %v, want UNAVAILABLE", err)
	}
	for name, sub := range map[string]gnmi.GNMI_SubscribeClient{"STREAM": stream, "POLL": poll} {
		for {
			if _, err = sub.Recv(); err != nil {
				break
			}
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("the gNMI %s subscription ended with %v, want UNAVAILABLE", name, err)
		}
	}
}
