// Package demo runs the p4mesh demo topology: two controllers owning VPCs
// red and green (c1) and blue (c2), red peered with blue, and three hosts,
// each with p4mesh-switch and an OHC, their VMs on switch ports and their
// uplinks on one underlay. The fabric under it is either network
// namespaces with veth pairs (real packets, real ping; needs root) or
// in-memory ports (no root). cmd/p4meshctl demo and the end-to-end tests
// run it.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/internal/bgplink"
	"github.com/p4mesh/p4mesh/mtls"
	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
	"github.com/p4mesh/p4mesh/pki"
	"github.com/p4mesh/p4mesh/store/boltstore"
)

// Fabric gives the switches their ports and the VMs a way to ping: the
// network the demo runs on.
type Fabric interface {
	// Ports are host's switch ports: the uplink (port 1) and one per VM.
	// The switch closes them when it stops; a restarted switch asks
	// again, for ports on the same wires.
	Ports(host string) (map[uint16]dataplane.Port, error)
	// Ping sends count echo requests from vm to dst and returns how many
	// replies came back within timeout each.
	Ping(ctx context.Context, vm VM, dst netip.Addr, count int, timeout time.Duration) (int, error)
	// PingEvery sends count echo requests from vm to dst, one every
	// interval without waiting for the replies, and says which were
	// answered within timeout and how fast: an outage measured, at the
	// resolution of interval.
	PingEvery(ctx context.Context, vm VM, dst netip.Addr, count int, interval, timeout time.Duration) (PingRun, error)
	// Name says what the fabric is, for the demo's output.
	Name() string
	Close() error
}

// PingRun is what a paced ping (Fabric.PingEvery) saw.
type PingRun struct {
	Sent, Received int
	Interval       time.Duration
	// Lost are the sequence numbers (from 1) of the requests that got no
	// reply within the timeout.
	Lost []int
	// MaxRTT is the slowest reply's round trip, and MaxRTTSeq its
	// request: a stall that lost nothing shows here.
	MaxRTT    time.Duration
	MaxRTTSeq int
}

// Outage is the longest run of consecutive lost requests, in time: how
// long a flow sending every Interval went without an answer (0 when
// nothing was lost).
func (r PingRun) Outage() time.Duration {
	longest, run, prev := 0, 0, -1
	for _, seq := range r.Lost {
		if seq == prev+1 {
			run++
		} else {
			run = 1
		}
		longest, prev = max(longest, run), seq
	}
	return time.Duration(longest) * r.Interval
}

func (r PingRun) String() string {
	s := fmt.Sprintf("%d/%d replies every %v, max RTT %v (request %d), outage %v",
		r.Received, r.Sent, r.Interval, r.MaxRTT.Round(time.Microsecond), r.MaxRTTSeq, r.Outage())
	if len(r.Lost) == 0 {
		return s
	}
	// The lost requests as runs: "lost 3-4,9".
	var b strings.Builder
	for i := 0; i < len(r.Lost); {
		j := i
		for j+1 < len(r.Lost) && r.Lost[j+1] == r.Lost[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, r.Lost[i])
		if j > i {
			fmt.Fprintf(&b, "-%d", r.Lost[j])
		}
		i = j + 1
	}
	return s + ", lost " + b.String()
}

// finish fills r from the round trips by sequence number (0: no reply).
func (r *PingRun) finish(rtt []time.Duration) {
	for seq := 1; seq <= r.Sent; seq++ {
		switch d := rtt[seq]; {
		case d == 0:
			r.Lost = append(r.Lost, seq)
		case d > r.MaxRTT:
			r.MaxRTT, r.MaxRTTSeq = d, seq
		}
	}
}

// Host is one demo host.
type Host struct {
	ID  string
	IP  netip.Addr
	MAC net.HardwareAddr
}

