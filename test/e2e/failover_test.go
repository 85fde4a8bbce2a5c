package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openconfig/gnmi/proto/gnmi"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/demo"
	"github.com/p4mesh/p4mesh/internal/etcdtest"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/store"
	"github.com/p4mesh/p4mesh/store/etcdstore"
)

// TestReplicaSetFailover runs controller c2 as three p4mesh-controller
// processes on an etcd (--store etcd) and c1 on bolt, peered, with one
// host (a p4mesh-switch and its OHC) holding an endpoint of each VPC. The
// leader of c2 is SIGKILLed: another replica leads within a few lease
// TTLs, the OHC resumes its watches there with no RESET and the switch
// loses no entry, and a gNMI Set on the new leader reaches the switch.
//
// Plaintext on loopback (no --tls-*): the mTLS channels are
// TestDaemonsMutualTLS's; the etcd client's TLS is not exercised here.
// No namespaces, so no running ping: the switch's entries stand for it.
func TestReplicaSetFailover(t *testing.T) {
	bin := buildDaemons(t)
	dir := t.TempDir()
	etcdAddr := etcdtest.Start(t)
	cli, err := etcdstore.NewClient(t.Context(), etcdstore.ClientConfig{Endpoints: []string{etcdAddr}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	c1Addr := freeAddr(t)
	var c2Addrs, c2GNMI []string
	for range 3 {
		c2Addrs, c2GNMI = append(c2Addrs, freeAddr(t)), append(c2GNMI, freeAddr(t))
	}
	topo := demo.DemoTopology([2]string{c1Addr, c2Addrs[0]})
	blue1, blue2, red1 := topo.VM("blue-1"), topo.VM("blue-2"), topo.VM("red-1")
	for _, c := range topo.Configs {
		for i := range c.Directory {
			if c.Directory[i].Name == "c2" {
				c.Directory[i].Address, c.Directory[i].Replicas = "", c2Addrs
			}
		}
		// Every endpoint on h1: red-1 (c1's) and blue-1 (c2's) share the
		// one switch.
		for i := range c.Endpoints {
			if c.Endpoints[i].ID == "blue-1" {
				c.Endpoints[i].Host, c.Endpoints[i].Port = "h1", 4
			}
		}
	}
	for _, name := range []string{"c1", "c2"} {
		if err := topo.Configs[name].SaveFile(filepath.Join(dir, name+".yaml")); err != nil {
			t.Fatal(err)
		}
	}

	daemon(t, filepath.Join(bin, "p4mesh-controller"), "c1", "--config", filepath.Join(dir, "c1.yaml"),
		"--data-dir", filepath.Join(dir, "c1"), "--listen", c1Addr, "--peer-grace", "2s")
	replicas := make([]*exec.Cmd, 3)
	exited := make([]<-chan error, 3)
	logs := make([]*lockedBuffer, 3)
	for i := range 3 {
		replicas[i], exited[i], logs[i] = process(t, filepath.Join(bin, "p4mesh-controller"), fmt.Sprint("c2 replica r", i),
			"--store", "etcd", "--etcd-endpoints", etcdAddr, "--config", filepath.Join(dir, "c2.yaml"),
			"--replica-id", fmt.Sprint("r", i), "--lease-ttl", "2s", "--listen", c2Addrs[i],
			"--gnmi-addr", c2GNMI[i], "--gnmi-insecure", "--peer-grace", "2s")
	}
	swAddr, ohcMetrics := freeAddr(t), freeAddr(t)
	daemon(t, filepath.Join(bin, "p4mesh-switch"), "switch h1", "--grpc-addr", swAddr, "--mem-ports", "1,2,3,4,5")
	daemon(t, filepath.Join(bin, "p4mesh-ohc"), "ohc h1", "--host", "h1", "--controller", c1Addr,
		"--controller", strings.Join(c2Addrs, ","), "--switch", swAddr, "--metrics-addr", ohcMetrics)

	// Converged: h1 holds red-1, and blue-1 twice: in blue and, peered,
	// in red.
	plain := grpc.WithTransportCredentials(insecure.NewCredentials())
	waitUntil(t, 60*time.Second, "h1's switch holds red-1 and blue-1 in both VPCs", func() (bool, string) {
		dests, err := switchDestinations(t.Context(), swAddr, plain)
		return err == nil && count(dests, red1.IP) >= 1 && count(dests, blue1.IP) >= 2, fmt.Sprint(dests, err)
	})
	// Quiet: the shard's revision has not moved for a while, so that
	// every stream was told it (PROGRESS, at most one a second). A client
	// a leader had not yet told its last revision resumes below the new
	// leader's tables and gets RESET: a real gap, but not this test's.
	c2, err := etcdstore.New(cli, "c2", etcdstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	var since time.Time
	waitUntil(t, 30*time.Second, "c2's revision stays put for 3s", func() (bool, string) {
		_, rev, err := c2.Load(t.Context())
		if err != nil {
			return false, err.Error()
		}
		if rev != last {
			last, since = rev, time.Now()
		}
		return time.Since(since) > 3*time.Second, fmt.Sprint("revision ", rev)
	})
	before, err := allSwitchEntries(t.Context(), swAddr)
	if err != nil {
		t.Fatal(err)
	}

	leader := leaderIndex(t, cli)
	// Other shards commit to the same etcd: its revision moves on, the
	// shard's must not.
	other, err := etcdstore.New(cli, "c3", etcdstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := other.Commit(t.Context(), []store.Op{{Key: fmt.Sprint(i), Value: []byte("x")}}); err != nil {
			t.Fatal(err)
		}
	}
	resets := ohcResets(t, ohcMetrics)
	replicas[leader].Process.Signal(syscall.SIGKILL)

	// Another replica leads, and only it listens: its API (and gNMI)
	// port answers.
	var next int
	waitUntil(t, 5*2*time.Second+10*time.Second, "another replica of c2 leads and listens", func() (bool, string) {
		id, err := etcdstore.Leader(t.Context(), cli, "c2")
		if err != nil || id == "" || id == fmt.Sprint("r", leader) {
			return false, fmt.Sprint(id, err)
		}
		fmt.Sscanf(id, "r%d", &next)
		for _, a := range []string{c2Addrs[next], c2GNMI[next]} {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err != nil {
				return false, err.Error()
			}
			c.Close()
		}
		return true, ""
	})
	for i := range 3 {
		if i == next || i == leader {
			continue
		}
		if c, err := net.DialTimeout("tcp", c2Addrs[i], time.Second); err == nil {
			c.Close()
			t.Errorf("standby r%d listens on the API address %s", i, c2Addrs[i])
		}
	}

	// A Set on the new leader reaches the switch through the resumed
	// watches.
	conn, err := grpc.NewClient(c2GNMI[next], plain)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	val := fmt.Appendf(nil, `{"id":"blue-2","vpc":"blue","kind":"vm","ip":%q,"mac":%q,"host":"h1","port":5}`, blue2.IP, blue2.MAC)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	_, err = gnmi.NewGNMIClient(conn).Set(ctx, &gnmi.SetRequest{Update: []*gnmi.Update{{
		Path: &gnmi.Path{Elem: []*gnmi.PathElem{{Name: "p4mesh"}, {Name: "endpoints"}, {Name: "endpoint", Key: map[string]string{"id": "blue-2"}}, {Name: "config"}}},
		Val:  &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: val}},
	}}})
	cancel()
	if err != nil {
		t.Fatalf("gNMI Set on the new leader r%d: %v", next, err)
	}
	waitUntil(t, 30*time.Second, "blue-2, set on the new leader, on h1's switch", func() (bool, string) {
		dests, err := switchDestinations(t.Context(), swAddr, plain)
		return err == nil && count(dests, blue2.IP) >= 1, fmt.Sprint(dests, err)
	})

	after, err := allSwitchEntries(t.Context(), swAddr)
	if err != nil {
		t.Fatal(err)
	}
	for k := range before {
		if !after[k] {
			t.Errorf("entry gone from the switch after the failover: %s", k)
		}
	}
	if got := ohcResets(t, ohcMetrics); got != resets {
		t.Errorf("the OHC's watches were RESET across the failover: p4mesh_ohc_watch_events_total{type=\"reset\"} %v, was %v", got, resets)
	}
	if err := <-exited[leader]; err == nil {
		t.Errorf("the killed leader r%d exited cleanly", leader)
	}

	// Deposed: the new leader's lease is revoked behind its back (as
	// when etcd expired it during a pause). It must stop listening and
	// exit with an error, and the last replica take over.
	resp, err := cli.Get(t.Context(), etcdstore.Root+"c2/replicas/"+fmt.Sprint("r", next))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("r%d's directory entry: %v %v", next, resp, err)
	}
	if _, err := cli.Revoke(t.Context(), clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited[next]:
		if err == nil {
			t.Errorf("deposed leader r%d exited with status 0", next)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("deposed leader r%d still running", next)
	}
	if !strings.Contains(logs[next].String(), "deposed: no longer the shard's leader") {
		t.Errorf("deposed leader r%d did not say why it stopped", next)
	}
	if c, err := net.DialTimeout("tcp", c2Addrs[next], time.Second); err == nil {
		c.Close()
		t.Errorf("deposed leader r%d's API address still answers", next)
	}
	third := 3 - leader - next
	waitUntil(t, 30*time.Second, "the last replica of c2 leads and listens", func() (bool, string) {
		c, err := net.DialTimeout("tcp", c2Addrs[third], time.Second)
		if err != nil {
			return false, err.Error()
		}
		c.Close()
		return true, ""
	})
}

// process starts bin with args until the test ends (SIGTERM, then wait,
// then kill), shows its output if the test failed, and returns its
// command, its exit and its output, for a test that kills it.
func process(t *testing.T, bin, name string, args ...string) (*exec.Cmd, <-chan error, *lockedBuffer) {
	t.Helper()
	out := &lockedBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited, exited := make(chan struct{}), make(chan error, 1)
	go func() { exited <- cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-waited
		}
		if t.Failed() {
			t.Logf("%s:\n%s", name, out.String())
		}
	})
	return cmd, exited, out
}

