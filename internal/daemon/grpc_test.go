package daemon

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// TestStreamLimits opens Watch streams (health's, held open by the
// server) until the limits answer ResourceExhausted, and checks a stream
// that ends gives its place back.
func TestStreamLimits(t *testing.T) {
	g := grpc.NewServer(ServerOptions(Limits{StreamsPerPeer: 3, Streams: 5})...)
	healthpb.RegisterHealthServer(g, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	defer g.Stop()

	dial := func() healthpb.HealthClient {
		cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), ClientKeepalive())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return healthpb.NewHealthClient(cc)
	}
	// open returns the first thing a new stream gets: its first update,
	// or the error it was refused with.
	open := func(c healthpb.HealthClient) (context.CancelFunc, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = st.Recv()
		}
		return cancel, err
	}
	a, b := dial(), dial()
	var held []context.CancelFunc
	for i := range 3 {
		cancel, err := open(a)
		if err != nil {
			t.Fatalf("stream %d of the first connection: %v", i, err)
		}
		held = append(held, cancel)
	}
	if _, err := open(a); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("fourth stream of one peer: %v, want ResourceExhausted", err)
	}
	for i := range 2 {
		cancel, err := open(b)
		if err != nil {
			t.Fatalf("stream %d of the second connection: %v", i, err)
		}
		held = append(held, cancel)
	}
	if _, err := open(b); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("sixth stream on the server: %v, want ResourceExhausted", err)
	}
	held[0]()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cancel, err := open(b)
		if err == nil {
			cancel()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a stream that ended did not give its place back: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range held[1:] {
		c()
	}
}