// VM is one endpoint of the demo.
type VM struct {
	ID   string
	VPC  string
	IP   netip.Addr
	MAC  net.HardwareAddr
	Host string
	Port uint16
	// Gateway is the VPC's virtual gateway the VM routes through.
	Gateway    netip.Addr
	GatewayMAC net.HardwareAddr
	Prefix     netip.Prefix // the VPC subnet, for the VM's address
}

// Router is the cable of an on-prem router: a switch port of Host wired
// to a namespace of its own (netns fabric) whose eth0 has MAC. What runs
// there (FRR, addresses, routes) is the caller's; the VPC side is an
// attachment endpoint on Host's Port with router_mac MAC.
type Router struct {
	ID   string
	Host string
	Port uint16
	MAC  net.HardwareAddr
	// What the fabric sets up behind the cable, when LinkIP is set: the
	// router's address on it, host addresses Behind it that answer
	// pings, and VPCRoutes back through the attachment (AttachmentIP,
	// AttachmentMAC: the VPC side). Unset, the cable is bare (netns) or
	// silent (in memory).
	LinkIP        netip.Addr
	Behind        []netip.Prefix
	VPCRoutes     []netip.Prefix
	AttachmentIP  netip.Addr
	AttachmentMAC net.HardwareAddr
}

// Topology is the demo's world.
type Topology struct {
	Hosts []Host
	VMs   []VM
	// Routers are on-prem routers' cables; the demo topology has none.
	Routers []Router
	// Configs are the controllers' configurations, by controller name.
	Configs map[string]*controller.Config
}

