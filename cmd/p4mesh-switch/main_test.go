package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

// syncBuffer is a log sink the switch writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunServesP4RuntimeAndMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type addrs struct{ grpc, metrics net.Addr }
	ready := make(chan addrs, 1)
	var logs syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{
			"--grpc-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
			"--mem-ports", "1,2", "--device-id", "7", "--log-level", "debug",
		}, &logs, hooks{ready: func(g, m net.Addr) { ready <- addrs{g, m} }})
	}()
	var a addrs
	select {
	case a = <-ready:
	case code := <-done:
		t.Fatalf("run exited with %d before serving:\n%s", code, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("not serving after 10s:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), a.grpc.String()) {
		t.Errorf("the listening address %s is not in the log:\n%s", a.grpc, logs.String())
	}

	c, err := p4rt.New(p4rt.Config{Addr: a.grpc.String(), DeviceID: 7, ElectionID: p4rt.ElectionID{Low: 1}})
	if err != nil {
		t.Fatal(err)
	}
	go c.Run(ctx)
	defer c.Close()
	if err := c.WaitPrimary(ctx); err != nil {
		t.Fatalf("WaitPrimary: %v (%v)", err, c.LastError())
	}
	// Arbitrated but with no pipeline, the switch forwards nothing: alive,
	// not ready.
	if code, body := probe(t, a.metrics, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no pipeline") {
		t.Errorf("/readyz before a pipeline = %d %q; want 503, no pipeline", code, body)
	}
	if code, _ := probe(t, a.metrics, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	// This target takes no device config: the pipeline is built in.
	if _, err := c.SetPipeline(ctx, info, nil, 42, p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT); err != nil {
		t.Fatal(err)
	}
	schema, err := p4rt.NewSchema(info)
	if err != nil {
		t.Fatal(err)
	}
	te, err := schema.TableEntry(p4rt.Entry{
		Table: "port_vnet",
		Match: []p4rt.Match{p4rt.Exact("ingress_port", p4rt.Uint(1))},
		Action: &p4rt.ActionCall{Name: "set_vnet", Params: []p4rt.Param{
			p4rt.P("vni", p4rt.Uint(100)), p4rt.P("vm_mac", p4rt.HW("02:00:00:00:00:01")),
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	u, err := p4rt.Update(p4v1.Update_INSERT, te)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, []*p4v1.Update{u}); err != nil {
		t.Fatal(err)
	}
	q, err := p4rt.Entity(&p4v1.TableEntry{TableId: te.GetTableId()})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.ReadAll(ctx, []*p4v1.Entity{q})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].GetTableEntry().GetAction().GetAction().GetActionId() != te.GetAction().GetAction().GetActionId() {
		t.Fatalf("read back %v, want the set_vnet entry", got)
	}

	if code, body := probe(t, a.metrics, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with a pipeline = %d %q; want 200", code, body)
	}
	resp, err := http.Get("http://" + a.metrics.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`p4mesh_switch_table_entries{table="port_vnet"} 1`,
		`p4mesh_switch_table_entries{table="vnet_destination"} 0`,
		`p4mesh_switch_p4runtime_writes_total 1`,
		`p4mesh_switch_p4runtime_write_errors_total 0`,
		`p4mesh_switch_pipeline_loaded 1`,
		`p4mesh_switch_port_rx_packets_total{port="2"} 0`,
		`p4mesh_switch_table_direct_counter_packets{table="vnet_destination"} 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want+"\n") && !strings.Contains(string(body), want+" ") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}

	c.Close()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("run = %d after cancel, want 0:\n%s", code, logs.String())
		}
	case <-time.After(2 * shutdownGrace):
		t.Fatal("run did not return after cancel")
	}
}

// probe GETs path on the metrics listener at addr.
func probe(t *testing.T, addr net.Addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr.String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--device-id", "0"}, "reserves device id 0"},
		{[]string{"--port", "veth0"}, "want N=IFNAME"},
		{[]string{"--port", "1="}, "want N=IFNAME"},
		{[]string{"--port", "x=veth0"}, "P4 ports are 1..510"},
		{[]string{"--port", "511=veth0"}, "P4 ports are 1..510"},
		{[]string{"--port", "255=veth0"}, "CPU port"},
		{[]string{"--port", "1=a", "--port", "1=b"}, "given twice"},
		{[]string{"--mem-ports", "1,1"}, "given twice"},
		{[]string{"--port", "1=a", "--mem-ports", "1"}, "given twice"},
		{[]string{"--cpu-port", "64"}, "CPU_PORT as 255"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--tls-cert", "c.pem"}, "missing [--tls-key --tls-ca]"},
		{[]string{"--tls-ca", "ca.pem"}, "missing [--tls-cert --tls-key]"},
		{[]string{"--insecure", "--tls-ca", "ca.pem"}, "contradict"},
		{[]string{"--host", "h1"}, "--host restricts"},
		{[]string{"--grpc-addr", "0.0.0.0:0"}, "not a loopback address"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"--port-mode", "fast"}, "want mmap, afpacket or xdp"},
		{[]string{"--port-mode", "XDP"}, "want mmap, afpacket or xdp"},
	} {
		var out bytes.Buffer
		code := run(t.Context(), tc.args, &out, hooks{ready: func(net.Addr, net.Addr) { t.Errorf("%v: switch started", tc.args) }})
		if code != 2 || !strings.Contains(out.String(), tc.want) {
			t.Errorf("run(%q) = %d, %q; want 2 and %q", tc.args, code, out.String(), tc.want)
		}
	}
}

func TestRunFailsOnMissingInterface(t *testing.T) {
	var out bytes.Buffer
	code := run(t.Context(), []string{"--grpc-addr", "127.0.0.1:0", "--port", "1=p4mesh-none0"}, &out, hooks{})
	if code != 1 || !strings.Contains(out.String(), "p4mesh-none0") {
		t.Fatalf("run = %d, %q; want 1 naming the interface", code, out.String())
	}
}
