package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
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
	CPUSeconds   float64 `json:"cpu_seconds"`   // the client process's CPU time during the writes
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
	if path := os.Getenv("P4MESH_WRITE_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	// One Write call per batch at batch 1 and 100 too: the client splits a
	// call into MaxBatch requests, WritesInFlight of them at a time.
	round := func() error {
		for _, ups := range [][]*p4v1.Update{ins, del} {
			if err := c.Write(ctx, ups); err != nil {
				return err
			}
		}
		return nil
	}
	// A first round brings the switch to its steady state (tables grown
	// to the size, deleted entries' memory kept for reuse), and the
	// connection's buffers to theirs; then the benchmark process, told
	// "warm", starts counting and answers on stdin.
	if err := round(); err != nil {
		t.Fatal(err)
	}
	fmt.Println("warm")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cpu0 := cpuTime()
	start = time.Now()
	if err := round(); err != nil {
		t.Fatal(err)
	}
	el, cpu := time.Since(start), cpuTime()-cpu0
	json.NewEncoder(os.Stdout).Encode(writeClientResult{Entries: 2 * n, Seconds: el.Seconds(), CPUSeconds: cpu.Seconds(), BuildSeconds: build.Seconds()})
}

// BenchmarkWriteProcess measures P4Runtime writes into p4mesh-switch from
// another process over loopback gRPC: 20k vnet_destination entries
// inserted then deleted (2k at batch 1), measured on a second round after
// a first that warms the switch up, batches of 1, 100 and 1000, one
// or two requests in flight. It reports entries/s as the client saw them,
// the client's cost of building the entries, and the server process's heap
// allocations per entry (gRPC's included) and the CPU time of each side.
// P4MESH_WRITE_CPUPROFILE=file profiles the client's writes (-cpuprofile
// profiles the server's).
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
	addr, serverCPU := "", cpuTime
	if os.Getenv("P4MESH_WRITE_TARGET") == modeBMv2 {
		// BMv2 instead of p4mesh-switch: its process's CPU is the
		// server's; its allocations are not counted.
		json := bmv2JSON(b)
		s := startBMv2(b, nil, nil)
		s.program(b, json, nil)
		addr, serverCPU = s.addr, func() time.Duration { return s.cpu(b) }
	} else {
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
		addr = lis.Addr().String()
	}
	n := 20_000
	if batch == 1 {
		n = 2_000
	}
	var m writeRun
	b.ResetTimer()
	for b.Loop() {
		m = runWriteClient(b, addr, serverCPU, batch, n, inflight)
	}
	res, allocs, srvCPU := m.res, m.allocs, m.serverCPU
	b.StopTimer()
	b.ReportMetric(float64(res.Entries)/res.Seconds, "entries/s")
	b.ReportMetric(res.BuildSeconds/float64(res.Entries/2)*1e9, "client-build-ns/entry")
	// The whole server process over the measured round: gRPC included, so
	// this is an upper bound on the write path.
	if os.Getenv("P4MESH_WRITE_TARGET") != modeBMv2 {
		b.ReportMetric(float64(allocs)/float64(res.Entries), "server-allocs/entry")
	}
	// CPU time per 100k entries on each side, over the measured round: on
	// a shared machine what stays comparable between runs.
	b.ReportMetric(srvCPU.Seconds()/float64(res.Entries)*1e5, "server-cpu-s/100k")
	b.ReportMetric(res.CPUSeconds/float64(res.Entries)*1e5, "client-cpu-s/100k")
	b.ReportMetric(0, "ns/op")
}

// writeRun is one run of the client process as the benchmark measured it.
type writeRun struct {
	res       writeClientResult
	allocs    uint64        // the server process's, over the measured round
	serverCPU time.Duration // likewise
}

// runWriteClient runs the client process against addr. (Outside the
// benchmark's b.Loop body, whose results the Go 1.26 compiler keeps alive:
// this body inside it crashes the compiler.)
func runWriteClient(b *testing.B, addr string, serverCPU func() time.Duration, batch, n, inflight int) writeRun {
	cmd := exec.Command(os.Args[0], "-test.run=^TestWriteClientProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "P4MESH_WRITE_CLIENT="+addr,
		"P4MESH_WRITE_BATCH="+strconv.Itoa(batch), "P4MESH_WRITE_ENTRIES="+strconv.Itoa(n),
		"P4MESH_WRITE_INFLIGHT="+strconv.Itoa(inflight))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	// Counted from the client's "warm" to its result: the measured round
	// only.
	var ms0, ms1 runtime.MemStats
	var cpu0 time.Duration
	var r writeRun
	var out strings.Builder
	line := ""
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		l := sc.Text()
		out.WriteString(l + "\n")
		switch {
		case l == "warm":
			runtime.ReadMemStats(&ms0)
			cpu0 = serverCPU()
			if _, err := stdin.Write([]byte("go\n")); err != nil {
				b.Fatal(err)
			}
		case strings.HasPrefix(l, "{"):
			r.serverCPU = serverCPU() - cpu0
			runtime.ReadMemStats(&ms1)
			line = l
		}
	}
	if err := cmd.Wait(); err != nil {
		b.Fatalf("client: %v\n%s%s", err, out.String(), stderr.String())
	}
	if err := json.Unmarshal([]byte(line), &r.res); err != nil {
		b.Fatalf("client output: %v\n%s%s", err, out.String(), stderr.String())
	}
	r.allocs = ms1.Mallocs - ms0.Mallocs
	return r
}