const uplink = 1

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func ctlMAC(s string) controller.MAC {
	m, err := controller.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// DemoTopology builds the demo: c1 owns red (VNI 100) and green (300), c2
// owns blue (200); red and blue are peered both ways under export policy
// "all"; hosts h1..h3; VMs red-1 (h1), blue-1 (h2), green-1 and red-2 (h3).
// addrs are the controllers' gRPC addresses, c1 then c2.
func DemoTopology(addrs [2]string) *Topology {
	t := &Topology{Configs: map[string]*controller.Config{}}
	for i := 1; i <= 3; i++ {
		t.Hosts = append(t.Hosts, Host{
			ID: fmt.Sprintf("h%d", i), IP: netip.AddrFrom4([4]byte{192, 168, 0, byte(i)}), MAC: mac(fmt.Sprintf("02:fe:00:00:00:%02x", i)),
		})
	}
	vpcs := map[string]struct {
		vni    uint32
		subnet netip.Prefix
	}{
		"red": {100, netip.MustParsePrefix("10.1.0.0/16")}, "blue": {200, netip.MustParsePrefix("10.2.0.0/16")}, "green": {300, netip.MustParsePrefix("10.3.0.0/16")},
		// orange and purple exist only as cabled VMs: no controller has
		// them until an operator creates them (the gNMI tests do).
		"orange": {400, netip.MustParsePrefix("10.4.0.0/16")}, "purple": {500, netip.MustParsePrefix("10.5.0.0/16")},
	}
	vm := func(id, vpc, ip, host string, port uint16, macLast byte) VM {
		v := vpcs[vpc]
		gw, gwMAC := controller.VPC{VNI: v.vni, Subnets: []netip.Prefix{v.subnet}}.Gateway()
		return VM{ID: id, VPC: vpc, IP: netip.MustParseAddr(ip), MAC: net.HardwareAddr{0x02, 0xaa, 0, 0, byte(v.vni >> 8), macLast},
			Host: host, Port: port, Gateway: gw, GatewayMAC: net.HardwareAddr(gwMAC[:]), Prefix: v.subnet}
	}
	t.VMs = []VM{
		vm("red-1", "red", "10.1.0.10", "h1", 2, 0x10),
		vm("blue-1", "blue", "10.2.0.10", "h2", 2, 0x10),
		vm("green-1", "green", "10.3.0.10", "h3", 2, 0x10),
		vm("red-2", "red", "10.1.0.11", "h3", 3, 0x11),
		// blue-2 is cabled but not configured: tests and the demo add it
		// to the controller's configuration and see it become reachable.
		vm("blue-2", "blue", "10.2.0.11", "h3", 4, 0x11),
		vm("orange-1", "orange", "10.4.0.10", "h1", 3, 0x10),
		vm("purple-1", "purple", "10.5.0.10", "h2", 3, 0x10),
	}
	dir := []controller.ControllerEntry{
		{Name: "c1", Address: addrs[0], VPCs: []string{"red", "green"}},
		{Name: "c2", Address: addrs[1], VPCs: []string{"blue"}},
	}
	owned := map[string][]string{"c1": {"red", "green"}, "c2": {"blue"}}
	peerings := map[string][]controller.Peering{
		"c1": {{VPC: "red", PeerVPC: "blue", ExportPolicy: "all", Preference: 100}},
		"c2": {{VPC: "blue", PeerVPC: "red", ExportPolicy: "all", Preference: 100}},
	}
	for _, name := range []string{"c1", "c2"} {
		c := &controller.Config{Controller: name, Directory: dir, Peerings: peerings[name],
			ExportPolicies: []controller.ExportPolicy{{Name: "all"}}}
		for _, v := range owned[name] {
			c.VPCs = append(c.VPCs, controller.VPC{Name: v, VNI: vpcs[v].vni, Subnets: []netip.Prefix{vpcs[v].subnet}})
		}
		for _, h := range t.Hosts {
			hc := controller.Host{ID: h.ID, UnderlayIP: h.IP, MAC: ctlMAC(h.MAC.String()), UplinkPort: uplink}
			// One /32 per other host, so the underlay delivers each
			// tunnel to its host's MAC.
			for _, o := range t.Hosts {
				if o.ID != h.ID {
					hc.UnderlayRoutes = append(hc.UnderlayRoutes, controller.UnderlayRoute{
						Prefix: netip.PrefixFrom(o.IP, 32), Port: uplink, SrcMAC: ctlMAC(h.MAC.String()), DstMAC: ctlMAC(o.MAC.String()),
					})
				}
			}
			c.Hosts = append(c.Hosts, hc)
		}
		for _, v := range t.VMs {
			if slices.Contains(owned[name], v.VPC) && v.ID != "blue-2" {
				c.Endpoints = append(c.Endpoints, controller.Endpoint{ID: v.ID, VPC: v.VPC, Kind: controller.KindVM, IP: v.IP,
					MAC: ctlMAC(v.MAC.String()), Host: v.Host, Port: v.Port})
			}
		}
		t.Configs[name] = c
	}
	return t
}

// VM returns the VM with id.
func (t *Topology) VM(id string) VM {
	i := slices.IndexFunc(t.VMs, func(v VM) bool { return v.ID == id })
	if i < 0 {
		panic("no VM " + id)
	}
	return t.VMs[i]
}

// Mesh is a running demo: controllers, switches and OHCs.
type Mesh struct {
	Topology    *Topology
	Controllers map[string]*controller.Server
	Switches    map[string]*dataplane.Switch
	// SwitchAddrs are the P4Runtime addresses of the switches, by host.
	SwitchAddrs map[string]string
	fabric      Fabric
	log         *slog.Logger

	cancel context.CancelFunc
	wg     sync.WaitGroup
	// switches stop each switch (its P4Runtime server and forwarding)
	// for a restart.
	switches map[string]func()
	ohcs     map[string]context.CancelFunc
	// ohcMu guards running: each host's running OHC, set once it started.
	ohcMu   sync.Mutex
	running map[string]runningOHC
	// switchOpts amends each switch's server options (Options.SwitchOptions).
	switchOpts func(host string, o *dataplane.Options)
	ohcOpts    func(host string, o *ohc.DaemonOptions)
	// ctls stop each controller (its gRPC server and follower) for a
	// restart.
	ctls    map[string]func()
	ctlAddr map[string]string
	dataDir string
	ctx     context.Context
	// PKI is the lab CA every party's certificate comes from (nil under
	// Insecure); its directory is DataDir/pki.
	PKI *pki.Lab
	// issued are the certificates made so far, by identity: a restarted
	// party keeps its own.
	issuedMu sync.Mutex
	issued   map[string]mtls.Files
}

// Options configure Start.
type Options struct {
	Fabric  Fabric
	DataDir string // controller state, one subdirectory each
	Logger  *slog.Logger
	// Insecure runs every channel in plaintext. By default each party
	// has a certificate of a lab CA (as p4meshctl pki lab makes) and every
	// channel is mutual TLS: controllers, OHCs, switches.
	Insecure bool
	// SwitchOptions, if set, amends the server options of every switch
	// the mesh starts, restarted ones included: tests set OnWrite and
	// OnCommit there to see everything a switch is told.
	SwitchOptions func(host string, o *dataplane.Options)
	// Topology, if set, builds the topology from the controllers'
	// addresses in place of DemoTopology (which it may extend).
	Topology func(addrs [2]string) *Topology
	// OHCOptions, if set, amends the options of every OHC the mesh
	// starts, restarted ones included (a table budget for one host).
	OHCOptions func(host string, o *ohc.DaemonOptions)
}

// runningOHC is the parts of a running OHC that tests look into.
type runningOHC struct {
	prog  *ohc.Programmer
	agent *ohc.Agent
}

// Start brings the demo up: controllers on loopback, a switch per host on
// the fabric's ports with its P4Runtime server on loopback, and an OHC per
// host.
func Start(ctx context.Context, o Options) (*Mesh, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	m := &Mesh{Controllers: map[string]*controller.Server{}, Switches: map[string]*dataplane.Switch{},
		SwitchAddrs: map[string]string{}, fabric: o.Fabric, log: o.Logger, cancel: cancel, switches: map[string]func(){}, ohcs: map[string]context.CancelFunc{},
		ctls: map[string]func(){}, ctlAddr: map[string]string{}, dataDir: o.DataDir, ctx: ctx,
		running: map[string]runningOHC{}, switchOpts: o.SwitchOptions, ohcOpts: o.OHCOptions}
	fail := func(err error) (*Mesh, error) {
		m.Close()
		return nil, err
	}
	if !o.Insecure {
		lab, err := pki.OpenLab(filepath.Join(o.DataDir, "pki"), "")
		if err != nil {
			return fail(fmt.Errorf("demo PKI: %w", err))
		}
		m.PKI = lab
	}
	// Controllers listen first: each one's address is in both configs.
	var lis [2]net.Listener
	var addrs [2]string
	for i := range lis {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail(err)
		}
		lis[i], addrs[i] = l, l.Addr().String()
	}
	if o.Topology != nil {
		m.Topology = o.Topology(addrs)
	} else {
		m.Topology = DemoTopology(addrs)
	}
	for i, name := range []string{"c1", "c2"} {
		m.ctlAddr[name] = addrs[i]
		if err := m.startController(name, lis[i], m.Topology.Configs[name]); err != nil {
			return fail(err)
		}
	}
	for _, h := range m.Topology.Hosts {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail(err)
		}
		if err := m.startSwitch(h.ID, l); err != nil {
			l.Close()
			return fail(err)
		}
	}
	for _, h := range m.Topology.Hosts {
		m.StartOHC(ctx, h.ID)
	}
	return m, nil
}

