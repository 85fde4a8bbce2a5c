package main

import (
	"context"
	"net"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// stopBound is how soon after SIGTERM an idle daemon must have exited: a
// requirement (a restart right after must find the port free and the
// controllers already reconnecting), not a performance figure.
const stopBound = time.Second

// running is a switch run by the test.
type running struct {
	addr   net.Addr
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan int
}

func startSwitch(t *testing.T, grpcAddr string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	r := &running{logs: &syncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	ready := make(chan net.Addr, 1)
	go func() {
		r.done <- run(ctx, []string{"--grpc-addr", grpcAddr, "--mem-ports", "1", "--device-id", "1"}, r.logs,
			hooks{ready: func(g, _ net.Addr) { ready <- g }})
	}()
	select {
	case r.addr = <-ready:
	case code := <-r.done:
		cancel()
		t.Fatalf("run exited with %d before serving:\n%s", code, r.logs.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("not serving after 10s:\n%s", r.logs.String())
	}
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// openStream opens a StreamChannel and arbitrates as primary.
func openStream(t *testing.T, addr net.Addr) p4v1.P4Runtime_StreamChannelClient {
	t.Helper()
	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	st, err := p4v1.NewP4RuntimeClient(conn).StreamChannel(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	err = st.Send(&p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_Arbitration{Arbitration: &p4v1.MasterArbitrationUpdate{
		DeviceId: 1, ElectionId: &p4v1.Uint128{Low: 1},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if c := resp.GetArbitration().GetStatus().GetCode(); c != int32(codes.OK) {
		t.Fatalf("arbitration answered %v, want OK (primary)", resp)
	}
	return st
}

// TestStopEndsStreamChannels stops the switch while a controller's
// StreamChannel is open: the switch ends the stream (UNAVAILABLE, so the
// controller reconnects) and exits within stopBound instead of waiting out
// its grace for a stream that never ends by itself; and a switch started at
// once on the same port binds it.
func TestStopEndsStreamChannels(t *testing.T) {
	r := startSwitch(t, "127.0.0.1:0")
	st := openStream(t, r.addr)

	start := time.Now()
	r.cancel()
	select {
	case code := <-r.done:
		r.done <- code // for the cleanup
		if code != 0 {
			t.Fatalf("run = %d after cancel, want 0:\n%s", code, r.logs.String())
		}
		if took := time.Since(start); took > stopBound {
			t.Errorf("run returned %v after cancel with a StreamChannel open, want within %v", took, stopBound)
		}
	case <-time.After(2 * shutdownGrace):
		t.Fatalf("run did not return after cancel:\n%s", r.logs.String())
	}
	if _, err := st.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("the open StreamChannel ended with %v, want UNAVAILABLE (reconnect)", err)
	}

	again := startSwitch(t, r.addr.String())
	openStream(t, again.addr)
}
