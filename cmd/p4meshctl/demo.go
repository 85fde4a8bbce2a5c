package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/demo"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

const (
	pingCount = 3
	// convergeTimeout bounds the wait for the first ping across the
	// peering; reachTimeout the wait for any later expected reply.
	convergeTimeout = 20 * time.Second
	reachTimeout    = 10 * time.Second
)

// demoRun is one run of `p4meshctl demo`: the mesh, its fabric, and the
// expectations checked so far.
type demoRun struct {
	w      io.Writer
	mesh   *demo.Mesh
	fabric demo.Fabric
	netns  *demo.NetnsFabric // nil on the in-memory fabric
	schema *p4rt.Schema
	// vpcByVNI names the VPCs, for the tables' summary.
	vpcByVNI map[uint64]string
	checked  int
	failed   []string
}

// demoCmd runs the demo topology (controllers c1 and c2, hosts h1..h3, VPCs
// red, blue and green) on network namespaces when it can, else on
// in-memory ports, and shows that peering, isolation, limited pull and a
// live change behave as they should.
func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	keep := fs.Bool("keep", false, "after the checks, keep the mesh running until Ctrl-C to ping by hand")
	inMemory := fs.Bool("in-memory", false, "use in-memory ports even where network namespaces are available")
	level := fs.String("log-level", "error", "log level of the controllers, switches and OHCs (to stderr): debug, info, warn or error")
	write := fs.String("write", "", "do not run: write the demo's controller configurations (c1.yaml, c2.yaml) and its topology and expected pings (topology.json, for deploy/mininet) into this directory")
	ctlAddrs := fs.String("controller-addrs", "127.0.0.1:7001,127.0.0.1:7002", "with --write, the gRPC addresses of c1 and c2, comma-separated")
	var configs configFiles
	fs.Var(&configs, "config", "with --write, lay out a lab of the user's configuration instead of the demo's: a controller's YAML configuration, once per controller; their addresses move to free loopback ports")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	if len(configs) > 0 && *write == "" {
		return fmt.Errorf("demo: --config needs --write DIR")
	}
	if len(configs) > 0 {
		return writeLab(*write, configs, stdout)
	}
	if *write != "" {
		return writeDemo(*write, *ctlAddrs, stdout)
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	w := stdout
	fmt.Fprintln(w, "p4mesh demo: two controllers, three hosts, VPCs red and blue peered, green not")
	fmt.Fprintln(w)

	// c1's BGP neighbor, the on-prem router behind red's VPN attachment,
	// is known once the router runs, after the fabric is made.
	var peer netip.AddrPort
	build := func(addrs [2]string) *demo.Topology {
		t := demo.DemoTopology(addrs)
		demo.WithOnPrem(t, peer)
		return t
	}
	// The fabric needs the hosts, VMs and router cables only, which do
	// not depend on the controllers' addresses or the router's.
	topo := build([2]string{})
	var fabric demo.Fabric
	var nsf *demo.NetnsFabric
	switch err := demo.NetnsAvailable(); {
	case *inMemory:
		fmt.Fprintln(w, "--in-memory: running the topology in-process on in-memory ports")
	case err != nil:
		fmt.Fprintf(w, "%v: running the same topology in-process on in-memory ports\n", err)
	default:
		// Namespaces left by a killed run are deleted with a warning,
		// which the user should see whatever the components' level.
		flog := log
		if !log.Enabled(ctx, slog.LevelWarn) {
			flog, _ = newLogger(stderr, "warn")
		}
		if nsf, err = demo.NewNetnsFabric(topo, flog); err != nil {
			fmt.Fprintf(w, "network namespaces failed (%v): running the same topology in-process on in-memory ports\n", err)
			nsf = nil
		}
	}
	if nsf != nil {
		fabric = nsf
	} else {
		fabric = demo.NewMemFabric(topo)
	}
	defer fabric.Close()
	fmt.Fprintf(w, "fabric: %s\n", fabric.Name())

	// The on-prem router: FRR's bgpd in the router's namespace where it
	// can run, else a GoBGP server in this process on loopback.
	var router demo.OnPremRouter
	if nsf != nil {
		err := demo.FRRAvailable()
		if err == nil {
			var r *demo.FRRRouter
			if r, err = demo.StartFRR(nsf.RouterNamespace("red-onprem")); err == nil {
				router = r
			}
		}
		if err != nil {
			fmt.Fprintf(w, "%v: the on-prem router is GoBGP in this process\n", err)
		}
	}
	if router == nil {
		r, err := demo.StartGoBGPRouter(ctx, netip.MustParseAddr("127.0.0.2"))
		if err != nil {
			return err
		}
		router = r
	}
	defer router.Close()
	peer = router.Addr()
	fmt.Fprintf(w, "on-prem router: %s\n\n", router.Describe())

	dir, err := os.MkdirTemp("", "p4mesh-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	m, err := demo.Start(ctx, demo.Options{Fabric: fabric, DataDir: dir, Logger: log, Topology: build})
	if err != nil {
		return fmt.Errorf("start the mesh: %w", err)
	}
	defer m.Close()
	fmt.Fprintf(w, "security: mutual TLS on every channel (controllers, OHCs, switches); certificates of a lab CA in %s, as `p4meshctl pki lab` makes them\n\n", m.PKI.Dir)

	info, err := p4.P4Info()
	if err != nil {
		return err
	}
	s, err := p4rt.NewSchema(info)
	if err != nil {
		return err
	}
	d := &demoRun{w: w, mesh: m, fabric: fabric, netns: nsf, schema: s, vpcByVNI: map[uint64]string{}}
	for _, c := range m.Topology.Configs {
		for _, v := range c.VPCs {
			d.vpcByVNI[uint64(v.VNI)] = v.Name
		}
	}

	d.printTopology()
	if err := d.converge(ctx); err != nil {
		return err
	}
	d.printPeerings()
	if err := d.printTables(ctx); err != nil {
		return err
	}
	if err := d.pings(ctx); err != nil {
		return err
	}
	if err := d.onPrem(ctx, router); err != nil {
		return err
	}

	fmt.Fprintln(w)
	if len(d.failed) == 0 {
		fmt.Fprintf(w, "All %d expectations held.\n", d.checked)
	} else {
		fmt.Fprintf(w, "%d of %d expectations FAILED:\n", len(d.failed), d.checked)
		for _, f := range d.failed {
			fmt.Fprintf(w, "  ✗ %s\n", f)
		}
	}
	if *keep {
		d.printByHand()
		<-ctx.Done()
		fmt.Fprintln(w, "\nstopping")
	}
	if len(d.failed) > 0 {
		return fmt.Errorf("demo: %d of %d expectations failed", len(d.failed), d.checked)
	}
	return nil
}

// check records one expectation and prints it with its mark.
func (d *demoRun) check(tw io.Writer, ok bool, line string) {
	d.checked++
	mark := "✓"
	if !ok {
		mark = "✗"
		d.failed = append(d.failed, strings.Join(strings.Fields(line), " "))
	}
	fmt.Fprintf(tw, "  %s %s\n", mark, line)
}

func (d *demoRun) printTopology() {
	t := d.mesh.Topology
	w := d.w
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "Controllers (each owns its VPCs and serves its hosts' OHCs over gRPC)")
	for _, name := range slices.Sorted(maps.Keys(t.Configs)) {
		c := t.Configs[name]
		var owns []string
		for _, v := range c.VPCs {
			owns = append(owns, fmt.Sprintf("%s (VNI %d, %s)", v.Name, v.VNI, prefixes(v.Subnets)))
		}
		row(tw, name, addressOf(c, name), "owns "+strings.Join(owns, ", "))
	}
	tw.Flush()

	fmt.Fprintln(w, "\nHosts (a p4mesh-switch and an OHC each; port 1 is the uplink to the underlay)")
	for _, h := range t.Hosts {
		var vms []string
		for _, v := range t.VMs {
			if v.Host == h.ID {
				vms = append(vms, v.ID)
			}
		}
		ns := ""
		if d.netns != nil {
			ns = "netns " + d.netns.HostNamespace(h.ID)
		}
		row(tw, h.ID, "underlay "+h.IP.String(), h.MAC.String(), "VMs "+strings.Join(vms, ", "), ns)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nVMs")
	configured := map[string]bool{}
	for _, c := range t.Configs {
		for _, e := range c.Endpoints {
			configured[e.ID] = true
		}
	}
	hdr := []string{"VM", "IP", "VPC", "HOST", "PORT"}
	if d.netns != nil {
		hdr = append(hdr, "NETNS")
	}
	row(tw, hdr...)
	for _, v := range t.VMs {
		cells := []string{v.ID, netip.PrefixFrom(v.IP, v.Prefix.Bits()).String(), v.VPC, v.Host, fmt.Sprint(v.Port)}
		if d.netns != nil {
			cells = append(cells, d.netns.Namespace(v.ID))
		}
		if !configured[v.ID] {
			cells = append(cells, "cabled, not configured yet")
		}
		row(tw, cells...)
	}
	tw.Flush()
}

// row writes one tabwriter row, indented, without trailing empty cells
// (they would pad the line with spaces).
func row(tw io.Writer, cells ...string) {
	for len(cells) > 0 && cells[len(cells)-1] == "" {
		cells = cells[:len(cells)-1]
	}
	fmt.Fprintf(tw, "  %s\n", strings.Join(cells, "\t"))
}

func addressOf(c *controller.Config, name string) string {
	for _, e := range c.Directory {
		if e.Name == name {
			return strings.Join(e.Addresses(), ",")
		}
	}
	return "?"
}

func prefixes(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, " ")
}