// startSwitch runs host's switch, empty (no pipeline), on the fabric's
// ports for host, with its P4Runtime server on lis.
func (m *Mesh) startSwitch(host string, lis net.Listener) error {
	info, err := p4.P4Info()
	if err != nil {
		return err
	}
	ports, err := m.fabric.Ports(host)
	if err != nil {
		return err
	}
	so := dataplane.Options{P4Info: info, Logger: m.log.With("switch", host)}
	if m.switchOpts != nil {
		m.switchOpts(host, &so)
	}
	sw, err := dataplane.NewSwitch(dataplane.SwitchOptions{Server: so, Ports: ports})
	if err != nil {
		for _, p := range ports {
			p.Close()
		}
		return err
	}
	opts, err := m.serverOptions(identity.Host, host)
	if err != nil {
		for _, p := range ports {
			p.Close()
		}
		return err
	}
	g := dataplane.NewGRPCServer(opts...)
	sw.Server().Register(g)
	m.Switches[host] = sw
	m.SwitchAddrs[host] = lis.Addr().String()
	ctx, cancel := context.WithCancel(m.ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); g.Serve(lis) }()
	go func() { defer wg.Done(); sw.Run(ctx) }()
	m.switches[host] = func() {
		g.Stop()
		cancel()
		wg.Wait()
	}
	return nil
}

