package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/demo"
	gnmiserver "github.com/p4mesh/p4mesh/gnmi/server"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/internal/testenv"
)

// buildGNMICLI builds the real gnmi_cli, pinned in go.mod as a tool
// (openconfig/gnmi v0.14.1), into dir.
func buildGNMICLI(t *testing.T, dir string) string {
	t.Helper()
	goBin := testenv.NeedTool(t, "go", "building gnmi_cli")
	bin := filepath.Join(dir, "gnmi_cli")
	out, err := exec.Command(goBin, "build", "-o", bin, "github.com/openconfig/gnmi/cmd/gnmi_cli").CombinedOutput()
	if err != nil {
		testenv.Skipf(t, "cannot build gnmi_cli (no network for its modules?): %v\n%s", err, out)
	}
	return bin
}

// gnmiCLI runs gnmi_cli against addr, plaintext.
type gnmiCLI struct {
	t   *testing.T
	bin string
}

// run runs gnmi_cli with args and returns its output (stdout and stderr)
// and whether it exited 0.
func (c gnmiCLI) run(addr string, args ...string) (string, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, append([]string{"-address", addr, "-insecure", "-logtostderr"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// textProto is a request in the protobuf text format gnmi_cli's -proto
// takes; building it from the Go message keeps the JSON escaping right.
func textProto(m proto.Message) string { return prototext.Format(m) }

func gpath(t *testing.T, s string) *gnmi.Path {
	t.Helper()
	p, err := ygot.StringToStructuredPath(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ietf(s string) *gnmi.TypedValue {
	return &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: []byte(s)}}
}

// serveGNMI puts a gNMI server in front of each of the mesh's controllers
// and returns their addresses.
func serveGNMI(t *testing.T, m *demo.Mesh) map[string]string {
	t.Helper()
	addrs := map[string]string{}
	for name, ctl := range m.Controllers {
		gs, err := gnmiserver.New(gnmiserver.Options{Auth: identity.Auth{Insecure: true}, Controller: ctl, Poll: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g := grpc.NewServer()
		gs.Register(g)
		go g.Serve(lis)
		t.Cleanup(g.Stop)
		addrs[name] = lis.Addr().String()
	}
	return addrs
}

// lockedBuffer collects a subprocess's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) WriteLine(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(s + "\n")
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGNMICLI drives the demo mesh's controllers with the real gnmi_cli:
// an endpoint and a new peering configured by gNMI Sets reach the switches
// (pings pass), an ON_CHANGE subscription sees the peering go active, and
// invalid Sets are refused and change nothing.
func TestGNMICLI(t *testing.T) {
	cli := gnmiCLI{t: t, bin: buildGNMICLI(t, t.TempDir())}

	m, topo := startMemMesh(t)
	addr := serveGNMI(t, m)
	waitPing(t, m, "red-1", "10.2.0.10", 3)

	out, err := cli.run(addr["c2"], "-capabilities")
	if err != nil || !strings.Contains(out, "JSON_IETF") {
		t.Fatalf("gnmi_cli -capabilities: %v\n%s", err, out)
	}

	// (a) blue-2 (cabled on h3 port 4, not configured) is added on c2 by a
	// gNMI Set; the OHCs program it and red-1 reaches it.
	b2 := topo.VM("blue-2")
	if n, _ := m.Ping(t.Context(), "red-1", b2.IP, 1); n != 0 {
		t.Fatal("blue-2 answered before it was configured")
	}
	endpoint := fmt.Sprintf(`{"id":"blue-2","config":{"id":"blue-2","vpc":"blue","kind":"vm","ip":"%s","mac":"%s","host":"%s","port":%d}}`,
		b2.IP, b2.MAC, b2.Host, b2.Port)
	out, err = cli.run(addr["c2"], "-set", "-proto", textProto(&gnmi.SetRequest{Update: []*gnmi.Update{
		{Path: gpath(t, "/p4mesh/endpoints/endpoint[id=blue-2]"), Val: ietf(endpoint)},
	}}))
	if err != nil {
		t.Fatalf("gnmi_cli -set blue-2: %v\n%s", err, out)
	}
	waitPing(t, m, "red-1", "10.2.0.11", 3)
	for _, h := range []string{"h1", "h2", "h3"} {
		if !hasDestination(t, m, h, "10.2.0.11") {
			t.Errorf("%s has no vnet_destination entry for blue-2", h)
		}
	}

	// (b) a new peering, green–blue, made of one side on each controller.
	// An ON_CHANGE subscription on c1 to green's side sees it appear
	// (inactive: blue has not agreed) and go active when c2's side is set.
	if n, _ := m.Ping(t.Context(), "green-1", netip.MustParseAddr("10.2.0.10"), 1); n != 0 {
		t.Fatal("green-1 reached blue-1 before any peering")
	}
	const activePath = "/p4mesh/peerings/peering[vpc=green][peer-vpc=blue]/state/active"
	sub := &gnmi.SubscribeRequest{Request: &gnmi.SubscribeRequest_Subscribe{Subscribe: &gnmi.SubscriptionList{
		Prefix: &gnmi.Path{}, Mode: gnmi.SubscriptionList_STREAM, Encoding: gnmi.Encoding_JSON_IETF,
		Subscription: []*gnmi.Subscription{{Path: gpath(t, activePath), Mode: gnmi.SubscriptionMode_ON_CHANGE}},
	}}}
	sctx, stopSub := context.WithCancel(t.Context())
	defer stopSub()
	stream := exec.CommandContext(sctx, cli.bin, "-address", addr["c1"], "-insecure", "-logtostderr", "-display_type", "p", "-proto", textProto(sub))
	pipe, err := stream.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var streamOut lockedBuffer
	stream.Stderr = &bytes.Buffer{}
	if err := stream.Start(); err != nil {
		t.Fatal(err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			streamOut.WriteLine(sc.Text())
		}
	}()
	defer func() {
		stopSub()
		<-readDone
		stream.Wait()
	}()
	waitFor(t, 10*time.Second, "the subscription's sync_response", func() bool { return strings.Contains(streamOut.String(), "sync_response: true") })

	peering := func(vpc, peer string) string {
		return fmt.Sprintf(`{"vpc":%q,"peer-vpc":%q,"config":{"vpc":%q,"peer-vpc":%q,"export-policy":"all","preference":100}}`, vpc, peer, vpc, peer)
	}
	for _, side := range []struct{ ctl, vpc, peer string }{{"c1", "green", "blue"}, {"c2", "blue", "green"}} {
		p := fmt.Sprintf("/p4mesh/peerings/peering[vpc=%s][peer-vpc=%s]", side.vpc, side.peer)
		out, err := cli.run(addr[side.ctl], "-set", "-proto", textProto(&gnmi.SetRequest{Update: []*gnmi.Update{{Path: gpath(t, p), Val: ietf(peering(side.vpc, side.peer))}}}))
		if err != nil {
			t.Fatalf("gnmi_cli -set %s on %s: %v\n%s", p, side.ctl, err, out)
		}
		if side.ctl == "c1" {
			waitFor(t, 10*time.Second, "green–blue reported inactive", func() bool { return strings.Contains(streamOut.String(), `json_ietf_val: "false"`) })
		}
	}
	waitFor(t, 10*time.Second, "green–blue reported active", func() bool { return strings.Contains(streamOut.String(), `json_ietf_val: "true"`) })
	if s := streamOut.String(); strings.Index(s, `json_ietf_val: "false"`) > strings.Index(s, `json_ietf_val: "true"`) {
		t.Errorf("the subscription saw active before inactive:\n%s", s)
	}
	waitPing(t, m, "green-1", "10.2.0.10", 3)
	t.Logf("gnmi_cli ON_CHANGE stream:\n%s", streamOut.String())

	// (c) invalid Sets are refused, naming the path, and change nothing.
	timestamps := regexp.MustCompile(`(?m)^\s*timestamp:\s+\d+\n`)
	get := func() string {
		t.Helper()
		// The configuration: operational state (what the OHCs report
		// they programmed) moves on its own while the mesh converges.
		out, err := cli.run(addr["c1"], "-get", "-proto", textProto(&gnmi.GetRequest{Path: []*gnmi.Path{gpath(t, "/p4mesh")}, Encoding: gnmi.Encoding_JSON_IETF, Type: gnmi.GetRequest_CONFIG}))
		if err != nil {
			t.Fatalf("gnmi_cli -get /p4mesh: %v\n%s", err, out)
		}
		return timestamps.ReplaceAllString(out, "")
	}
	before := get()
	for _, bad := range []struct {
		name, path, json, want string
	}{
		{"overlapping subnet", "/p4mesh/vpcs/vpc[name=red]/config/subnets", `["10.1.0.0/16","10.1.128.0/17"]`, "overlaps"},
		{"unknown export policy", "/p4mesh/peerings/peering[vpc=red][peer-vpc=blue]/config/export-policy", `"nope"`, "nope"},
		{"bad prefix", "/p4mesh/vpcs/vpc[name=green]/config/subnets", `["10.3.0.1/16"]`, "10.3.0.1/16"},
	} {
		out, err := cli.run(addr["c1"], "-set", "-proto", textProto(&gnmi.SetRequest{Update: []*gnmi.Update{{Path: gpath(t, bad.path), Val: ietf(bad.json)}}}))
		if err == nil {
			t.Errorf("%s: gnmi_cli -set exited 0:\n%s", bad.name, out)
			continue
		}
		if !strings.Contains(out, "InvalidArgument") || !strings.Contains(out, bad.path) || !strings.Contains(out, bad.want) {
			t.Errorf("%s: gnmi_cli -set said\n%s\nwant InvalidArgument naming %s and %q", bad.name, out, bad.path, bad.want)
		}
	}
	if after := get(); after != before {
		t.Errorf("refused Sets changed what Get returns:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// And forwarding is as it was.
	waitPing(t, m, "red-1", "10.2.0.11", 3)
}

// TestGNMICreateVPCs creates two VPCs, their endpoints and a peering
// purely with gnmi_cli Sets (orange on c1, purple on c2; their VMs are
// cabled but no controller knows them), sees the OHCs program the switches
// and a ping pass, and reads the peering's state back as active.
func TestGNMICreateVPCs(t *testing.T) {
	cli := gnmiCLI{t: t, bin: buildGNMICLI(t, t.TempDir())}
	m, topo := startMemMesh(t)
	addr := serveGNMI(t, m)
	waitPing(t, m, "red-1", "10.2.0.10", 3)

	strs := func(ss ...string) *gnmi.TypedValue {
		var el []*gnmi.TypedValue
		for _, s := range ss {
			el = append(el, &gnmi.TypedValue{Value: &gnmi.TypedValue_StringVal{StringVal: s}})
		}
		return &gnmi.TypedValue{Value: &gnmi.TypedValue_LeaflistVal{LeaflistVal: &gnmi.ScalarArray{Element: el}}}
	}
	// The directory is the same on every controller: both learn who owns
	// the new VPCs.
	directory := []*gnmi.Update{
		{Path: gpath(t, "/p4mesh/directory/controllers/controller[name=c1]/config/vpcs"), Val: strs("red", "green", "orange")},
		{Path: gpath(t, "/p4mesh/directory/controllers/controller[name=c2]/config/vpcs"), Val: strs("blue", "purple")},
	}
	side := func(vpc string, vni int, subnet, peer string, vm demo.VM) []*gnmi.Update {
		return append(slices.Clone(directory),
			&gnmi.Update{Path: gpath(t, "/p4mesh/vpcs/vpc[name="+vpc+"]"),
				Val: ietf(fmt.Sprintf(`{"name":%q,"config":{"name":%q,"vni":%d,"subnets":[%q]}}`, vpc, vpc, vni, subnet))},
			&gnmi.Update{Path: gpath(t, "/p4mesh/endpoints/endpoint[id="+vm.ID+"]"),
				Val: ietf(fmt.Sprintf(`{"id":%q,"config":{"id":%q,"vpc":%q,"kind":"vm","ip":"%s","mac":"%s","host":%q,"port":%d}}`,
					vm.ID, vm.ID, vpc, vm.IP, vm.MAC, vm.Host, vm.Port))},
			&gnmi.Update{Path: gpath(t, "/p4mesh/peerings/peering[vpc="+vpc+"][peer-vpc="+peer+"]"),
				Val: ietf(fmt.Sprintf(`{"vpc":%q,"peer-vpc":%q,"config":{"vpc":%q,"peer-vpc":%q,"export-policy":"all"}}`, vpc, peer, vpc, peer))},
		)
	}
	for _, s := range []struct {
		ctl     string
		updates []*gnmi.Update
	}{
		{"c1", side("orange", 400, "10.4.0.0/16", "purple", topo.VM("orange-1"))},
		{"c2", side("purple", 500, "10.5.0.0/16", "orange", topo.VM("purple-1"))},
	} {
		if out, err := cli.run(addr[s.ctl], "-set", "-proto", textProto(&gnmi.SetRequest{Update: s.updates})); err != nil {
			t.Fatalf("gnmi_cli -set on %s: %v\n%s", s.ctl, err, out)
		}
	}
	waitPing(t, m, "orange-1", "10.5.0.10", 3)
	waitPing(t, m, "purple-1", "10.4.0.10", 3)
	// Nothing of the new pair leaks to red: orange and red are not peered.
	if n, _ := m.Ping(t.Context(), "red-1", netip.MustParseAddr("10.4.0.10"), 1); n != 0 {
		t.Error("red-1 reached orange-1, which it is not peered with")
	}
	waitFor(t, 10*time.Second, "orange–purple reported active", func() bool {
		out, err := cli.run(addr["c1"], "-get", "-proto", textProto(&gnmi.GetRequest{
			Path: []*gnmi.Path{gpath(t, "/p4mesh/peerings/peering[vpc=orange][peer-vpc=purple]/state/active")}, Encoding: gnmi.Encoding_JSON_IETF}))
		return err == nil && strings.Contains(out, "true")
	})
}

// TestProgrammedEntriesState: each host's OHC reports what it programmed,
// and the controller's gNMI state shows it per host, equal to what a
// P4Runtime read of the switch finds (plus the one default entry it sets).
func TestProgrammedEntriesState(t *testing.T) {
	m, _ := startMemMesh(t)
	addr := serveGNMI(t, m)
	waitPing(t, m, "red-1", "10.2.0.10", 3)
	conn, err := grpc.NewClient(addr["c1"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := gnmi.NewGNMIClient(conn)
	for _, h := range []string{"h1", "h3"} {
		// The OHC also sets local_host's default entry, which a wildcard
		// read leaves out.
		want := countEntries(t, m, h) + 1
		waitFor(t, 15*time.Second, h+"'s programmed-entries state", func() bool {
			resp, err := c.Get(t.Context(), &gnmi.GetRequest{Path: []*gnmi.Path{gpath(t, "/p4mesh/hosts/host[id="+h+"]/state/programmed-entries")}, Encoding: gnmi.Encoding_JSON_IETF})
			if err != nil {
				return false
			}
			for _, n := range resp.GetNotification() {
				for _, u := range n.GetUpdate() {
					if u.GetVal().GetUintVal() == uint64(want) {
						return true
					}
				}
			}
			return false
		})
	}
}
