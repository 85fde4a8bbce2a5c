package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"

	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
	"github.com/p4mesh/p4mesh/test/topo"
)

// BMv2 side by side: with simple_switch_grpc on PATH and the compiler's
// JSON of p4/v1model/vpc_peering.p4 in P4MESH_BMV2_JSON (bmv2-side-by-side.sh
// compiles it with p4c-bm2-ss), the rate rig's mode "bmv2" runs BMv2 on the
// same veth wiring as p4mesh-switch's modes, programmed with the same
// entries over P4Runtime, and BenchmarkWriteProcess with
// P4MESH_WRITE_TARGET=bmv2 writes into BMv2 instead of p4mesh-switch.
// Neither runs where BMv2 is not installed (this project's CI machines).

const modeBMv2 = "bmv2"

// bmv2JSON is the BMv2 JSON the benchmark pushes; it skips tb unless BMv2
// and the JSON are there.
func bmv2JSON(tb testing.TB) []byte {
	tb.Helper()
	if _, err := exec.LookPath("simple_switch_grpc"); err != nil {
		tb.Skip("simple_switch_grpc is not on PATH: BMv2 is not installed here")
	}
	path := os.Getenv("P4MESH_BMV2_JSON")
	if path == "" {
		tb.Skip("P4MESH_BMV2_JSON is not set: compile p4/v1model/vpc_peering.p4 with p4c-bm2-ss (test/bench/bmv2-side-by-side.sh does)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("P4MESH_BMV2_JSON: %v", err)
	}
	return b
}

// bmv2 is a simple_switch_grpc process.
type bmv2 struct {
	pid  int
	addr string
	// dial reaches addr from this process: in the switch's namespace
	// when it runs in one (its loopback is that namespace's).
	dial []grpc.DialOption
}

// startBMv2 starts simple_switch_grpc with no program, in netns ns ("" for
// this one), its P4 ports taking the interfaces ports names (port number →
// interface), and its P4Runtime server on a loopback port of ns.
func startBMv2(tb testing.TB, ns *topo.Netns, ports map[int]string) *bmv2 {
	tb.Helper()
	// A port free in ns: BMv2 binds it a moment later.
	var port int
	listen := func() error {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		port = l.Addr().(*net.TCPAddr).Port
		return l.Close()
	}
	if ns != nil {
		if err := ns.Do(listen); err != nil {
			tb.Fatal(err)
		}
	} else if err := listen(); err != nil {
		tb.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{"--device-id", "1", "--log-level", "error", "--no-p4"}
	for n, ifname := range ports {
		args = append(args, "-i", fmt.Sprintf("%d@%s", n, ifname))
	}
	args = append(args, "--", "--grpc-server-addr", addr, "--cpu-port", "255")
	cmd := exec.Command("simple_switch_grpc", args...)
	if ns != nil {
		cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name, "simple_switch_grpc"}, args...)...)
	}
	logf, err := os.Create(filepath.Join(tb.TempDir(), "bmv2.log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start BMv2: %v", err)
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if tb.Failed() {
			b, _ := os.ReadFile(logf.Name())
			tb.Logf("BMv2's log:\n%s", b)
		}
	})
	s := &bmv2{pid: cmd.Process.Pid, addr: addr}
	if ns != nil {
		s.dial = []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() (err error) {
				c, err = (&net.Dialer{}).DialContext(ctx, "tcp", a)
				return err
			})
			return c, err
		})}
	}
	return s
}

// program pushes the pipeline (p4mesh's P4Info, the compiler's JSON) and
// writes ups, as the primary client.
func (s *bmv2) program(tb testing.TB, json []byte, ups []*p4v1.Update) {
	tb.Helper()
	info, err := p4.P4Info()
	if err != nil {
		tb.Fatal(err)
	}
	c, err := p4rt.New(p4rt.Config{Addr: s.addr, DeviceID: 1, ElectionID: p4rt.ElectionID{Low: 1}, DialOptions: s.dial})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { c.Close(); cancel(); <-done }()
	// BMv2 takes a moment to listen after it starts.
	if err := c.WaitPrimary(ctx); err != nil {
		tb.Fatalf("BMv2 at %s: no primary session: %v (%v)", s.addr, err, c.LastError())
	}
	if _, err := c.SetPipeline(ctx, info, json, 0, p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT); err != nil {
		tb.Fatalf("BMv2: set the pipeline: %v", err)
	}
	if len(ups) > 0 {
		if err := c.Write(ctx, ups); err != nil {
			tb.Fatalf("BMv2: write: %v", err)
		}
	}
}

// cpu is the CPU time BMv2's process has used, all its threads.
func (s *bmv2) cpu(tb testing.TB) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		tb.Fatal(err)
	}
	// The fields after the command's ")"; utime and stime are fields 14
	// and 15 of the whole line, in clock ticks (100 a second on Linux).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("/proc/%d/stat: %q", s.pid, b)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond
}