// StopSwitch stops host's switch for good: its P4Runtime server and its
// forwarding, as when the host dies. Its ports stay cabled and silent.
func (m *Mesh) StopSwitch(host string) {
	if stop := m.switches[host]; stop != nil {
		stop()
		delete(m.switches, host)
	}
}

// RestartSwitch stops host's switch and starts it again empty, with no
// pipeline and no entries, on the same P4Runtime address and ports: a
// switch process (or host) restart. The OHC finds it on reconnecting.
func (m *Mesh) RestartSwitch(host string) error {
	if stop := m.switches[host]; stop != nil {
		stop()
	}
	lis, err := relisten(m.SwitchAddrs[host])
	if err != nil {
		return err
	}
	if err := m.startSwitch(host, lis); err != nil {
		lis.Close()
		return err
	}
	return nil
}

// startController serves controller name on lis: from its saved state when
// cfg is nil (a restart), else after applying cfg.
func (m *Mesh) startController(name string, lis net.Listener, cfg *controller.Config) error {
	// The item store p4mesh-controller keeps by default: a restart serves
	// the revisions the OHCs were told, so they resume without RESET.
	dir := fmt.Sprintf("%s/%s", m.dataDir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := boltstore.Open(filepath.Join(dir, "store.db"), boltstore.Options{})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	store, err := controller.OpenItemStore(m.ctx, b)
	if err == nil {
		// A restart (cfg nil) starts from what was saved; else cfg
		// replaces it.
		_, err = store.Startup(cfg, cfg != nil)
	}
	if err != nil {
		b.Close()
		return fmt.Errorf("%s: %w", name, err)
	}
	started := false
	defer func() {
		if !started {
			b.Close()
		}
	}()
	opts, err := m.serverOptions(identity.Controller, name)
	if err != nil {
		return err
	}
	dial, err := m.dial(identity.Controller, name, mtls.ExpectKind("", identity.Controller))
	if err != nil {
		return err
	}
	srv, err := controller.NewServer(controller.ServerOptions{Auth: identity.Auth{Insecure: m.PKI == nil}, Store: store,
		Logger: m.log.With("controller", name), DialOptions: []grpc.DialOption{dial}})
	if err != nil {
		return err
	}
	g := grpc.NewServer(opts...)
	srv.Register(g)
	ctx, cancel := context.WithCancel(m.ctx)
	// The BGP speaker, as p4mesh-controller runs it: idle until the
	// configuration has a bgp section.
	link := bgplink.New(srv, bgplink.Options{Logger: m.log.With("controller", name), Interval: 200 * time.Millisecond, ConnectRetry: time.Second})
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); g.Serve(lis) }()
	go func() { defer wg.Done(); srv.Run(ctx) }()
	go func() { defer wg.Done(); link.Run(ctx) }()
	m.Controllers[name] = srv
	started = true
	m.ctls[name] = func() {
		cancel()
		g.Stop()
		wg.Wait()
		b.Close()
	}
	return nil
}

// StopController stops controller name (its process going away); the
// switches keep forwarding with what they hold.
func (m *Mesh) StopController(name string) {
	if stop := m.ctls[name]; stop != nil {
		stop()
		delete(m.ctls, name)
	}
}

