package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

// The write benchmark runs p4mesh-switch's P4Runtime server in this
// process and the client in another: this test binary run again with
// P4MESH_WRITE_CLIENT set, so the client's encoding and gRPC costs are
// paid on its own, as the on-host controller pays them.

// writeClientResult is what the client process prints, as one JSON line.
type writeClientResult struct {
	Entries      int     `json:"entries"`       // updates written (inserts and deletes)
	Seconds      float64 `json:"seconds"`       // wall time of the writes
	BuildSeconds float64 `json:"build_seconds"` // building the entries by name through the schema
}

// TestWriteClientProcess is the client half of BenchmarkWriteProcess; it
// does nothing unless the benchmark started it.
func TestWriteClientProcess(t *testing.T) {
	addr := os.Getenv("P4MESH_WRITE_CLIENT")
	if addr == "" {
		t.Skip("the client process of BenchmarkWriteProcess")
	}
	batch, _ := strconv.Atoi(os.Getenv("P4MESH_WRITE_BATCH"))
	n, _ := strconv.Atoi(os.Getenv("P4MESH_WRITE_ENTRIES"))
	inflight, _ := strconv.Atoi(os.Getenv("P4MESH_WRITE_INFLIGHT"))
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	s, err := p4rt.NewSchema(info)
	if err != nil {
		t.Fatal(err)
	}
	c, err := p4rt.New(p4rt.Config{Addr: addr, DeviceID: 1, ElectionID: p4rt.ElectionID{Low: 1}, MaxBatch: batch, WritesInFlight: inflight})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	defer c.Close()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := c.WaitPrimary(wctx); err != nil {
		t.Fatalf("WaitPrimary: %v (%v)", err, c.LastError())
	}
	start := time.Now()
	ins := make([]*p4v1.Update, n)
	del := make([]*p4v1.Update, n)
	for i := range n {
		a := p4rt.Call("encap_to_host", p4rt.P("dst_vni", p4rt.Uint(0x100)), p4rt.P("host_ip", p4rt.Addr("192.168.0.2")), p4rt.P("dmac", p4rt.HW("02:00:00:00:00:02")))
		te, err := s.TableEntry(p4rt.Entry{Table: "vnet_destination",
			Match:  []p4rt.Match{p4rt.Exact("vni", p4rt.Uint(0x100)), p4rt.Exact("dst_ip", p4rt.IP(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})))},
			Action: &a})
		if err != nil {
			t.Fatal(err)
		}
		if ins[i], err = p4rt.Update(p4v1.Update_INSERT, te); err != nil {
			t.Fatal(err)
		}
		if del[i], err = p4rt.Update(p4v1.Update_DELETE, te); err != nil {
			t.Fatal(err)
		}
	}
	build := time.Since(start)
	start = time.Now()
	// One Write call per batch at batch 1 and 100 too: the client splits a
	// call into MaxBatch requests, WritesInFlight of them at a time.
	for _, ups := range [][]*p4v1.Update{ins, del} {
		if err := c.Write(ctx, ups); err != nil {
			t.Fatal(err)
		}
	}
	el := time.Since(start)
	json.NewEncoder(os.Stdout).Encode(writeClientResult{Entries: 2 * n, Seconds: el.Seconds(), BuildSeconds: build.Seconds()})
}

// BenchmarkWriteProcess measures P4Runtime writes into p4mesh-switch from
// another process over loopback gRPC: 20k vnet_destination entries
// inserted then deleted (2k at batch 1), batches of 1, 100 and 1000, one
// or two requests in flight. It reports entries/s as the client saw them,
// the client's cost of building the entries, and the server process's heap
// allocations per entry (gRPC's included).
func BenchmarkWriteProcess(b *testing.B) {
	for _, inflight := range []int{1, 2} {
		for _, batch := range []int{1, 100, 1000} {
			b.Run(fmt.Sprintf("batch=%d/inflight=%d", batch, inflight), func(b *testing.B) {
				benchWriteProcess(b, batch, inflight)
			})
		}
	}
}

func benchWriteProcess(b *testing.B, batch, inflight int) {
	info, err := p4.P4Info()
	if err != nil {
		b.Fatal(err)
	}
	srv, err := dataplane.NewServer(dataplane.Options{DeviceID: 1, P4Info: info})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Commit(&p4v1.ForwardingPipelineConfig{P4Info: info}); err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs := dataplane.NewGRPCServer()
	srv.Register(gs)
	go gs.Serve(lis)
	defer gs.Stop()
	n := 20_000
	if batch == 1 {
		n = 2_000
	}
	var res writeClientResult
	var allocs uint64
	b.ResetTimer()
	for b.Loop() {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWriteClientProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "P4MESH_WRITE_CLIENT="+lis.Addr().String(),
			"P4MESH_WRITE_BATCH="+strconv.Itoa(batch), "P4MESH_WRITE_ENTRIES="+strconv.Itoa(n),
			"P4MESH_WRITE_INFLIGHT="+strconv.Itoa(inflight))
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		out, err := cmd.CombinedOutput()
		runtime.ReadMemStats(&ms1)
		if err != nil {
			b.Fatalf("client: %v\n%s", err, out)
		}
		line := ""
		for l := range strings.SplitSeq(string(out), "\n") {
			if strings.HasPrefix(l, "{") {
				line = l
			}
		}
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			b.Fatalf("client output: %v\n%s", err, out)
		}
		allocs = ms1.Mallocs - ms0.Mallocs
	}
	b.StopTimer()
	b.ReportMetric(float64(res.Entries)/res.Seconds, "entries/s")
	b.ReportMetric(res.BuildSeconds/float64(res.Entries/2)*1e9, "client-build-ns/entry")
	// The whole server process over the client's run: the arbitration
	// stream and gRPC included, so this is an upper bound on the write path.
	b.ReportMetric(float64(allocs)/float64(res.Entries), "server-allocs/entry")
	b.ReportMetric(0, "ns/op")
}
