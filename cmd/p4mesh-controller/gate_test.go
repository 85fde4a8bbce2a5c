package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// A watch client that stops reading has its connection closed after
// --stall-timeout, and its streams' places in the send gate come back; an
// OHC that reads keeps being served.
func TestStalledWatchClientDisconnected(t *testing.T) {
	dir := t.TempDir()
	// 3,500 more red endpoints (over h1..h15): some 200 KiB of destination
	// events, more than gRPC queues for a stream (64 KiB) and the client
	// below takes in (its window, fixed at 64 KiB).
	cfgPath := writeConfig(t, filepath.Join(dir, "c1.yaml"), closedPort(t), func(s string) string {
		var hosts, eps strings.Builder
		for h := 4; h <= 15; h++ {
			fmt.Fprintf(&hosts, "  - {id: h%d, underlay_ip: 192.168.0.%d, mac: \"02:aa:00:00:00:%02x\", uplink_port: 1}\n", h, h, h)
		}
		for i := range 3500 {
			fmt.Fprintf(&eps, "  - {id: red-bulk%d, vpc: red, kind: vm, ip: 10.1.%d.%d, mac: \"02:01:01:00:%02x:%02x\", host: h%d, port: %d}\n",
				i, 16+i/250, 1+i%250, i>>8, i&255, 1+i%15, 10+i/15)
		}
		s = strings.Replace(s, "endpoints:\n", "endpoints:\n"+eps.String(), 1)
		return strings.Replace(s, "hosts:\n", "hosts:\n"+hosts.String(), 1)
	})
	c := start(t, "--config", cfgPath, "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0",
		"--metrics-addr", "127.0.0.1:0", "--stall-timeout", "300ms", "--max-sending-streams-per-peer", "1")

	idle, err := grpc.NewClient(c.grpc.String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	var stalled []grpc.ServerStreamingClient[p4meshv1.Event]
	for range 2 { // the second waits for the first's place
		st, err := p4meshv1.NewConnectivityClient(idle).WatchDestinations(t.Context(), &p4meshv1.WatchRequest{Host: "h1", Vpc: "red"})
		if err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, st)
	}

	c.waitLog(t, "closed its connection")
	for i, st := range stalled {
		if err := drain(st); err == nil {
			t.Errorf("stalled stream %d: no error once its connection was closed", i)
		}
	}
	v, changed := hostView(t, c.grpc, "h1")
	waitView(t, v, changed, "h1's programming", func() bool { return v.Get("endpoint/red-bulk0") != nil })
	body := scrape(t, c.metrics)
	for _, want := range []string{
		"p4mesh_controller_watch_streams_sending 0",
		"p4mesh_controller_watch_streams_waiting_to_send 0",
		"p4mesh_controller_watch_stalls_total 1",
	} {
		if !hasMetric(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", c.logs.String())
	}
}

// drain reads st until it fails and returns the error.
func drain(st grpc.ServerStreamingClient[p4meshv1.Event]) error {
	for {
		if _, err := st.Recv(); err != nil {
			return err
		}
	}
}