// relisten listens again on the address a stopped server had.
func relisten(addr string) (net.Listener, error) {
	var lis net.Listener
	var err error
	for range 100 { // the old listener's port frees at once, but be patient
		if lis, err = net.Listen("tcp", addr); err == nil {
			return lis, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, err
}

// RestartController stops controller name and starts it again on the same
// address from what it persisted, as a process restart would.
func (m *Mesh) RestartController(name string) error {
	if stop := m.ctls[name]; stop != nil {
		stop()
	}
	lis, err := relisten(m.ctlAddr[name])
	if err != nil {
		return err
	}
	return m.startController(name, lis, nil)
}

// StartOHC starts (or restarts) host's OHC.
func (m *Mesh) StartOHC(ctx context.Context, host string) {
	if stop := m.ohcs[host]; stop != nil {
		stop()
	}
	m.ohcMu.Lock()
	delete(m.running, host)
	m.ohcMu.Unlock()
	octx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	m.ohcs[host] = func() { cancel(); <-done }
	var addrs []string
	for _, e := range m.Topology.Configs["c1"].Directory {
		addrs = append(addrs, strings.Join(e.Addresses(), ","))
	}
	o := ohc.DaemonOptions{Host: host, Controllers: addrs, Switch: m.SwitchAddrs[host], DeviceID: 1, ElectionID: 1, Logger: m.log.With("ohc", host)}
	if m.ohcOpts != nil {
		m.ohcOpts(host, &o)
	}
	if m.PKI != nil {
		self := identity.ID{TrustDomain: m.PKI.CA.TrustDomain, Kind: identity.Host, Name: host}
		cd, err1 := m.dial(identity.Host, host, mtls.ExpectKind("", identity.Controller))
		sd, err2 := m.dial(identity.Host, host, mtls.ExpectID(self))
		if err := errors.Join(err1, err2); err != nil {
			m.log.Error("OHC not started", "host", host, "err", err)
			close(done)
			return
		}
		o.ControllerDial, o.SwitchDial = []grpc.DialOption{cd}, []grpc.DialOption{sd}
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(done)
		err := ohc.RunDaemon(octx, o, func(p *ohc.Programmer, _ *p4rt.Client, a *ohc.Agent) {
			m.ohcMu.Lock()
			m.running[host] = runningOHC{prog: p, agent: a}
			m.ohcMu.Unlock()
		})
		if err != nil {
			m.log.Error("OHC stopped", "host", host, "err", err)
		}
	}()
}

// OHC is host's running OHC's programmer and agent; nil before it has
// started and after it stopped.
func (m *Mesh) OHC(host string) (*ohc.Programmer, *ohc.Agent) {
	m.ohcMu.Lock()
	defer m.ohcMu.Unlock()
	r := m.running[host]
	return r.prog, r.agent
}

// StopOHC stops host's OHC; its switch keeps its tables.
func (m *Mesh) StopOHC(host string) {
	if stop := m.ohcs[host]; stop != nil {
		stop()
		delete(m.ohcs, host)
	}
	m.ohcMu.Lock()
	delete(m.running, host)
	m.ohcMu.Unlock()
}

// Apply changes one controller's configuration, as an operator would.
func (m *Mesh) Apply(controllerName string, change func(c *controller.Config)) error {
	srv := m.Controllers[controllerName]
	c := srv.Config().Clone()
	change(c)
	return srv.Apply(c)
}

// Entries reads every table entry of host's switch, by table name, through
// the switch's store (what a P4Runtime read returns).
func (m *Mesh) Entries(host string) (map[string][]*p4v1.TableEntry, error) {
	st := m.Switches[host].Server().Store()
	if st == nil {
		return nil, fmt.Errorf("switch %s has no pipeline", host)
	}
	info, _ := p4.P4Info()
	s, _ := p4rt.NewSchema(info)
	dial, err := m.dial(identity.Operator, "admin", nil)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(m.SwitchAddrs[host], dial)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A read needs no arbitration: this is a P4Runtime read of what the
	// switch holds, as any operator tool would do it.
	rc, err := p4v1.NewP4RuntimeClient(conn).Read(ctx, &p4v1.ReadRequest{DeviceId: 1, Entities: []*p4v1.Entity{
		{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{}}}}})
	if err != nil {
		return nil, err
	}
	out := map[string][]*p4v1.TableEntry{}
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
			t, err := s.TableByID(te.GetTableId())
			if err != nil {
				return nil, err
			}
			out[t.GetPreamble().GetAlias()] = append(out[t.GetPreamble().GetAlias()], te)
		}
	}
	return out, nil
}