// converge waits for red-1 to reach blue-1: by then both controllers are
// peered and h1's and h2's OHCs have programmed their switches. It then
// waits for every switch's tables to settle, so the counts printed next
// are the converged ones.
func (d *demoRun) converge(ctx context.Context) error {
	fmt.Fprintf(d.w, "\nWaiting for the mesh to converge (ping red-1 → blue-1, up to %s) ... ", convergeTimeout)
	start := time.Now()
	got, err := d.pingUntil(ctx, "red-1", d.mesh.Topology.VM("blue-1").IP, 1, convergeTimeout)
	if err != nil {
		return err
	}
	if got == 0 {
		fmt.Fprintf(d.w, "no reply after %s\n", convergeTimeout)
		return nil
	}
	prev := ""
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		counts, err := d.entryCounts()
		if err != nil {
			return err
		}
		if counts == prev {
			break
		}
		prev = counts
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintf(d.w, "converged in %.1fs\n", time.Since(start).Seconds())
	return nil
}

// entryCounts summarises every host's table sizes, to tell when they stop
// changing.
func (d *demoRun) entryCounts() (string, error) {
	var b strings.Builder
	for _, h := range d.mesh.Topology.Hosts {
		es, err := d.mesh.Entries(h.ID)
		if err != nil {
			return "", err
		}
		for _, name := range slices.Sorted(maps.Keys(es)) {
			fmt.Fprintf(&b, "%s/%s=%d ", h.ID, name, len(es[name]))
		}
	}
	return b.String(), nil
}