func waitUntil(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s (last: %s)", limit, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func count(as []netip.Addr, a netip.Addr) int {
	n := 0
	for _, x := range as {
		if x == a {
			n++
		}
	}
	return n
}

// leaderIndex waits for c2 to have a leader and returns its index.
func leaderIndex(t *testing.T, cli *clientv3.Client) int {
	var i int
	waitUntil(t, 30*time.Second, "c2 has a leader", func() (bool, string) {
		id, err := etcdstore.Leader(t.Context(), cli, "c2")
		if err != nil || id == "" {
			return false, fmt.Sprint(err)
		}
		_, err = fmt.Sscanf(id, "r%d", &i)
		return err == nil, id
	})
	return i
}

// ohcResets reads the OHC's count of RESET watch events.
func ohcResets(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `p4mesh_ohc_watch_events_total{type="reset"} `); ok {
			return v
		}
	}
	t.Fatalf("no p4mesh_ohc_watch_events_total{type=\"reset\"} at %s", addr)
	return ""
}

// switchEntries reads every table entry of the switch at addr, each as
// its table and match (what identifies it) and its action.
func allSwitchEntries(ctx context.Context, addr string) (map[string]bool, error) {
	info, err := p4.P4Info()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	out := map[string]bool{}
	for _, tbl := range info.GetTables() {
		rc, err := p4v1.NewP4RuntimeClient(conn).Read(ctx, &p4v1.ReadRequest{DeviceId: 1, Entities: []*p4v1.Entity{
			{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{TableId: tbl.GetPreamble().GetId()}}}}})
		if err != nil {
			return nil, err
		}
		for {
			resp, err := rc.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, err
			}
			for _, e := range resp.GetEntities() {
				te := e.GetTableEntry()
				b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&p4v1.TableEntry{
					TableId: te.GetTableId(), Match: te.GetMatch(), Priority: te.GetPriority(), Action: te.GetAction()})
				if err != nil {
					return nil, err
				}
				out[fmt.Sprintf("%s %x", tbl.GetPreamble().GetName(), b)] = true
			}
		}
	}
	return out, nil
}
