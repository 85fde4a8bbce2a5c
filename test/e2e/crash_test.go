package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/internal/testenv"
)

// TestCrashDuringSets kills p4mesh-controller (SIGKILL) during a burst of
// gNMI Sets from several clients, some valid, some refused, and restarts
// it on the same data directory: every Set it acknowledged is there, none
// it refused is. Sets cut off by the kill may or may not be: their outcome
// was never told.
func TestCrashDuringSets(t *testing.T) {
	goBin := testenv.NeedTool(t, "go", "building p4mesh-controller")
	bin := filepath.Join(t.TempDir(), "p4mesh-controller")
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/p4mesh/p4mesh/cmd/p4mesh-controller").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	listen, gnmiAddr := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(dir, "c1.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `controller: c1
directory:
  - {name: c1, address: %q, vpcs: [red]}
vpcs:
  - {name: red, vni: 100, subnets: [10.1.0.0/16]}
hosts:
  - {id: h1, underlay_ip: 192.168.0.1, mac: "02:aa:00:00:00:01", uplink_port: 1}
`, listen), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--listen", listen, "--insecure",
		"--gnmi-addr", gnmiAddr, "--gnmi-insecure"}
	conn, err := grpc.NewClient(gnmiAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := gnmi.NewGNMIClient(conn)
	endpoints := func(ctx context.Context) (map[string]bool, error) {
		resp, err := client.Get(ctx, &gnmi.GetRequest{Path: []*gnmi.Path{{Elem: []*gnmi.PathElem{{Name: "p4mesh"}, {Name: "endpoints"}}}},
			Type: gnmi.GetRequest_CONFIG, Encoding: gnmi.Encoding_JSON_IETF})
		if status.Code(err) == codes.NotFound {
			return map[string]bool{}, nil // no endpoints yet
		}
		if err != nil {
			return nil, err
		}
		ids := map[string]bool{}
		for _, n := range resp.GetNotification() {
			for _, u := range n.GetUpdate() {
				var v any
				if err := json.Unmarshal(u.GetVal().GetJsonIetfVal(), &v); err != nil {
					return nil, err
				}
				collectIDs(v, ids)
			}
		}
		return ids, nil
	}
	waitUp := func(out *lockedBuffer) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			_, err := endpoints(ctx)
			cancel()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("p4mesh-controller not serving gNMI: %v\n%s", err, out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	cmd, exited, out := process(t, bin, "p4mesh-controller before the crash", args...)
	waitUp(out)
	const clients, perClient = 4, 120
	var (
		mu              sync.Mutex
		acked, refused  []string
		total, unknowns atomic.Int64
		wg              sync.WaitGroup
	)
	killAt := int64(40 + time.Now().UnixNano()%40) // acknowledged Sets before the kill
	killed := make(chan struct{})
	for g := range clients {
		wg.Go(func() {
			for i := range perClient {
				n := g*perClient + i
				id, vpc := fmt.Sprintf("e-%d", n), "red"
				if i%3 == 2 {
					id, vpc = fmt.Sprintf("bad-%d", n), "nowhere" // an unknown VPC: refused
				}
				val := fmt.Appendf(nil, `{"id":%q,"vpc":%q,"kind":"vm","ip":"10.1.%d.%d","mac":"02:01:00:00:%02x:%02x","host":"h1","port":%d}`,
					id, vpc, n/250, n%250+1, n>>8, n&0xff, n+2)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := client.Set(ctx, &gnmi.SetRequest{Update: []*gnmi.Update{{
					Path: &gnmi.Path{Elem: []*gnmi.PathElem{{Name: "p4mesh"}, {Name: "endpoints"}, {Name: "endpoint", Key: map[string]string{"id": id}}, {Name: "config"}}},
					Val:  &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: val}},
				}}})
				cancel()
				mu.Lock()
				switch c := status.Code(err); {
				case err == nil:
					acked = append(acked, id)
				case c == codes.InvalidArgument || c == codes.FailedPrecondition || c == codes.NotFound:
					refused = append(refused, id)
				default: // cut off by the kill: outcome unknown
					unknowns.Add(1)
				}
				mu.Unlock()
				if err == nil && total.Add(1) == killAt {
					cmd.Process.Signal(syscall.SIGKILL)
					close(killed)
				}
				select {
				case <-killed:
					if status.Code(err) == codes.Unavailable {
						return
					}
				default:
				}
			}
		})
	}
	wg.Wait()
	<-exited
	select {
	case <-killed:
	default:
		t.Fatalf("the burst ended before the kill: %d acknowledged", total.Load())
	}
	if len(refused) == 0 {
		t.Fatal("no Set was refused: the test's refused Sets do not test anything")
	}
	t.Logf("killed after %d acknowledged Sets: %d acknowledged, %d refused, %d cut off", killAt, len(acked), len(refused), unknowns.Load())

	_, _, out = process(t, bin, "p4mesh-controller after the restart", args...)
	waitUp(out)
	have, err := endpoints(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range acked {
		if !have[id] {
			t.Errorf("acknowledged Set of %s lost in the crash", id)
		}
	}
	for _, id := range refused {
		if have[id] {
			t.Errorf("refused Set of %s is there after the restart", id)
		}
	}
}

// collectIDs adds every "id" string under v (a decoded JSON value) to ids.
func collectIDs(v any, ids map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && (k == "id" || k == "p4mesh:id") {
				ids[s] = true
			}
			collectIDs(x, ids)
		}
	case []any:
		for _, x := range v {
			collectIDs(x, ids)
		}
	}
}