func (d *demoRun) printPeerings() {
	fmt.Fprintln(d.w, "\nPeerings, as each controller reports them")
	tw := tabwriter.NewWriter(d.w, 0, 4, 2, ' ', 0)
	for _, name := range slices.Sorted(maps.Keys(d.mesh.Controllers)) {
		ps := d.mesh.Controllers[name].Peerings()
		slices.SortFunc(ps, func(a, b controller.PeeringStatus) int {
			return strings.Compare(a.VPC+"/"+a.PeerVPC, b.VPC+"/"+b.PeerVPC)
		})
		if len(ps) == 0 {
			row(tw, name, "(none)")
		}
		for _, p := range ps {
			state := "active"
			if !p.Active {
				state = "INACTIVE"
			}
			reason := p.Reason
			if reason != "" {
				reason = "(" + reason + ")"
			}
			row(tw, name, p.VPC+" → "+p.PeerVPC, state, reason)
		}
	}
	tw.Flush()
}

// printTables prints, per host, how many entries each table holds and
// which VPCs they are about: a host holds what its own VMs can reach,
// never a VPC they are not peered with.
func (d *demoRun) printTables(ctx context.Context) error {
	t := d.mesh.Topology
	fmt.Fprintln(d.w, "\nSwitch tables: entries per table, read back over P4Runtime")
	tw := tabwriter.NewWriter(d.w, 0, 4, 2, ' ', 0)
	hosts := make([]map[string][]*p4v1.TableEntry, len(t.Hosts))
	hdr := []string{"TABLE"}
	for i, h := range t.Hosts {
		es, err := d.mesh.Entries(h.ID)
		if err != nil {
			return fmt.Errorf("read %s's tables: %w", h.ID, err)
		}
		hosts[i] = es
		hdr = append(hdr, fmt.Sprintf("%4s", h.ID))
	}
	row(tw, hdr...)
	totals := make([]int, len(t.Hosts))
	for _, tbl := range d.schema.Tables() {
		if len(tbl.GetMatchFields()) == 0 {
			continue // default action only: nothing to count
		}
		alias := tbl.GetPreamble().GetAlias()
		cells := []string{alias}
		for i := range t.Hosts {
			n := len(hosts[i][alias])
			totals[i] += n
			cells = append(cells, fmt.Sprintf("%4d", n))
		}
		row(tw, cells...)
	}
	cells := []string{"total"}
	for _, n := range totals {
		cells = append(cells, fmt.Sprintf("%4d", n))
	}
	row(tw, cells...)
	tw.Flush()

	fmt.Fprintln(d.w, "\nWhat each switch holds, by VPC (limited pull: its VMs' VPCs and their peers, nothing else)")
	tw = tabwriter.NewWriter(d.w, 0, 4, 2, ' ', 0)
	for i, h := range t.Hosts {
		vnis := d.vnis(hosts[i])
		var names []string
		for _, v := range slices.Sorted(maps.Keys(vnis)) {
			names = append(names, fmt.Sprintf("%s %d", d.vpcName(v), vnis[v]))
		}
		var local []string
		for _, v := range t.VMs {
			if v.Host == h.ID && d.configured(v.ID) && !slices.Contains(local, v.VPC) {
				local = append(local, v.VPC)
			}
		}
		row(tw, h.ID, "VMs in "+strings.Join(local, ", "), "entries about "+strings.Join(names, ", "))
	}
	tw.Flush()
	green := d.vniOf("green")
	for _, h := range []string{"h1", "h2"} {
		i := slices.IndexFunc(t.Hosts, func(x demo.Host) bool { return x.ID == h })
		n := d.vnis(hosts[i])[green]
		d.check(d.w, n == 0, fmt.Sprintf("%s holds nothing of green (no VM of a VPC peered with green): expected 0 entries, got %d", h, n))
	}
	return nil
}

