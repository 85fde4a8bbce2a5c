package e2e

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"

	"github.com/p4mesh/p4mesh/demo"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/internal/testenv"
	"github.com/p4mesh/p4mesh/mtls"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

// These tests run p4mesh as an operator deploys it: the daemons as
// processes built from cmd/, their certificates from `p4meshctl pki lab`,
// mutual TLS on every channel.

// buildDaemons builds the four commands into a temporary directory.
func buildDaemons(t *testing.T) string {
	t.Helper()
	goBin := testenv.NeedTool(t, "go", "building the daemons")
	dir := t.TempDir()
	args := []string{"build", "-o", dir}
	for _, c := range []string{"p4mesh-controller", "p4mesh-switch", "p4mesh-ohc", "p4meshctl"} {
		args = append(args, "github.com/p4mesh/p4mesh/cmd/"+c)
	}
	if out, err := exec.Command(goBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// daemon starts bin with args until the test ends (SIGTERM, then wait),
// and shows its output if the test failed.
func daemon(t *testing.T, bin, name string, args ...string) *lockedBuffer {
	t.Helper()
	_, _, out := process(t, bin, name, args...)
	return out
}

// tlsArgs are the --tls-* flags for the lab certificate of kind-name.
func tlsArgs(pkiDir string, kind identity.Kind, name string) []string {
	base := filepath.Join(pkiDir, string(kind)+"-"+name)
	return []string{"--tls-cert", base + ".pem", "--tls-key", base + ".key", "--tls-ca", filepath.Join(pkiDir, "ca.pem")}
}

// switchDestinations reads the vnet_destination entries of the switch at
// addr over P4Runtime, with creds, as the addresses they match.
func switchDestinations(ctx context.Context, addr string, dial grpc.DialOption) ([]netip.Addr, error) {
	info, _ := p4.P4Info()
	s, _ := p4rt.NewSchema(info)
	tbl, err := s.Table("vnet_destination")
	if err != nil {
		return nil, err
	}
	field, err := tbl.Field("dst_ip")
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(addr, dial)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	rc, err := p4v1.NewP4RuntimeClient(conn).Read(ctx, &p4v1.ReadRequest{DeviceId: 1, Entities: []*p4v1.Entity{
		{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{TableId: tbl.GetPreamble().GetId()}}}}})
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for {
		resp, err := rc.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		for _, e := range resp.GetEntities() {
			for _, f := range e.GetTableEntry().GetMatch() {
				if f.GetFieldId() == field.GetId() {
					if a, ok := netip.AddrFromSlice(f.GetExact().GetValue()); ok {
						out = append(out, a)
					}
				}
			}
		}
	}
}

// TestDaemonsMutualTLS runs the demo topology as processes with mutual TLS
// on every channel, certificates from `p4meshctl pki lab`: the OHCs program
// their switches across the peering, an operator reads what they report
// over gNMI, and the identities that may not are refused.
func TestDaemonsMutualTLS(t *testing.T) {
	bin := buildDaemons(t)
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	ctlAddrs := [2]string{freeAddr(t), freeAddr(t)}
	gnmiAddr := freeAddr(t)
	topo := demo.DemoTopology(ctlAddrs)
	var cfgArgs []string
	for _, name := range []string{"c1", "c2"} {
		path := filepath.Join(dir, name+".yaml")
		if err := topo.Configs[name].SaveFile(path); err != nil {
			t.Fatal(err)
		}
		cfgArgs = append(cfgArgs, "--config", path)
	}
	ctl := filepath.Join(bin, "p4meshctl")
	if out, err := exec.Command(ctl, append([]string{"pki", "lab", "--dir", pkiDir}, cfgArgs...)...).CombinedOutput(); err != nil {
		t.Fatalf("p4meshctl pki lab: %v\n%s", err, out)
	}

	for i, name := range []string{"c1", "c2"} {
		args := []string{"--config", filepath.Join(dir, name+".yaml"), "--data-dir", filepath.Join(dir, name), "--listen", ctlAddrs[i], "--peer-grace", "2s"}
		if name == "c1" {
			args = append(args, "--gnmi-addr", gnmiAddr)
		}
		daemon(t, filepath.Join(bin, "p4mesh-controller"), name, append(args, tlsArgs(pkiDir, identity.Controller, name)...)...)
	}
	switchAddrs := map[string]string{}
	for _, h := range topo.Hosts {
		switchAddrs[h.ID] = freeAddr(t)
		daemon(t, filepath.Join(bin, "p4mesh-switch"), "switch "+h.ID,
			append([]string{"--grpc-addr", switchAddrs[h.ID], "--mem-ports", "1,2,3,4"}, tlsArgs(pkiDir, identity.Host, h.ID)...)...)
	}
	for _, h := range topo.Hosts {
		daemon(t, filepath.Join(bin, "p4mesh-ohc"), "ohc "+h.ID,
			append([]string{"--host", h.ID, "--controller", ctlAddrs[0], "--controller", ctlAddrs[1], "--switch", switchAddrs[h.ID]}, tlsArgs(pkiDir, identity.Host, h.ID)...)...)
	}

	// h1 (red-1) gets blue-1 (c2's) across the peering: every channel
	// worked (c1 and c2 following each other, h1's OHC pulling from both,
	// programming its switch). The read is an operator's.
	admin, err := mtls.Load(mtls.Files{Cert: filepath.Join(pkiDir, "operator-admin.pem"), Key: filepath.Join(pkiDir, "operator-admin.key"), CA: filepath.Join(pkiDir, "ca.pem")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	asAdmin := grpc.WithTransportCredentials(mtls.ClientCredentials(admin, nil))
	blue1 := topo.VM("blue-1").IP
	deadline := time.Now().Add(60 * time.Second)
	for {
		dests, err := switchDestinations(t.Context(), switchAddrs["h1"], asAdmin)
		if err == nil && containsAddr(dests, blue1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("h1's switch never got blue-1 (%s): %v, %v", blue1, dests, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	gnmi := func(kind identity.Kind, name string, args ...string) (string, error) {
		full := append([]string{args[0], "--target", gnmiAddr, "--timeout", "10s"}, tlsArgs(pkiDir, kind, name)...)
		out, err := exec.Command(ctl, append(full, args[1:]...)...).CombinedOutput()
		return string(out), err
	}
	// The operator reads what h1's OHC reported, over gNMI: the report
	// went through the host's authenticated channel.
	for {
		out, err := gnmi(identity.Operator, "admin", "get", "/p4mesh/hosts/host[id=h1]/state/programmed-entries")
		if err == nil && !strings.Contains(out, `": 0`) && strings.Contains(out, "programmed-entries") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("operator get of h1's programmed entries: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, err := gnmi(identity.Viewer, "viewer", "get", "/p4mesh/vpcs/vpc[name=red]/config/vni"); err != nil || !strings.Contains(out, "100") {
		t.Fatalf("viewer get: %v\n%s", err, out)
	}
	for _, c := range []struct {
		kind       identity.Kind
		name, op   string
		args, want []string
	}{
		{identity.Viewer, "viewer", "set", []string{"--update", "/p4mesh/vpcs/vpc[name=red]/config/vni=101"}, []string{"PermissionDenied", "read-only"}},
		{identity.Host, "h1", "get", []string{"/p4mesh/vpcs"}, []string{"PermissionDenied", "operator and viewer"}},
		{identity.Controller, "c2", "set", []string{"--update", "/p4mesh/vpcs/vpc[name=red]/config/vni=101"}, []string{"PermissionDenied"}},
	} {
		out, err := gnmi(c.kind, c.name, append([]string{c.op}, c.args...)...)
		for _, w := range c.want {
			if err == nil || !strings.Contains(out, w) {
				t.Errorf("%s %s as %s/%s: %v, %q; want refused with %q", c.op, c.args, c.kind, c.name, err, out, w)
			}
		}
	}
	if out, err := gnmi(identity.Operator, "admin", "get", "/p4mesh/vpcs/vpc[name=red]/config/vni"); err != nil || !strings.Contains(out, "100") {
		t.Fatalf("the refused Sets changed red's VNI: %v\n%s", err, out)
	}

	// Rotation: a new certificate for c1 on disk is what the next
	// connection to its gNMI port sees, with no restart.
	serial := func() string {
		cfg := &tls.Config{InsecureSkipVerify: true}
		conn, err := tls.Dial("tcp", gnmiAddr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	if out, err := exec.Command(ctl, "pki", "issue", "--dir", pkiDir, "--san", "127.0.0.1", "controller/c1").CombinedOutput(); err != nil {
		t.Fatalf("p4meshctl pki issue: %v\n%s", err, out)
	}
	if after := serial(); after == before {
		t.Fatalf("c1 still presents certificate %s after it was reissued on disk", before)
	}
	if out, err := gnmi(identity.Operator, "admin", "get", "/p4mesh/vpcs/vpc[name=red]/config/vni"); err != nil || !strings.Contains(out, "100") {
		t.Fatalf("get after rotation: %v\n%s", err, out)
	}

	// An OHC whose certificate is another host's does not start.
	out, err := exec.Command(filepath.Join(bin, "p4mesh-ohc"), append([]string{"--host", "h2", "--controller", ctlAddrs[0], "--switch", switchAddrs["h2"]},
		tlsArgs(pkiDir, identity.Host, "h1")...)...).CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), "but this OHC is --host h2") {
		t.Fatalf("OHC with h1's certificate as h2: exit %d\n%s", code, out)
	}
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