// serverOptions serve as kind/name: with its certificate, or plaintext
// when the mesh is insecure. A switch serves as its host, and admits only
// that host's OHC and operators, as p4mesh-switch does.
func (m *Mesh) serverOptions(kind identity.Kind, name string) ([]grpc.ServerOption, error) {
	if m.PKI == nil {
		return nil, nil
	}
	src, err := m.source(kind, name)
	if err != nil {
		return nil, err
	}
	opts := []grpc.ServerOption{grpc.Creds(mtls.ServerCredentials(src))}
	if kind == identity.Host {
		unary, stream := identity.Interceptors(identity.Auth{}, func(id identity.ID) error {
			if id.Kind == identity.Operator || id == src.ID() {
				return nil
			}
			return fmt.Errorf("%s may not program host %s's switch", id, name)
		})
		opts = append(opts, grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream))
	}
	return opts, nil
}

// source issues (once) and loads kind/name's certificate.
func (m *Mesh) source(kind identity.Kind, name string) (*mtls.Source, error) {
	m.issuedMu.Lock()
	defer m.issuedMu.Unlock()
	key := string(kind) + "/" + name
	files, ok := m.issued[key]
	if !ok {
		var err error
		if files, err = m.PKI.Issue(kind, name, "127.0.0.1", "localhost"); err != nil {
			return nil, err
		}
		if m.issued == nil {
			m.issued = map[string]mtls.Files{}
		}
		m.issued[key] = files
	}
	return mtls.Load(files, m.log)
}

// dial is how kind/name reaches a server that expect accepts.
func (m *Mesh) dial(kind identity.Kind, name string, expect mtls.Expect) (grpc.DialOption, error) {
	if m.PKI == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	src, err := m.source(kind, name)
	if err != nil {
		return nil, err
	}
	return grpc.WithTransportCredentials(mtls.ClientCredentials(src, expect)), nil
}

// Dial connects to addr (a controller or switch of the mesh) as kind/name.
func (m *Mesh) Dial(addr string, kind identity.Kind, name string) (*grpc.ClientConn, error) {
	d, err := m.dial(kind, name, nil)
	if err != nil {
		return nil, err
	}
	return grpc.NewClient(addr, d)
}

// ControllerAddr is controller name's gRPC address.
func (m *Mesh) ControllerAddr(name string) string { return m.ctlAddr[name] }

// Ping pings dst from VM vm through the fabric.
func (m *Mesh) Ping(ctx context.Context, vm string, dst netip.Addr, count int) (int, error) {
	return m.fabric.Ping(ctx, m.Topology.VM(vm), dst, count, time.Second)
}

// PingEvery pings dst from VM vm through the fabric, count requests one
// every interval, each answered within a second or lost.
func (m *Mesh) PingEvery(ctx context.Context, vm string, dst netip.Addr, count int, interval time.Duration) (PingRun, error) {
	return m.fabric.PingEvery(ctx, m.Topology.VM(vm), dst, count, interval, time.Second)
}

// Close stops everything.
func (m *Mesh) Close() {
	for h := range m.ohcs {
		m.StopOHC(h)
	}
	for _, stop := range m.ctls {
		stop()
	}
	for _, stop := range m.switches {
		stop()
	}
	m.cancel()
	m.wg.Wait()
}