func (d *demoRun) configured(vm string) bool {
	for _, c := range d.mesh.Topology.Configs {
		for _, e := range c.Endpoints {
			if e.ID == vm {
				return true
			}
		}
	}
	return false
}

func (d *demoRun) vniOf(vpc string) uint64 {
	for v, name := range d.vpcByVNI {
		if name == vpc {
			return v
		}
	}
	return 0
}

func (d *demoRun) vpcName(vni uint64) string {
	if n, ok := d.vpcByVNI[vni]; ok {
		return n
	}
	return fmt.Sprintf("VNI %d", vni)
}

// vnis counts, per VNI, the entries that name it: as a match field "vni"
// or an action parameter "vni" or "dst_vni", resolved through the P4Info.
func (d *demoRun) vnis(es map[string][]*p4v1.TableEntry) map[uint64]int {
	out := map[uint64]int{}
	for name, list := range es {
		tbl, err := d.schema.Table(name)
		if err != nil {
			continue
		}
		for _, e := range list {
			seen := map[uint64]bool{}
			for _, m := range e.GetMatch() {
				if f, err := tbl.FieldByID(m.GetFieldId()); err == nil && f.GetName() == "vni" {
					seen[number(m.GetExact().GetValue())] = true
				}
			}
			if a := e.GetAction().GetAction(); a != nil {
				if act, err := d.schema.ActionByID(a.GetActionId()); err == nil {
					for _, p := range a.GetParams() {
						if ap, err := act.ParamByID(p.GetParamId()); err == nil && (ap.GetName() == "vni" || ap.GetName() == "dst_vni") {
							seen[number(p.GetValue())] = true
						}
					}
				}
			}
			for v := range seen {
				out[v]++
			}
		}
	}
	return out
}

