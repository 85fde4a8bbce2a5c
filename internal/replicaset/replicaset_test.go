package replicaset

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

// replica is one address of a replica set that serves only while it
// leads: a standby has no listener, so connections to it are refused.
type replica struct {
	addr string
	g    *grpc.Server
}

func (r *replica) lead(t *testing.T) {
	t.Helper()
	lis, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatalf("replica %s taking its address back: %v", r.addr, err)
	}
	r.g = grpc.NewServer()
	healthpb.RegisterHealthServer(r.g, health.NewServer())
	go r.g.Serve(lis)
}

func (r *replica) stop() {
	if r.g != nil {
		r.g.Stop()
		r.g = nil
	}
}

// replicas reserves n loopback addresses, none of them listening.
func replicas(t *testing.T, n int) []*replica {
	t.Helper()
	var out []*replica
	for range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &replica{addr: lis.Addr().String()})
		lis.Close()
	}
	t.Cleanup(func() {
		for _, r := range out {
			r.stop()
		}
	})
	return out
}

// answeredBy calls until a call succeeds, as a watch client's reconnect
// loop does, and returns the address of the replica that answered.
func answeredBy(t *testing.T, c healthpb.HealthClient) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var p peer.Peer
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
		cancel()
		if err == nil {
			return p.Addr.String()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replica answered in 20s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDialFollowsTheServingReplica dials three replicas of which only the
// middle one serves, then moves the lead to the last: the one connection
// follows it.
func TestDialFollowsTheServingReplica(t *testing.T) {
	rs := replicas(t, 3)
	addrs := []string{rs[0].addr, rs[1].addr, rs[2].addr}
	rs[1].lead(t)
	cc, err := Dial(addrs, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := healthpb.NewHealthClient(cc)
	if got := answeredBy(t, c); got != rs[1].addr {
		t.Fatalf("answered by %s, want the serving replica %s", got, rs[1].addr)
	}
	rs[1].stop()
	rs[2].lead(t)
	if got := answeredBy(t, c); got != rs[2].addr {
		t.Fatalf("after the failover answered by %s, want the new leader %s", got, rs[2].addr)
	}
	// And back to the first, which the connection tried and was refused
	// by at the start.
	rs[2].stop()
	rs[0].lead(t)
	if got := answeredBy(t, c); got != rs[0].addr {
		t.Fatalf("after the second failover answered by %s, want %s", got, rs[0].addr)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{in: "10.0.0.1:7001", want: []string{"10.0.0.1:7001"}},
		{in: "10.0.0.1:7001, 10.0.0.2:7001,[::1]:7001", want: []string{"10.0.0.1:7001", "10.0.0.2:7001", "[::1]:7001"}},
		{in: "ctl-a.example:7001,ctl-b.example:7001", want: []string{"ctl-a.example:7001", "ctl-b.example:7001"}},
		{in: "", err: "no address"},
		{in: "10.0.0.1", err: `replica 1 of "10.0.0.1": "10.0.0.1" is not host:port`},
		{in: "10.0.0.1:7001,", err: `replica 2 of "10.0.0.1:7001,": "" is not host:port`},
		{in: "10.0.0.1:7001,10.0.0.2:0", err: `replica 2 of "10.0.0.1:7001,10.0.0.2:0": "10.0.0.2:0" has no valid port`},
		{in: "10.0.0.1:7001,10.0.0.2:7001,10.0.0.1:7001", err: "replica 3 of \"10.0.0.1:7001,10.0.0.2:7001,10.0.0.1:7001\": 10.0.0.1:7001 is also replica 1"},
	} {
		got, err := Parse(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Parse(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || Join(got) != Join(tc.want) {
			t.Errorf("Parse(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestDialRefusesBadAddress(t *testing.T) {
	if _, err := Dial(nil); err == nil {
		t.Error("Dial of no address succeeded")
	}
	if _, err := Dial([]string{"127.0.0.1:1", "nonsense"}, grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil || !strings.Contains(err.Error(), `"nonsense" is not host:port`) {
		t.Errorf("Dial with a bad replica: %v", err)
	}
}
