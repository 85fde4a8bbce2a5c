package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/controller"
	p4gnmi "github.com/p4mesh/p4mesh/gnmi"
	gnmiserver "github.com/p4mesh/p4mesh/gnmi/server"
	"github.com/p4mesh/p4mesh/identity"
)

// startGNMI serves a controller (red-blue.yaml: c1 owning red and green)
// and its gNMI server on loopback, plaintext, with opts, and returns the
// gNMI flags that reach it.
func startGNMI(t *testing.T, opts ...grpc.ServerOption) (*controller.Server, []string) {
	t.Helper()
	cfg, err := controller.LoadFile("../../controller/testdata/red-blue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	store, err := controller.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	ctl, err := controller.NewServer(controller.ServerOptions{Auth: identity.Auth{Insecure: true}, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	gs, err := gnmiserver.New(gnmiserver.Options{Auth: identity.Auth{Insecure: true}, Controller: ctl, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The controller's own limits (--gnmi-max-msg-size's default).
	g := grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(p4gnmi.DefaultMaxMsgSize), grpc.MaxSendMsgSize(p4gnmi.DefaultMaxMsgSize))...)
	gs.Register(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return ctl, []string{"--target", lis.Addr().String(), "--insecure", "--timeout", "5s"}
}

// syncBuffer is a bytes.Buffer safe for a command writing while the test
// reads.
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

func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), args, &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestGNMIGetSet(t *testing.T) {
	ctl, conn := startGNMI(t)
	withConn := func(cmd string, args ...string) []string { return append(append([]string{cmd}, conn...), args...) }

	out, err := runCmd(t, withConn("get", "/p4mesh/vpcs/vpc[name=red]/config/vni", "/p4mesh/vpcs/vpc[name=*]/config/name")...)
	if err != nil {
		t.Fatalf("get: %v\n%s", err, out)
	}
	for _, want := range []string{"/p4mesh/vpcs/vpc[name=red]/config/vni: 100\n", `/p4mesh/vpcs/vpc[name=green]/config/name: "green"`} {
		if !strings.Contains(out, want) {
			t.Errorf("get output lacks %q:\n%s", want, out)
		}
	}
	// A subtree comes as indented JSON; flags may follow the paths.
	out, err = runCmd(t, append([]string{"get", "/p4mesh/vpcs/vpc[name=green]/config"}, append(conn, "--encoding", "json")...)...)
	if err != nil || !strings.Contains(out, "/p4mesh/vpcs/vpc[name=green]/config: {\n") || !strings.Contains(out, `"vni": 300`) {
		t.Errorf("get of a subtree as JSON = %v:\n%s", err, out)
	}

	// One transaction: a leaf, a subtree, a delete.
	out, err = runCmd(t, withConn("set",
		"--update", "/p4mesh/vpcs/vpc[name=green]/config/vni=301",
		"--update", `/p4mesh/export-policies/export-policy[name=web]={"config":{"name":"web","prefixes":["10.1.0.0/24"]}}`,
		"--delete", "/p4mesh/routes",
	)...)
	if err != nil {
		t.Fatalf("set: %v\n%s", err, out)
	}
	for _, want := range []string{"delete /p4mesh/routes\n", "update /p4mesh/vpcs/vpc[name=green]/config/vni\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("set output lacks %q:\n%s", want, out)
		}
	}
	cfg := ctl.Config()
	if v, _ := cfg.VPC("green"); v.VNI != 301 {
		t.Errorf("green's VNI = %d after the set; want 301", v.VNI)
	}
	if len(cfg.Routes) != 0 || len(cfg.ExportPolicies) != 2 {
		t.Errorf("after the set: %d routes, %d export policies; want 0 and 2", len(cfg.Routes), len(cfg.ExportPolicies))
	}

	// Refused: the server's message names the path; nothing changes.
	before := ctl.Config()
	_, err = runCmd(t, withConn("set", "--update", `/p4mesh/vpcs/vpc[name=red]/config/subnets=["10.1.0.0/16","10.1.128.0/17"]`, "--update", "/p4mesh/vpcs/vpc[name=red]/config/vni=5")...)
	if err == nil || !strings.Contains(err.Error(), "InvalidArgument") || !strings.Contains(err.Error(), "/p4mesh/vpcs/vpc[name=red]/config/subnets") {
		t.Errorf("overlapping set = %v; want a refusal naming red's subnets", err)
	}
	if !ctl.Config().Equal(before) {
		t.Error("a refused set changed the configuration")
	}
	// Values are JSON: an unquoted string is refused before sending.
	if _, err := runCmd(t, withConn("set", "--update", "/p4mesh/vpcs/vpc[name=green]/config/gateway-ip=10.3.0.1")...); err == nil || !strings.Contains(err.Error(), `'"text"'`) {
		t.Errorf("set of a bare string = %v; want the hint to quote it", err)
	}
	for _, args := range [][]string{withConn("set"), withConn("set", "--update", "/p4mesh/vpcs"), withConn("get", "--encoding", "xml", "/")} {
		if _, err := runCmd(t, args...); !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v; want a usage error", args, err)
		}
	}
}