func number(b []byte) uint64 { return new(big.Int).SetBytes(b).Uint64() }

// pingUntil pings until count of count replies come back or timeout, and
// returns the last attempt's replies. Only ping failing to run, or ctx
// ending, is an error.
func (d *demoRun) pingUntil(ctx context.Context, from string, dst netip.Addr, count int, timeout time.Duration) (int, error) {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	got := 0
	for {
		n, err := d.mesh.Ping(tctx, from, dst, count)
		switch {
		case ctx.Err() != nil:
			return got, ctx.Err()
		case tctx.Err() != nil:
			return got, nil
		case err != nil:
			return 0, err
		}
		if got = n; got == count {
			return got, nil
		}
		select {
		case <-tctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type pingCase struct {
	from, to string
	why      string
	reply    bool
}

// demoPings are what the demo expects of the topology's VMs; the Mininet
// lab (demo --write) checks the same.
var demoPings = []pingCase{
	{"red-1", "blue-1", "across the red–blue peering", true},
	{"red-1", "red-2", "within red", true},
	{"blue-1", "red-1", "across the peering, the other way", true},
	{"red-1", "green-1", "green is not peered with red", false},
}

func (d *demoRun) pings(ctx context.Context) error {
	t := d.mesh.Topology
	how := "through the in-memory ports"
	if d.netns != nil {
		how = "the kernel's ping in each VM's namespace"
	}
	fmt.Fprintf(d.w, "\nPings (%d echo requests each, %s)\n", pingCount, how)
	tw := tabwriter.NewWriter(d.w, 0, 4, 2, ' ', 0)
	for _, c := range demoPings {
		if err := d.ping(ctx, tw, c); err != nil {
			return err
		}
	}
	tw.Flush()

	b2 := t.VM("blue-2")
	fmt.Fprintf(d.w, "\nAdding blue-2 (%s in blue, on %s) through c2, with everything running\n", b2.IP, b2.Host)
	err := d.mesh.Apply("c2", func(c *controller.Config) {
		mac, _ := controller.ParseMAC(b2.MAC.String())
		c.Endpoints = append(c.Endpoints, controller.Endpoint{ID: b2.ID, VPC: b2.VPC, Kind: controller.KindVM, IP: b2.IP,
			MAC: mac, Host: b2.Host, Port: b2.Port})
	})
	if err != nil {
		d.check(d.w, false, fmt.Sprintf("c2 accepts blue-2: %v", err))
		return nil
	}
	start := time.Now()
	if err := d.ping(ctx, tw, pingCase{"red-1", "blue-2", "added just now, across the peering", true}); err != nil {
		return err
	}
	tw.Flush()
	fmt.Fprintf(d.w, "  (blue-2 answered within %.1fs of c2 accepting it)\n", time.Since(start).Seconds())
	return nil
}

// ping runs one case: an expected reply is waited for (reachTimeout); an
// expected silence is one attempt.
func (d *demoRun) ping(ctx context.Context, tw io.Writer, c pingCase) error {
	t := d.mesh.Topology
	from, to := t.VM(c.from), t.VM(c.to)
	var got int
	var err error
	if c.reply {
		got, err = d.pingUntil(ctx, c.from, to.IP, pingCount, reachTimeout)
	} else {
		got, err = d.mesh.Ping(ctx, c.from, to.IP, pingCount)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("ping %s → %s: %w", c.from, c.to, err)
	}
	want, ok := "replies", got == pingCount
	if !c.reply {
		want, ok = "no reply", got == 0
	}
	d.check(tw, ok, fmt.Sprintf("%s → %s\t%s\t%s → %s\t%s\texpected %s, got %d/%d", c.from, c.to, to.IP, from.Host, to.Host, c.why, want, got, pingCount))
	return nil
}

func (d *demoRun) printByHand() {
	fmt.Fprintln(d.w, "\nThe mesh keeps running until Ctrl-C.")
	if d.netns == nil {
		fmt.Fprintln(d.w, "Its ports are in-memory: nothing outside this process can reach them.")
		fmt.Fprintln(d.w, "Run as root (with ip and ping installed) to get one network namespace per VM to ping from.")
		return
	}
	t := d.mesh.Topology
	fmt.Fprintln(d.w, "Ping by hand (as root), from any shell:")
	tw := tabwriter.NewWriter(d.w, 0, 4, 2, ' ', 0)
	for _, c := range []pingCase{
		{"red-1", "blue-1", "peered: answers", true},
		{"red-1", "red-2", "same VPC, another host: answers", true},
		{"red-1", "blue-2", "added through c2: answers", true},
		{"red-1", "green-1", "not peered: no reply", false},
		{"blue-1", "red-1", "peered: answers", true},
	} {
		row(tw, fmt.Sprintf("ip netns exec %s ping %s", d.netns.Namespace(c.from), t.VM(c.to).IP), fmt.Sprintf("# %s → %s, %s", c.from, c.to, c.why))
	}
	tw.Flush()
	fmt.Fprintf(d.w, "Switch ports are in the hosts' namespaces (e.g. ip -n %s link), the underlay bridge in %s.\n",
		d.netns.HostNamespace("h1"), d.netns.UnderlayNamespace())
}

// onPrem shows the on-prem router: c1's speaker peers with it, it
// announces a network, c1 resolves it in red's RIB, and red-1 pings a host
// in it through the VPN attachment's port.
func (d *demoRun) onPrem(ctx context.Context, router demo.OnPremRouter) error {
	c1 := d.mesh.Controllers["c1"]
	fmt.Fprintf(d.w, "\nOn-prem router behind red's VPN attachment %s (h1 port 5): BGP AS %d (%s), c1's speaker AS %d\n",
		demo.OnPremAttachment, demo.OnPremAS, router.Describe(), demo.SpeakerAS)
	up := demo.WaitEstablished(ctx, c1, convergeTimeout)
	d.check(d.w, up, "c1's BGP session with the on-prem router is established")
	if !up {
		return nil
	}
	if err := router.Announce(ctx, demo.OnPremPrefix); err != nil {
		return fmt.Errorf("announce %s: %w", demo.OnPremPrefix, err)
	}
	var chosen *controller.Candidate
	for deadline := time.Now().Add(reachTimeout); time.Now().Before(deadline) && chosen == nil; time.Sleep(100 * time.Millisecond) {
		for _, c := range c1.RIB("red") {
			if c.Prefix == demo.OnPremPrefix && c.Origin == controller.OriginBGP && c.Chosen {
				chosen = &c
			}
		}
	}
	if chosen == nil {
		d.check(d.w, false, fmt.Sprintf("red's RIB chooses %s, learned over BGP", demo.OnPremPrefix))
		return nil
	}
	fmt.Fprintf(d.w, "  red's RIB: %s from %s, next hop %v: %s\n", chosen.Prefix, chosen.Source, chosen.NextHops, chosen.Reason)
	got, err := d.pingUntil(ctx, "red-1", demo.OnPremHost, pingCount, reachTimeout)
	if err != nil {
		return err
	}
	d.check(d.w, got == pingCount, fmt.Sprintf("red-1 → %s (behind the on-prem router, out of %s's port): expected %d replies, got %d",
		demo.OnPremHost, demo.OnPremAttachment, pingCount, got))
	return nil
}