// TestGNMITargetReplicaSet points --target at a replica set whose first
// replica does not serve: the one that does answers.
func TestGNMITargetReplicaSet(t *testing.T) {
	_, conn := startGNMI(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	standby := lis.Addr().String()
	lis.Close()
	set := slices.Clone(conn)
	set[1] = standby + "," + conn[1]
	out, err := runCmd(t, append([]string{"get", "/p4mesh/vpcs/vpc[name=red]/config/vni"}, set...)...)
	if err != nil || !strings.Contains(out, "/p4mesh/vpcs/vpc[name=red]/config/vni: 100\n") {
		t.Errorf("get from a replica set = %v:\n%s", err, out)
	}
	set[1] = standby + ",nowhere"
	if _, err := runCmd(t, append([]string{"get", "/"}, set...)...); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), `"nowhere" is not host:port`) {
		t.Errorf("a bad replica in --target = %v; want a usage error naming it", err)
	}
}

func TestGNMISubscribe(t *testing.T) {
	ctl, conn := startGNMI(t)
	out, err := runCmd(t, append(append([]string{"subscribe", "--mode", "once"}, conn...), "/p4mesh/vpcs/vpc[name=red]/config")...)
	if err != nil || !strings.Contains(out, "/p4mesh/vpcs/vpc[name=red]/config/vni: 100\n") || !strings.HasSuffix(out, "sync\n") {
		t.Fatalf("subscribe once = %v:\n%s", err, out)
	}

	// STREAM ON_CHANGE: the dump, sync, then the change; --count 1 ends it.
	var stream syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(t.Context(), append(append([]string{"subscribe"}, conn...), "/p4mesh/vpcs/vpc[name=green]/config/vni"), &stream, &stream)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stream.String(), "sync\n") {
		if time.Now().After(deadline) {
			t.Fatalf("no sync from the stream:\n%s", stream.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := ctl.Config().Clone()
	for i := range c.VPCs {
		if c.VPCs[i].Name == "green" {
			c.VPCs[i].VNI = 333
		}
	}
	if err := ctl.Apply(c); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(stream.String(), "sync\n/p4mesh/vpcs/vpc[name=green]/config/vni: 333\n") {
		if time.Now().After(deadline) {
			t.Fatalf("the stream never reported the change:\n%s", stream.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("stream ended on its own: %v", err)
	default:
	}

	// Ctrl-C ends a stream without an error.
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		done <- run(ctx, append(append([]string{"subscribe", "--stream-mode", "sample", "--sample-interval", "50ms"}, conn...), "/p4mesh/controller"), &bytes.Buffer{}, &bytes.Buffer{})
	}()
	time.Sleep(200 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("a cancelled sample stream = %v; want nil", err)
	}

	// POLL: two polls, then done.
	out, err = runCmd(t, append(append([]string{"subscribe", "--mode", "poll", "--poll-interval", "10ms", "--count", "2"}, conn...), "/p4mesh/controller/config/name")...)
	if err != nil || strings.Count(out, "sync\n") != 3 || strings.Count(out, `/p4mesh/controller/config/name: "c1"`) != 3 {
		t.Errorf("subscribe poll = %v:\n%s", err, out)
	}
}

func TestGNMIApply(t *testing.T) {
	ctl, conn := startGNMI(t)
	want, err := controller.LoadFile("../../controller/testdata/red-blue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// One VPC more, one endpoint and the load balancer (which uses it) fewer.
	b, err := os.ReadFile("../../controller/testdata/red-blue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y := string(b)
	y = strings.Replace(y, "    vpcs: [red, green]", "    vpcs: [red, green, purple]", 1)
	y = strings.Replace(y, "vpcs:\n  - name: red\n", "vpcs:\n  - name: purple\n    vni: 400\n    subnets: [10.4.0.0/16]\n  - name: red\n", 1)
	lb := strings.Index(y, "load_balancers:")
	routes := strings.Index(y, "routes:\n  - vpc")
	y = y[:lb] + y[routes:]
	file := filepath.Join(t.TempDir(), "c1.yaml")
	if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	if want, err = controller.LoadFile(file); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd(t, append([]string{"apply", "-f", file}, conn...)...)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if !ctl.Config().Equal(want) {
		t.Errorf("after apply the controller runs\n%+v\nwant\n%+v", ctl.Config(), want)
	}
	for _, line := range []string{"directory: +0 −0 ~1", "vpcs: +1 −0 ~0", "load-balancers: +0 −1 ~0"} {
		if !strings.Contains(out, line) {
			t.Errorf("apply output lacks %q:\n%s", line, out)
		}
	}
	// Applying the same file again changes nothing.
	if out, err := runCmd(t, append([]string{"apply", "-f", file}, conn...)...); err != nil || !strings.Contains(out, "no change") {
		t.Errorf("second apply = %v:\n%s", err, out)
	}
	// A file the controller refuses changes nothing.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(y, "subnets: [10.4.0.0/16]", "subnets: [10.4.0.0/16, 10.4.1.0/24]", 1)), 0o644)
	if _, err := runCmd(t, append([]string{"apply", "-f", bad}, conn...)...); err == nil || !strings.Contains(err.Error(), "nothing changed") {
		t.Errorf("apply of an overlapping subnet = %v; want a refusal", err)
	}
	if !ctl.Config().Equal(want) {
		t.Error("a refused apply changed the configuration")
	}
}

// largeConfig is c1 owning one VPC of n VMs, 400 a host, written to a
// file. Names are long (the model allows 63 characters) so that fewer
// endpoints make a large message: about 500 bytes each as JSON_IETF.
func largeConfig(t *testing.T, n int) string {
	t.Helper()
	const pad = "-0123456789abcdef0123456789abcdef0123456789abcdef"
	const vpc = "big" + pad
	hosts := (n + 399) / 400
	cfg := &controller.Config{Controller: "c1",
		Directory: []controller.ControllerEntry{{Name: "c1", Address: "127.0.0.1:7001", VPCs: []string{vpc}}},
		VPCs:      []controller.VPC{{Name: vpc, VNI: 100, Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}}
	for i := range hosts {
		cfg.Hosts = append(cfg.Hosts, controller.Host{ID: fmt.Sprintf("host%s-%d", pad, i), UnderlayIP: netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)}),
			MAC: controller.MAC{2, 0xfe, 0, 0, byte(i >> 8), byte(i)}, UplinkPort: 1})
	}
	for i := range n {
		port := uint16(2 + i/hosts)
		if port >= 255 { // the CPU port
			port++
		}
		cfg.Endpoints = append(cfg.Endpoints, controller.Endpoint{ID: fmt.Sprintf("vm%s-%d", pad, i), VPC: vpc, Kind: controller.KindVM,
			IP:  netip.AddrFrom4([4]byte{10, byte((i + 2) >> 16), byte((i + 2) >> 8), byte(i + 2)}),
			MAC: controller.MAC{2, 1, 0, byte(i >> 16), byte(i >> 8), byte(i)}, Host: cfg.Hosts[i%hosts].ID, Port: port})
	}
	file := filepath.Join(t.TempDir(), "large.yaml")
	if err := cfg.SaveFile(file); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestGNMILargeConfig applies and reads back a configuration whose gNMI
// messages exceed gRPC's default 4 MB limit: 10k endpoints, some 5 MB as
// JSON_IETF (what 17k endpoints with short names make). No larger, because
// ygot's reflection makes a Set of it take tens of seconds under -race.
func TestGNMILargeConfig(t *testing.T) {
	const n = 10_000
	var largestSet atomic.Int64
	ctl, conn := startGNMI(t, grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*gnmi.SetRequest); ok {
			largestSet.Store(max(largestSet.Load(), int64(proto.Size(r))))
		}
		return h(ctx, req)
	}))
	file := largeConfig(t, n)
	conn = append(conn, "--timeout", "5m")

	out, err := runCmd(t, append([]string{"apply", "-f", file}, conn...)...)
	if err != nil {
		t.Fatalf("apply: %v\n%.2000s", err, out)
	}
	if got := len(ctl.Config().Endpoints); got != n {
		t.Fatalf("after apply the controller has %d endpoints, want %d", got, n)
	}
	if got := largestSet.Load(); got <= 4<<20 {
		t.Fatalf("apply sent a %d-byte Set; the test needs more than 4 MiB", got)
	} else {
		t.Logf("apply sent a %d-byte Set", got)
	}
	out, err = runCmd(t, append([]string{"get", "/"}, conn...)...)
	if err != nil {
		t.Fatalf("get /: %v\n%.2000s", err, out)
	}
	if last := fmt.Sprintf("-%d\"", n-1); !strings.Contains(out, last) || len(out) <= 4<<20 {
		t.Errorf("get / printed %d bytes, without the last endpoint (%s)", len(out), last)
	}
	// The flag is what lets it through: at gRPC's default the answer is
	// refused.
	if _, err := runCmd(t, append([]string{"get", "/", "--max-msg-size", fmt.Sprint(4 << 20)}, conn...)...); err == nil || !strings.Contains(err.Error(), "ResourceExhausted") {
		t.Errorf("get / with a 4 MiB limit = %v; want ResourceExhausted", err)
	}
}
