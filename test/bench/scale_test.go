package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"weak"

	"github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/dataplane"
	p4gnmi "github.com/p4mesh/p4mesh/gnmi"
	gnmiserver "github.com/p4mesh/p4mesh/gnmi/server"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
	"github.com/p4mesh/p4mesh/store/boltstore"
)

// The controller at scale (issue 14): four controller shards owning 1,000
// VPCs between them, N endpoints over N/100 hosts that every shard has
// VMs on (a VPC over every host, or with -scale.locality on a bounded set
// of them), each VPC peered with two or three others (one at least on
// another shard) under export policies. Everything runs in this process
// over loopback gRPC in plaintext (identity.Auth{Insecure: true}; the
// production default is mutual TLS, which adds a handshake per long-lived
// connection and the encryption of each message, small next to what a
// change costs today): the four controllers with
// their gNMI servers, and OHCs programming in-process p4mesh-switches over
// P4Runtime for a sample of hosts.
//
//	go test -run '^$' -bench 'Scale/10k' -benchtime 1x -timeout 60m ./test/bench/ -args -scale.changes=100
//
// -scale.changes sets how many endpoint changes one iteration makes (the
// latencies are over all of them), -scale.hosts how many peered hosts run
// an OHC besides the host of the changed endpoints, -scale.locality on
// how many hosts a VPC's endpoints are (1M with OHCs needs it:
// -scale.locality=100). They go after -args
// (or as -scale.changes=N): go test does not know them, and would take a
// separate value for a package.
var (
	scaleChanges = flag.Int("scale.changes", 100, "BenchmarkScale: gNMI Sets (one new endpoint each) per iteration")
	// Adds alone extend the controllers' configuration snapshot; an edit
	// or a delete is what once left it to be rebuilt whole by the next Set.
	scaleMix   = flag.Bool("scale.mix", false, "BenchmarkScale: the changes cycle add, edit (an added endpoint's port leaf), replace (an added endpoint whole, which moves it to the end of its list) and delete (the oldest added endpoint), not only adds; the last host is measured for the adds only")
	scaleHosts = flag.Int("scale.hosts", 8, "BenchmarkScale: peered hosts running an OHC and a switch, besides the host of the changed endpoints; -1: no OHC at all (the controllers alone)")
	// 0 keeps the placement every row recorded before it had (and the
	// controllers' heap depends on the placement: a host's tables hold
	// its VPCs' items); at 1M only a bounded placement lets a sampled
	// host's switch hold what it must (see scaleSpec.VPCHosts).
	scaleLocality = flag.Int("scale.locality", 0, "BenchmarkScale: place each VPC's endpoints on a bounded set of this many hosts (100: a host runs VMs of ~10 VPCs at 1M); 0: every VPC over every host, at random")
	// The whole run's -cpuprofile is mostly the start (import, initial
	// programming): this one covers only the measured changes.
	scaleCPUProfile = flag.String("scale.cpuprofile", "", "BenchmarkScale: write a CPU profile of the changes alone (not the start) to this file")
	scaleMemProfile = flag.String("scale.memprofile", "", "BenchmarkScale: write a heap profile of the controllers and their gNMI servers, once started (before any OHC), to this file")
)

// scaleSpec is the shape of a topology; the rest follows from Seed.
type scaleSpec struct {
	Endpoints, VPCs, Hosts, Shards int
	// VPCHosts, when not 0, bounds the hosts a VPC's endpoints are on,
	// as a cloud places a tenant's VMs in one cluster: VPC v is on the
	// VPCHosts hosts from v·Hosts/VPCs on (wrapping), its k-th endpoint
	// on the (k mod VPCHosts)-th of them. The windows overlap evenly, so
	// a host is in the windows of VPCs·VPCHosts/Hosts VPCs and runs
	// Endpoints/Hosts endpoints like any other. With 0, every VPC is
	// spread over every host at random: a host at 1M then runs VMs of ~95
	// VPCs and must hold ~300k vnet_destination entries, over the table's
	// 65,536.
	VPCHosts int
	Seed     uint64
}

// scaleTopo is a generated topology, kept compact (a few bytes per
// endpoint) so that the generator's own memory stays small next to the
// controllers' at 1M endpoints: a shard's controller.Config is built only
// when it is applied, and dropped after.
//
// VPC v is owned by shard v%Shards, has VNI 1000+v and two /20 subnets:
// app, 10.0.0.0/9 + v·4096, and data, 10.128.0.0/9 + v·4096. Endpoint j is
// the k-th (k = j/VPCs) of VPC j%VPCs, in data when k%10 == 9, else in app,
// at the subnet's address 10+k. Every controller defines the same two
// export policies: "all" and "app" (only subnets inside 10.0.0.0/9), so
// that a peer under "app" must never get a data endpoint.
type scaleTopo struct {
	scaleSpec
	host     []int32          // endpoint → host
	port     []uint16         // endpoint → its switch port on that host
	nextPort []uint16         // host → the next free port
	free     map[int][]uint16 // host → ports freed by deletes
	peers    [][]int          // VPC → the VPCs it is peered with (both sides configured)
	// exportAll[[2]int{v, p}]: v's side of the peering with p exports all
	// of v's subnets (policy "all"); otherwise only app ("app").
	exportAll map[[2]int]bool
	// added counts endpoints added by changes, for fresh ids, IPs and MACs.
	added int
}

const scaleUplink = 1

func newScaleTopo(s scaleSpec) *scaleTopo {
	if s.VPCs < 8 || s.VPCs > 2048 || s.VPCs%s.Shards != 0 {
		panic(fmt.Sprintf("scale topology: %d VPCs over %d shards: want 8..2048, a multiple of the shards", s.VPCs, s.Shards))
	}
	per := (s.Endpoints + s.Hosts - 1) / s.Hosts
	if per > 400 {
		panic(fmt.Sprintf("scale topology: %d endpoints per host do not fit a switch's ports", per))
	}
	t := &scaleTopo{scaleSpec: s, host: make([]int32, s.Endpoints), port: make([]uint16, s.Endpoints),
		nextPort: make([]uint16, s.Hosts), free: map[int][]uint16{}, peers: make([][]int, s.VPCs), exportAll: map[[2]int]bool{}}
	// Hosts are filled at random, none beyond per (all exactly per when
	// Hosts divides Endpoints): a host runs VMs of many VPCs of every
	// shard, as in a real cloud.
	for h := range t.nextPort {
		t.nextPort[h] = scaleUplink + 1
	}
	if s.VPCHosts > 0 {
		// The windows overlap evenly, but when VPCHosts does not divide
		// a VPC's endpoints some hosts get one more of it: within the
		// ports, checked here.
		n := make([]int, s.Hosts)
		for j := range s.Endpoints {
			h := t.placed(j)
			if n[h]++; n[h] > 400 {
				panic(fmt.Sprintf("scale topology: host h%d gets over 400 endpoints, more than a switch's ports", h))
			}
			t.host[j], t.port[j] = int32(h), t.takePort(h)
		}
	} else {
		slots := make([]int32, 0, per*s.Hosts)
		for h := range s.Hosts {
			for range per {
				slots = append(slots, int32(h))
			}
		}
		rng := rand.New(rand.NewPCG(s.Seed, 14))
		rng.Shuffle(len(slots), func(i, j int) { slots[i], slots[j] = slots[j], slots[i] })
		for j := range s.Endpoints {
			h := slots[j]
			t.host[j], t.port[j] = h, t.takePort(int(h))
		}
	}
	// A ring (v, v+1) puts every VPC in a peering with a VPC of another
	// shard; every third VPC of the first half also peers across the
	// ring, with the VPC half way round.
	peer := func(a, b int) {
		t.peers[a] = append(t.peers[a], b)
		t.peers[b] = append(t.peers[b], a)
		t.exportAll[[2]int{a, b}] = (a*31+b*17)%3 != 0
		t.exportAll[[2]int{b, a}] = (b*31+a*17)%3 != 0
	}
	for v := range s.VPCs {
		peer(v, (v+1)%s.VPCs)
		if v < s.VPCs/2 && v%3 == 0 {
			peer(v, v+s.VPCs/2)
		}
	}
	return t
}

// vpcHosts is how many hosts, at most, a VPC's endpoints are on.
func (t *scaleTopo) vpcHosts() int {
	if t.VPCHosts <= 0 {
		return t.Hosts
	}
	return min(t.VPCHosts, t.Hosts)
}

// firstHost is where VPC v's window of hosts starts (scaleSpec.VPCHosts).
func (t *scaleTopo) firstHost(v int) int { return v * t.Hosts / t.VPCs }

// placed is endpoint j's host under a bounded placement.
func (t *scaleTopo) placed(j int) int {
	v, k := j%t.VPCs, j/t.VPCs
	return (t.firstHost(v) + k%t.vpcHosts()) % t.Hosts
}

// inWindow reports whether host h is in VPC v's set of hosts: any host
// when the placement is not bounded.
func (t *scaleTopo) inWindow(v, h int) bool {
	if t.VPCHosts <= 0 {
		return true
	}
	return (h-t.firstHost(v)+t.Hosts)%t.Hosts < t.vpcHosts()
}

// takePort is the next free switch port of host h: 2 up, around the CPU
// port.
func (t *scaleTopo) takePort(h int) uint16 {
	if f := t.free[h]; len(f) > 0 {
		t.free[h] = f[:len(f)-1]
		return f[len(f)-1]
	}
	p := t.nextPort[h]
	if p == 255 {
		p++
	}
	if p > 510 {
		panic(fmt.Sprintf("host h%d has no free port", h))
	}
	t.nextPort[h] = p + 1
	return p
}

func (t *scaleTopo) shardOf(v int) int    { return v % t.Shards }
func (t *scaleTopo) vni(v int) uint32     { return 1000 + uint32(v) }
func (t *scaleTopo) vpcName(v int) string { return fmt.Sprintf("vpc%d", v) }

func (t *scaleTopo) subnet(v int, data bool) netip.Prefix {
	base := uint32(10)<<24 | uint32(v)<<12
	if data {
		base |= 1 << 23
	}
	return netip.PrefixFrom(u32Addr(base), 20)
}

// addr is the address of the k-th endpoint of VPC v.
func (t *scaleTopo) addr(v, k int, data bool) netip.Addr {
	return u32Addr(addrU32(t.subnet(v, data).Addr()) + 10 + uint32(k))
}

// endpoint is endpoint j as configured.
func (t *scaleTopo) endpoint(j int) controller.Endpoint {
	v, k := j%t.VPCs, j/t.VPCs
	return controller.Endpoint{ID: fmt.Sprintf("ep%d", j), VPC: t.vpcName(v), Kind: controller.KindVM,
		IP: t.addr(v, k, k%10 == 9), MAC: controller.MAC{0x02, 0x01, byte(j >> 24), byte(j >> 16), byte(j >> 8), byte(j)},
		Host: fmt.Sprintf("h%d", t.host[j]), Port: t.port[j]}
}

func (t *scaleTopo) inData(j int) bool { return (j/t.VPCs)%10 == 9 }

func (t *scaleTopo) hostOf(h int) controller.Host {
	mac := controller.MAC{0x02, 0xfe, 0, byte(h >> 16), byte(h >> 8), byte(h)}
	return controller.Host{ID: fmt.Sprintf("h%d", h), UnderlayIP: u32Addr(172<<24 | 16<<16 | uint32(h+1)), MAC: mac, UplinkPort: scaleUplink,
		UnderlayRoutes: []controller.UnderlayRoute{{Prefix: netip.MustParsePrefix("172.16.0.0/12"), Port: scaleUplink, SrcMAC: mac,
			DstMAC: controller.MAC{0x02, 0xfd, 0, 0, 0, 1}}}}
}

// config is shard's whole configuration: its VPCs, their endpoints and
// its sides of their peerings, and every host (each has VMs of every
// shard).
func (t *scaleTopo) config(shard int, addrs []string) *controller.Config {
	c := &controller.Config{Controller: fmt.Sprintf("c%d", shard),
		ExportPolicies: []controller.ExportPolicy{{Name: "all"}, {Name: "app", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/9")}}}}
	for s := range t.Shards {
		e := controller.ControllerEntry{Name: fmt.Sprintf("c%d", s), Address: addrs[s]}
		for v := s; v < t.VPCs; v += t.Shards {
			e.VPCs = append(e.VPCs, t.vpcName(v))
		}
		c.Directory = append(c.Directory, e)
	}
	for h := range t.Hosts {
		c.Hosts = append(c.Hosts, t.hostOf(h))
	}
	for v := shard; v < t.VPCs; v += t.Shards {
		c.VPCs = append(c.VPCs, controller.VPC{Name: t.vpcName(v), VNI: t.vni(v), Subnets: []netip.Prefix{t.subnet(v, false), t.subnet(v, true)}})
		for _, p := range t.peers[v] {
			pol := "app"
			if t.exportAll[[2]int{v, p}] {
				pol = "all"
			}
			c.Peerings = append(c.Peerings, controller.Peering{VPC: t.vpcName(v), PeerVPC: t.vpcName(p), ExportPolicy: pol})
		}
	}
	c.Endpoints = make([]controller.Endpoint, 0, t.Endpoints/t.Shards+1)
	for j := shard; j < t.Endpoints; j += t.Shards { // VPC j%VPCs is on shard j%Shards
		c.Endpoints = append(c.Endpoints, t.endpoint(j))
	}
	return c
}

// gets reports whether a host with a VM of VPC local must have an entry,
// under local's VNI, for an endpoint of VPC v (in v's data subnet or not):
// its own VPC's endpoints, and what an active peer exports to it.
func (t *scaleTopo) gets(local, v int, data bool) bool {
	if local == v {
		return true
	}
	return slices.Contains(t.peers[local], v) && (!data || t.exportAll[[2]int{v, local}])
}

// localVPCs maps each of hosts to the VPCs it has VMs of.
func (t *scaleTopo) localVPCs(hosts []int) map[int]map[int]bool {
	m := map[int]map[int]bool{}
	for _, h := range hosts {
		m[h] = map[int]bool{}
	}
	for j, h := range t.host {
		if l, ok := m[int(h)]; ok {
			l[j%t.VPCs] = true
		}
	}
	return m
}

// destinations is how many vnet_destination entries a host with VMs of
// the VPCs local holds: one per (local VPC, endpoint it reaches).
func (t *scaleTopo) destinations(local map[int]bool) int {
	app, data := t.vpcSizes()
	return t.destinationsOf(local, app, data)
}

// vpcSizes is how many endpoints each VPC has in its app and its data
// subnet.
func (t *scaleTopo) vpcSizes() (app, data []int) {
	app, data = make([]int, t.VPCs), make([]int, t.VPCs)
	for j := range t.Endpoints {
		if t.inData(j) {
			data[j%t.VPCs]++
		} else {
			app[j%t.VPCs]++
		}
	}
	return app, data
}

// hostLoad is what a host must hold of what grows with the endpoints:
// its endpoints (a port_vnet and a vm_source_guard entry each), the VPCs
// they are of, its vnet_destination entries and its arp_proxy entries
// (one per endpoint of a local VPC, and its gateway's).
type hostLoad struct{ endpoints, vpcs, destinations, arp int }

// loads is every host's load.
func (t *scaleTopo) loads() []hostLoad {
	app, data := t.vpcSizes()
	// Each host's VPCs, without a map per host (a million endpoints): the
	// endpoints grouped by host, and a VPC's last host marked.
	out := make([]hostLoad, t.Hosts)
	for _, h := range t.host {
		out[h].endpoints++
	}
	at := make([]int, t.Hosts+1)
	for h := range t.Hosts {
		at[h+1] = at[h] + out[h].endpoints
	}
	vpcOf, next := make([]int32, t.Endpoints), slices.Clone(at[:t.Hosts])
	for j, h := range t.host {
		vpcOf[next[h]] = int32(j % t.VPCs)
		next[h]++
	}
	mark := make([]int, t.VPCs)
	for v := range mark {
		mark[v] = -1
	}
	local := map[int]bool{}
	for h := range t.Hosts {
		clear(local)
		for _, v := range vpcOf[at[h]:at[h+1]] {
			if mark[v] != h {
				mark[v] = h
				local[int(v)] = true
			}
		}
		out[h].vpcs = len(local)
		out[h].destinations = t.destinationsOf(local, app, data)
		for v := range local {
			out[h].arp += app[v] + data[v] + 1
		}
	}
	return out
}

// checkTables says which of hosts would need more entries in a table
// than the switch holds (p4/v1model/vpc_peering.p4's sizes, from s), and
// the largest load of each table over them.
func (t *scaleTopo) checkTables(s *p4rt.Schema, hosts []int) (most string, err error) {
	size := func(name string) int {
		tb, err := s.Table(name)
		if err != nil {
			panic(err)
		}
		return int(tb.GetSize())
	}
	loads := t.loads()
	var mx hostLoad
	var over []string
	for _, h := range hosts {
		l := loads[h]
		mx = hostLoad{max(mx.endpoints, l.endpoints), max(mx.vpcs, l.vpcs), max(mx.destinations, l.destinations), max(mx.arp, l.arp)}
		for _, c := range []struct {
			table string
			n     int
		}{{"vnet_destination", l.destinations}, {"arp_proxy", l.arp}, {"port_vnet", l.endpoints}, {"vm_source_guard", l.endpoints}} {
			if c.n > size(c.table) {
				over = append(over, fmt.Sprintf("h%d must hold %d %s entries, over the table's %d", h, c.n, c.table, size(c.table)))
			}
		}
	}
	most = fmt.Sprintf("at most %d endpoints of %d VPCs a host; %d vnet_destination entries of %d, %d arp_proxy of %d, %d port_vnet of %d",
		mx.endpoints, mx.vpcs, mx.destinations, size("vnet_destination"), mx.arp, size("arp_proxy"), mx.endpoints, size("port_vnet"))
	if len(over) > 0 {
		if len(over) > 3 {
			over = append(over[:3], fmt.Sprintf("and %d more", len(over)-3))
		}
		return most, fmt.Errorf("%s", strings.Join(over, "; "))
	}
	return most, nil
}

func (t *scaleTopo) destinationsOf(local map[int]bool, app, data []int) int {
	n := 0
	for l := range local {
		n += app[l] + data[l]
		for _, p := range t.peers[l] {
			n += app[p]
			if t.exportAll[[2]int{p, l}] {
				n += data[p]
			}
		}
	}
	return n
}

// peeredHosts picks up to n hosts other than not, in a seeded order, with
// a VM of a VPC peered with v: hosts that must get v's new endpoints.
func (t *scaleTopo) peeredHosts(v, not, n int) []int {
	order := rand.New(rand.NewPCG(t.Seed, 15)).Perm(t.Hosts)
	rank := make([]int, t.Hosts)
	for i, h := range order {
		rank[h] = i
	}
	// The endpoint of a peer VPC with the lowest rank per host.
	var cands []int
	seen := make([]bool, t.Hosts)
	for j, h := range t.host {
		if int(h) != not && !seen[h] && slices.Contains(t.peers[v], j%t.VPCs) {
			seen[h] = true
			cands = append(cands, int(h))
		}
	}
	slices.SortFunc(cands, func(a, b int) int { return rank[a] - rank[b] })
	return cands[:min(n, len(cands))]
}

func u32Addr(n uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

func addrU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// entryLog is a switch's write log (dataplane.Options.OnWrite) reduced to
// what the harness waits for: the first INSERT or MODIFY of a
// vnet_destination entry with a (VNI, IP) it was told to expect, stamped
// with the time the switch applied it. Keys it was told must never come
// are recorded as violations.
type entryLog struct {
	table, vniField, ipField uint32

	mu        sync.Mutex
	want      map[uint64]chan time.Time
	forbidden map[uint64]bool
	violated  []uint64
}

func newEntryLog(s *p4rt.Schema) *entryLog {
	t, err := s.Table("vnet_destination")
	if err != nil {
		panic(err)
	}
	vni, err1 := t.Field("vni")
	ip, err2 := t.Field("dst_ip")
	if err1 != nil || err2 != nil {
		panic(fmt.Sprint(err1, err2))
	}
	return &entryLog{table: t.ID(), vniField: vni.GetId(), ipField: ip.GetId(), want: map[uint64]chan time.Time{}, forbidden: map[uint64]bool{}}
}

func destKey(vni uint32, ip netip.Addr) uint64 { return uint64(vni)<<32 | uint64(addrU32(ip)) }

// onWrite runs with the switch's store locked: a map probe, nothing more.
func (l *entryLog) onWrite(u *p4v1.Update) {
	te := u.GetEntity().GetTableEntry()
	if u.GetType() == p4v1.Update_DELETE || te.GetTableId() != l.table {
		return
	}
	var vni, ip uint64
	for _, m := range te.GetMatch() {
		var n uint64
		for _, c := range m.GetExact().GetValue() { // canonical: big-endian, leading zeros dropped
			n = n<<8 | uint64(c)
		}
		switch m.GetFieldId() {
		case l.vniField:
			vni = n
		case l.ipField:
			ip = n
		}
	}
	k := vni<<32 | ip
	at := time.Now()
	l.mu.Lock()
	if ch, ok := l.want[k]; ok {
		delete(l.want, k)
		ch <- at
	}
	if l.forbidden[k] {
		l.violated = append(l.violated, k)
	}
	l.mu.Unlock()
}

// expect returns a channel that receives when (vni, ip) is written.
func (l *entryLog) expect(vni uint32, ip netip.Addr) <-chan time.Time {
	ch := make(chan time.Time, 1)
	l.mu.Lock()
	l.want[destKey(vni, ip)] = ch
	l.mu.Unlock()
	return ch
}

func (l *entryLog) forbid(vni uint32, ip netip.Addr) {
	l.mu.Lock()
	l.forbidden[destKey(vni, ip)] = true
	l.mu.Unlock()
}

func (l *entryLog) violations() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, k := range l.violated {
		out = append(out, fmt.Sprintf("vni %d dst %s", k>>32, u32Addr(uint32(k))))
	}
	return out
}

// scaleHost is a sampled host: its switch and OHC run in the process.
type scaleHost struct {
	id     int
	sw     *dataplane.Switch
	log    *entryLog
	locals map[int]bool // VPCs it has VMs of
}

func (h *scaleHost) destinations(s *p4rt.Schema) int {
	st := h.sw.Server().Store()
	if st == nil {
		return 0
	}
	t, _ := s.Table("vnet_destination")
	st.RLock()
	defer st.RUnlock()
	return st.Table(t.ID()).Len()
}

// scaleRig is a running topology.
type scaleRig struct {
	topo   *scaleTopo
	schema *p4rt.Schema
	ctls   []*controller.Server
	dirs   []string
	gnmi   []gnmi.GNMIClient
	hosts  []*scaleHost
	// apply is each shard's startup import: the item store's commit of its whole
	// configuration (validate, write the file) and NewServer (derive
	// everything published), what p4mesh-controller does at a start.
	apply []time.Duration
	// ctlHeap is the live heap the four controllers and their gNMI
	// servers hold once started, before any OHC connects.
	ctlHeap uint64
	// ctlInuse and ctlSys are runtime.MemStats' HeapInuse and Sys then
	// (the whole process, which holds nothing else yet).
	ctlInuse, ctlSys uint64
	// generatedLive is how many of the configurations the harness
	// generated (each shard's Config, its endpoint and its host arrays)
	// were still reachable when ctlHeap was read: 0, or ctlHeap counts
	// them.
	generatedLive int
	// ohcCtx runs the OHCs; stop ends everything.
	ohcCtx context.Context
	// probe times each change's steps (scaletail_test.go).
	probe *tailProbe
	wg    sync.WaitGroup
	stop  func()
}

// startScale runs the topology's four controllers (gRPC and gNMI on
// loopback), then a switch and an OHC for each of sample.
func startScale(tb testing.TB, t *scaleTopo, sample []int) *scaleRig {
	info, err := p4.P4Info()
	if err != nil {
		tb.Fatal(err)
	}
	s, err := p4rt.NewSchema(info)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &scaleRig{topo: t, schema: s, ohcCtx: ctx, probe: newTailProbe(t.Shards)}
	var servers []*grpc.Server
	var conns []*grpc.ClientConn
	r.stop = func() {
		cancel()
		for _, c := range conns {
			c.Close()
		}
		for _, g := range servers {
			g.Stop()
		}
		r.wg.Wait()
	}
	tb.Cleanup(r.stop)
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		return l
	}
	serve := func(g *grpc.Server, l net.Listener) {
		servers = append(servers, g)
		r.wg.Go(func() { g.Serve(l) })
	}
	var gnmiAddrs []string
	lis := make([]net.Listener, t.Shards)
	addrs := make([]string, t.Shards)
	for i := range lis {
		lis[i] = listen()
		addrs[i] = lis[i].Addr().String()
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	// What the harness generates for the controllers is allocated after
	// before; what of it they keep (their copies, and the strings those
	// share: the endpoints' ids, VPC and host names, as they would share
	// a decoded --config's) is theirs, and counted. The rest must be
	// garbage by the time the heap is read, or it would be counted as
	// theirs: generated tells.
	var generated []func() bool
	for i := range t.Shards {
		cfg := t.config(i, addrs)
		generated = append(generated, weakly(cfg), weakly(&cfg.Endpoints[0]), weakly(&cfg.Hosts[0]))
		dir := tb.TempDir()
		start := time.Now()
		// The item store p4mesh-controller keeps by default: one key per
		// item in bbolt, a change one transaction.
		b, err := boltstore.Open(filepath.Join(dir, "store.db"), boltstore.Options{})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { b.Close() })
		store, err := controller.OpenItemStore(ctx, timedBackend{b, r.probe.commits[i]})
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := store.Startup(cfg, true); err != nil {
			tb.Fatal(err)
		}
		srv, err := controller.NewServer(controller.ServerOptions{Auth: identity.Auth{Insecure: true}, Store: store})
		if err != nil {
			tb.Fatal(err)
		}
		r.apply = append(r.apply, time.Since(start))
		r.ctls, r.dirs = append(r.ctls, srv), append(r.dirs, dir)
		g := grpc.NewServer()
		srv.Register(g)
		serve(g, lis[i])
		r.wg.Go(func() { srv.Run(ctx) })

		gs, err := gnmiserver.New(gnmiserver.Options{Auth: identity.Auth{Insecure: true}, Controller: srv})
		if err != nil {
			tb.Fatal(err)
		}
		gg := grpc.NewServer(grpc.MaxRecvMsgSize(p4gnmi.DefaultMaxMsgSize), grpc.MaxSendMsgSize(p4gnmi.DefaultMaxMsgSize), setStamper(r.probe.sets[i]))
		gs.Register(gg)
		gl := listen()
		serve(gg, gl)
		gnmiAddrs = append(gnmiAddrs, gl.Addr().String())
	}
	// What p4meshctl dials with --insecure.
	dialGNMI := func(addr string) *grpc.ClientConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(p4gnmi.DefaultMaxMsgSize), grpc.MaxCallSendMsgSize(p4gnmi.DefaultMaxMsgSize)))
		if err != nil {
			tb.Fatal(err)
		}
		return conn
	}
	// The gNMI servers index the configuration in the background: wait
	// for it, so that the heap counts it, with a Set that changes nothing
	// (a Get would build and keep the whole tree). Over a connection
	// closed before the heap is read: the harness's clients are not the
	// controllers'.
	for i, addr := range gnmiAddrs {
		conn := dialGNMI(addr)
		c := gnmi.NewGNMIClient(conn)
		e := t.endpoint(i) // of VPC i, on shard i
		val, err := json.Marshal(map[string]any{"id": e.ID, "vpc": e.VPC, "kind": "vm", "ip": e.IP.String(), "mac": e.MAC.String(), "host": e.Host, "port": e.Port})
		if err != nil {
			tb.Fatal(err)
		}
		path, err := ygot.StringToStructuredPath("/p4mesh/endpoints/endpoint[id=" + e.ID + "]/config")
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := c.Set(ctx, &gnmi.SetRequest{Update: []*gnmi.Update{{Path: path, Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: val}}}}}); err != nil {
			tb.Fatalf("set %s as it is: %v", e.ID, err)
		}
		conn.Close()
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	r.ctlHeap = after.HeapAlloc - min(before.HeapAlloc, after.HeapAlloc)
	r.generatedLive = count(generated, func(live func() bool) bool { return live() })
	r.ctlSys = after.Sys
	r.ctlInuse = after.HeapInuse
	if *scaleMemProfile != "" {
		f, err := os.Create(*scaleMemProfile)
		if err != nil {
			tb.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			tb.Fatal(err)
		}
		f.Close()
	}
	for _, addr := range gnmiAddrs {
		conn := dialGNMI(addr)
		conns = append(conns, conn)
		r.gnmi = append(r.gnmi, gnmi.NewGNMIClient(conn))
		// Connected now, not in the first measured Set.
		for st := conn.GetState(); st != connectivity.Ready; st = conn.GetState() {
			conn.Connect()
			if !conn.WaitForStateChange(ctx, st) {
				tb.Fatalf("gNMI client of %s: %v", addr, ctx.Err())
			}
		}
	}

	locals := t.localVPCs(sample)
	for _, h := range sample {
		sh := &scaleHost{id: h, log: newEntryLog(s), locals: locals[h]}
		sw, err := dataplane.NewSwitch(dataplane.SwitchOptions{Server: dataplane.Options{P4Info: info, OnWrite: sh.log.onWrite}})
		if err != nil {
			tb.Fatal(err)
		}
		sh.sw = sw
		l := listen()
		g := dataplane.NewGRPCServer()
		sw.Server().Register(g)
		serve(g, l)
		hp := &hostProbe{}
		r.probe.hosts[h] = hp
		plain := grpc.WithTransportCredentials(insecure.NewCredentials())
		r.wg.Go(func() {
			ohc.RunDaemon(ctx, ohc.DaemonOptions{Host: fmt.Sprintf("h%d", h), Controllers: addrs, Switch: l.Addr().String(), DeviceID: 1, ElectionID: 1,
				ControllerDial: []grpc.DialOption{plain, hp.controllerDial()}, SwitchDial: append([]grpc.DialOption{plain}, hp.switchDial()...)}, hp.ready)
		})
		r.hosts = append(r.hosts, sh)
	}
	return r
}

// weakly reports, when called, whether p is still reachable.
func weakly[T any](p *T) func() bool {
	w := weak.Make(p)
	return func() bool { return w.Value() != nil }
}

// waitProgrammed waits until every sampled switch holds exactly the
// vnet_destination entries its host must: the initial state, pulled and
// programmed.
func (r *scaleRig) waitProgrammed(tb testing.TB, limit time.Duration) {
	want := map[*scaleHost]int{}
	for _, h := range r.hosts {
		want[h] = r.topo.destinations(h.locals)
	}
	deadline := time.Now().Add(limit)
	for {
		var off []string
		for _, h := range r.hosts {
			if got := h.destinations(r.schema); got != want[h] {
				off = append(off, fmt.Sprintf("h%d %d of %d", h.id, got, want[h]))
			}
		}
		if len(off) == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %v, sampled switches do not hold their vnet_destination entries: %s", limit, strings.Join(off, ", "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tableLoads is, for each table some sampled switch has entries in, the
// most entries a sampled switch holds in it, against the table's size.
func (r *scaleRig) tableLoads() string {
	var out []string
	for _, tb := range r.schema.Tables() {
		n := 0
		for _, h := range r.hosts {
			st := h.sw.Server().Store()
			if st == nil {
				continue
			}
			st.RLock()
			if x := st.Table(tb.ID()); x != nil {
				n = max(n, x.Len())
			}
			st.RUnlock()
		}
		if n > 0 {
			out = append(out, fmt.Sprintf("%s %d of %d", tb.Name(), n, tb.GetSize()))
		}
	}
	return strings.Join(out, ", ")
}

func mustSchema(tb testing.TB) *p4rt.Schema {
	info, err := p4.P4Info()
	if err != nil {
		tb.Fatal(err)
	}
	s, err := p4rt.NewSchema(info)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// change is one endpoint added by a gNMI Set, as measured.
type change struct {
	id       string
	ip       netip.Addr
	accepted time.Duration // the Set's answer
	last     time.Duration // the last sampled host that must hold it has it
	host     int
	port     uint16
	vpc      int
	mac      controller.MAC
	// start is when the Set was sent; hostAt when each sampled host that
	// must hold the endpoint had its last entry of it.
	start  time.Time
	hostAt map[int]time.Time
	// must and mustNot are the VNIs each sampled host must, and must
	// never, hold the endpoint's entry under.
	must, mustNot map[int][]uint32
}

// addEndpoint adds a VM of VPC v on host h by a gNMI Set to v's
// controller, the one p4meshctl sends for
//
//	p4meshctl set --update '/p4mesh/endpoints/endpoint[id=ID]/config={…}'
//
// and waits until every sampled host that must hold it has its entry in
// its switch, as the switch's write log tells. Hosts that must not hold
// it are told to report it if it ever comes.
func (r *scaleRig) addEndpoint(tb testing.TB, v, h int, data bool, limit time.Duration) change {
	t := r.topo
	n := t.added
	t.added++
	k := t.Endpoints/t.VPCs + 1 + n // above every configured endpoint's k
	if 10+k >= 1<<12-1 {
		tb.Fatalf("VPC %d has no address left for change %d", v, n)
	}
	port := t.takePort(h)
	mac := controller.MAC{0x02, 0x03, 0, byte(n >> 16), byte(n >> 8), byte(n)}
	c := change{id: fmt.Sprintf("new%d", n), ip: t.addr(v, k, data), host: h, port: port, vpc: v, mac: mac, must: map[int][]uint32{}, mustNot: map[int][]uint32{}}
	val, err := r.endpointJSON(c)
	if err != nil {
		tb.Fatal(err)
	}
	path, err := ygot.StringToStructuredPath("/p4mesh/endpoints/endpoint[id=" + c.id + "]/config")
	if err != nil {
		tb.Fatal(err)
	}
	type wait struct {
		host int
		ch   <-chan time.Time
	}
	var waits []wait
	for _, sh := range r.hosts {
		for l := range sh.locals {
			if t.gets(l, v, data) {
				waits = append(waits, wait{sh.id, sh.log.expect(t.vni(l), c.ip)})
				c.must[sh.id] = append(c.must[sh.id], t.vni(l))
			} else {
				sh.log.forbid(t.vni(l), c.ip)
				c.mustNot[sh.id] = append(c.mustNot[sh.id], t.vni(l))
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	if _, err := r.gnmi[t.shardOf(v)].Set(ctx, &gnmi.SetRequest{Update: []*gnmi.Update{{Path: path,
		Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: val}}}}}); err != nil {
		tb.Fatalf("set %s: %v", c.id, err)
	}
	c.accepted = time.Since(start)
	c.start, c.hostAt = start, map[int]time.Time{}
	for _, w := range waits {
		select {
		case at := <-w.ch:
			c.last = max(c.last, at.Sub(start))
			if at.After(c.hostAt[w.host]) {
				c.hostAt[w.host] = at
			}
		case <-ctx.Done():
			tb.Fatalf("%s (%s in %s): host h%d never got its entry within %v", c.id, c.ip, t.vpcName(v), w.host, limit)
		}
	}
	return c
}

func (r *scaleRig) endpointJSON(c change) ([]byte, error) {
	return json.Marshal(map[string]any{"id": c.id, "vpc": r.topo.vpcName(c.vpc), "kind": "vm", "ip": c.ip.String(), "mac": c.mac.String(),
		"host": fmt.Sprintf("h%d", c.host), "port": c.port})
}

// mixChange is the -scale.mix change of kind k (1 edit, 2 replace, 3
// delete) of the endpoints added and still there, cs, which it updates:
// one gNMI Set, timed to its answer. It does not wait for the hosts.
func (r *scaleRig) mixChange(tb testing.TB, k int, cs *[]change, limit time.Duration) change {
	var c change
	var req *gnmi.SetRequest
	switch k {
	case 1, 2:
		i := len(*cs) - 1
		if k == 2 {
			i = len(*cs) / 2
		}
		old := (*cs)[i]
		c = old
		c.port = r.topo.takePort(c.host)
		r.topo.free[c.host] = append(r.topo.free[c.host], old.port)
		(*cs)[i] = c
		if k == 1 {
			p, err := ygot.StringToStructuredPath("/p4mesh/endpoints/endpoint[id=" + c.id + "]/config/port")
			if err != nil {
				tb.Fatal(err)
			}
			req = &gnmi.SetRequest{Update: []*gnmi.Update{{Path: p, Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_UintVal{UintVal: uint64(c.port)}}}}}
			break
		}
		conf, err := r.endpointJSON(c)
		if err != nil {
			tb.Fatal(err)
		}
		// The entry itself, so that it is deleted and put again.
		val := fmt.Appendf(nil, `{"id":%q,"config":%s}`, c.id, conf)
		p, err := ygot.StringToStructuredPath("/p4mesh/endpoints/endpoint[id=" + c.id + "]")
		if err != nil {
			tb.Fatal(err)
		}
		req = &gnmi.SetRequest{Replace: []*gnmi.Update{{Path: p, Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: val}}}}}
	case 3:
		c = (*cs)[0]
		*cs = (*cs)[1:]
		r.topo.free[c.host] = append(r.topo.free[c.host], c.port)
		p, err := ygot.StringToStructuredPath("/p4mesh/endpoints/endpoint[id=" + c.id + "]")
		if err != nil {
			tb.Fatal(err)
		}
		req = &gnmi.SetRequest{Delete: []*gnmi.Path{p}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	c.start = time.Now()
	if _, err := r.gnmi[r.topo.shardOf(c.vpc)].Set(ctx, req); err != nil {
		tb.Fatalf("change %d of %s: %v", k, c.id, err)
	}
	c.accepted, c.last = time.Since(c.start), 0
	return c
}

// deleteEndpoints deletes added endpoints of VPC v in one gNMI Set, and
// frees their ports.
func (r *scaleRig) deleteEndpoints(tb testing.TB, v int, cs []change) {
	req := &gnmi.SetRequest{}
	for _, c := range cs {
		p, err := ygot.StringToStructuredPath("/p4mesh/endpoints/endpoint[id=" + c.id + "]")
		if err != nil {
			tb.Fatal(err)
		}
		req.Delete = append(req.Delete, p)
	}
	if _, err := r.gnmi[r.topo.shardOf(v)].Set(context.Background(), req); err != nil {
		tb.Fatalf("delete %d endpoints: %v", len(cs), err)
	}
	for _, c := range cs {
		r.topo.free[c.host] = append(r.topo.free[c.host], c.port)
	}
}

// dataDirBytes is what the controllers' data directories hold.
func (r *scaleRig) dataDirBytes(tb testing.TB) int64 {
	var n int64
	for _, d := range r.dirs {
		err := filepath.WalkDir(d, func(_ string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			fi, err := e.Info()
			if err == nil {
				n += fi.Size()
			}
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return n
}

// peakRSS is the process's high-water resident set (VmHWM), in bytes.
func peakRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkScale: the four-shard topology at 10k, 100k and 1M endpoints
// (1,000 VPCs, N/100 hosts, -scale.hosts peered hosts and the changed
// endpoints' host running OHCs). Each iteration adds -scale.changes
// endpoints to vpc0 (three peers: vpc1 on shard 1, vpc999 on shard 3,
// vpc500 on shard 0), one gNMI Set each, on the host of vpc0's first
// endpoint, then deletes them in one Set (not measured). Before the OHCs
// start, it fails if a sampled host must hold more entries than a table
// of its switch has room for (the wait would never end), and logs the
// most a sampled host must hold, then what the switches hold. Reported:
//
//   - apply-s: the slowest shard's startup import (one item-store commit
//     of its whole configuration, and NewServer), apply-total-s all
//     four's;
//   - ctl-heap-MiB: the live heap of the four controllers and their gNMI
//     servers after GC, before any OHC connects (the heap allocated
//     since before the first controller's start and still reachable: the
//     topology is allocated before, and the configurations generated for
//     the controllers are garbage by then; TestScaleHarness checks it);
//     heap-inuse-MiB and sys-MiB, runtime.MemStats' HeapInuse and Sys
//     then (-scale.memprofile writes the heap profile then);
//   - data-MiB: the four data directories (each a bbolt store.db holding
//     the configuration and the peer sides);
//   - program-s: from the OHCs' start until every sampled switch holds
//     exactly its hosts' vnet_destination entries;
//   - set-p50/p99-ms: a Set's answer; last-host-p50/p99-ms: until the
//     last sampled host that must hold the endpoint has it in its switch
//     (the switch's write log, dataplane.Options.OnWrite);
//   - cpu-ms/change: the CPU the process used during the changes (all
//     its parts: controllers, gNMI, OHCs, switches) per change;
//   - peak-RSS-MiB: the whole process (controllers, OHCs, switches).
func BenchmarkScale(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"10k", 10_000}, {"100k", 100_000}, {"1M", 1_000_000}} {
		b.Run(size.name, func(b *testing.B) {
			topo := newScaleTopo(scaleSpec{Endpoints: size.n, VPCs: 1000, Hosts: size.n / 100, Shards: 4, VPCHosts: *scaleLocality, Seed: 14})
			const v = 0
			x := int(topo.host[v]) // endpoint 0 is vpc0's first
			var sample []int       // -scale.hosts=-1: the controllers alone
			if *scaleHosts >= 0 {
				sample = append([]int{x}, topo.peeredHosts(v, x, *scaleHosts)...)
				// A switch refuses entries beyond a table's size: the wait
				// for the initial programming would never end.
				most, err := topo.checkTables(mustSchema(b), sample)
				if err != nil {
					b.Fatalf("the sampled hosts cannot hold what they must (-scale.locality bounds a VPC's hosts): %v", err)
				}
				fmt.Fprintf(os.Stderr, "%s: sampled hosts must hold %s\n", b.Name(), most)
			}
			// A bound on liveness, not a goal: on 2 shared cores at load 17
			// the 100k start takes minutes.
			limit := 5*time.Minute + time.Duration(size.n)*5*time.Millisecond
			r := startScale(b, topo, sample)
			start := time.Now()
			r.waitProgrammed(b, limit)
			program := time.Since(start)
			if len(r.hosts) > 0 {
				fmt.Fprintf(os.Stderr, "%s: sampled switches hold, at most, %s\n", b.Name(), r.tableLoads())
			}

			var accepted, last []time.Duration
			var steps []breakdown
			r.probe.startTrace(b)
			var cpu time.Duration
			var prof *os.File
			if *scaleCPUProfile != "" {
				var err error
				if prof, err = os.Create(*scaleCPUProfile); err != nil {
					b.Fatal(err)
				}
				if err := pprof.StartCPUProfile(prof); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				var cs []change
				cpu0 := cpuTime()
				for i := range *scaleChanges {
					g0, w0 := readGC(), r.probe.wholeCompiles()
					if k := i % 4; *scaleMix && k != 0 && len(cs) > 0 {
						c := r.mixChange(b, k, &cs, limit)
						steps = append(steps, r.probe.observe(b, c, topo.shardOf(v), c.start, g0, w0, nil))
						accepted = append(accepted, c.accepted)
						continue
					}
					c := r.addEndpoint(b, v, x, false, limit)
					steps = append(steps, r.probe.observe(b, c, topo.shardOf(v), c.start, g0, w0, c.hostAt))
					accepted, last = append(accepted, c.accepted), append(last, c.last)
					cs = append(cs, c)
				}
				cpu += cpuTime() - cpu0
				b.StopTimer()
				r.deleteEndpoints(b, v, cs)
				b.StartTimer()
			}
			r.probe.stopTrace()
			reportBreakdown(b, steps, *scaleBreakdown)
			if prof != nil {
				pprof.StopCPUProfile()
				if err := prof.Close(); err != nil {
					b.Fatal(err)
				}
			}
			for _, h := range r.hosts {
				if v := h.log.violations(); len(v) > 0 {
					b.Fatalf("h%d got entries it must not hold: %v", h.id, v)
				}
			}
			apply := slices.Max(r.apply)
			var total time.Duration
			for _, d := range r.apply {
				total += d
			}
			b.ReportMetric(apply.Seconds(), "apply-s")
			b.ReportMetric(total.Seconds(), "apply-total-s")
			b.ReportMetric(float64(r.ctlHeap)/(1<<20), "ctl-heap-MiB")
			b.ReportMetric(float64(r.dataDirBytes(b))/(1<<20), "data-MiB")
			b.ReportMetric(program.Seconds(), "program-s")
			b.ReportMetric(pct(accepted, 50), "set-p50-ms")
			b.ReportMetric(pct(accepted, 90), "set-p90-ms")
			b.ReportMetric(pct(accepted, 99), "set-p99-ms")
			b.ReportMetric(pct(accepted, 100), "set-max-ms")
			if len(r.hosts) > 0 {
				b.ReportMetric(pct(last, 50), "last-host-p50-ms")
				b.ReportMetric(pct(last, 90), "last-host-p90-ms")
				b.ReportMetric(pct(last, 99), "last-host-p99-ms")
				b.ReportMetric(pct(last, 100), "last-host-max-ms")
			}
			b.ReportMetric(float64(r.ctlInuse)/(1<<20), "heap-inuse-MiB")
			b.ReportMetric(float64(r.ctlSys)/(1<<20), "sys-MiB")
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(len(accepted)), "cpu-ms/change")
			b.ReportMetric(float64(peakRSS())/(1<<20), "peak-RSS-MiB")
			b.ReportMetric(float64(len(r.hosts)), "hosts-sampled")
		})
	}
}

// pct is the p-th percentile of ds, in milliseconds (nearest rank).
func pct(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	i := (len(s)*p + 99) / 100
	return float64(s[max(i, 1)-1].Microseconds()) / 1000
}

// TestScaleHarness runs BenchmarkScale's harness on a tiny topology (4
// shards, 12 VPCs, 48 endpoints on 12 hosts, an OHC on every host) and
// checks what the benchmark's numbers rest on: the generated
// configuration is accepted; every switch ends up with exactly the
// vnet_destination entries the topology says its host must hold (so the
// wait before measuring is neither too short nor endless); an endpoint
// added by a gNMI Set reaches every host that must hold it, under each
// VNI it must; and no host that must not hold it (no VM of its VPC or of
// a peer, or a peer whose side exports only app) ever gets it written.
//
// It runs with each placement: every VPC over every host, and each on 4
// hosts (-scale.locality).
func TestScaleHarness(t *testing.T) {
	for _, vpcHosts := range []int{0, 4} {
		t.Run(fmt.Sprintf("locality=%d", vpcHosts), func(t *testing.T) { testScaleHarness(t, vpcHosts) })
	}
}

func testScaleHarness(t *testing.T, vpcHosts int) {
	topo := newScaleTopo(scaleSpec{Endpoints: 48, VPCs: 12, Hosts: 12, Shards: 4, VPCHosts: vpcHosts, Seed: 14})
	all := make([]int, topo.Hosts)
	for h := range all {
		all[h] = h
	}
	r := startScale(t, topo, all)
	if r.generatedLive > 0 {
		t.Errorf("%d of the configurations the harness generated were reachable when the controllers' heap was read: it counts them", r.generatedLive)
	}
	r.waitProgrammed(t, time.Minute)
	// checkTables' model of the tables that grow with the endpoints is
	// what the switches hold (vnet_destination is waitProgrammed's).
	arp, err := r.schema.Table("arp_proxy")
	if err != nil {
		t.Fatal(err)
	}
	loads := topo.loads()
	for _, h := range r.hosts {
		st := h.sw.Server().Store()
		st.RLock()
		n := st.Table(arp.ID()).Len()
		st.RUnlock()
		if n != loads[h.id].arp {
			t.Errorf("h%d holds %d arp_proxy entries, the topology says %d", h.id, n, loads[h.id].arp)
		}
	}

	const v = 0
	x := int(topo.host[v])
	app := r.addEndpoint(t, v, x, false, 30*time.Second)
	data := r.addEndpoint(t, v, x, true, 30*time.Second)

	if len(app.must) < 3 {
		t.Fatalf("only %d hosts must hold %s: the topology measures too little", len(app.must), app.id)
	}
	var bystanders, filtered int
	for _, h := range r.hosts {
		if len(app.must[h.id]) == 0 {
			bystanders++
		}
		if len(data.mustNot[h.id]) > 0 && len(app.must[h.id]) > len(data.must[h.id]) {
			filtered++
		}
	}
	if bystanders == 0 || filtered == 0 {
		t.Fatalf("%d hosts with no VM of vpc0 or a peer, %d that the app policy filters: the test needs both", bystanders, filtered)
	}
	t.Logf("%s must reach %d hosts, %s %d; %d bystanders, %d filtered", app.id, len(app.must), data.id, len(data.must), bystanders, filtered)
	// A write that should not come would come with or soon after the
	// ones that should; the store is checked too.
	time.Sleep(200 * time.Millisecond)
	for _, h := range r.hosts {
		if v := h.log.violations(); len(v) > 0 {
			t.Errorf("h%d was written entries it must not hold: %v", h.id, v)
		}
		for _, c := range []change{app, data} {
			for _, vni := range c.must[h.id] {
				if !hasEntry(h.sw, r.schema, vni, c.ip) {
					t.Errorf("h%d: no entry for %s (%s) under VNI %d", h.id, c.id, c.ip, vni)
				}
			}
			for _, vni := range c.mustNot[h.id] {
				if hasEntry(h.sw, r.schema, vni, c.ip) {
					t.Errorf("h%d: an entry for %s (%s) under VNI %d, which must not be", h.id, c.id, c.ip, vni)
				}
			}
		}
	}

	// -scale.mix's changes do what they say in the controller.
	cs := []change{app, data, r.addEndpoint(t, v, x, false, 30*time.Second)}
	edited := r.mixChange(t, 1, &cs, 30*time.Second)
	replaced := r.mixChange(t, 2, &cs, 30*time.Second)
	deleted := r.mixChange(t, 3, &cs, 30*time.Second)
	cfg := r.ctls[topo.shardOf(v)].Config()
	port := func(id string) (uint16, int) {
		i := slices.IndexFunc(cfg.Endpoints, func(e controller.Endpoint) bool { return e.ID == id })
		if i < 0 {
			return 0, -1
		}
		return cfg.Endpoints[i].Port, i
	}
	if p, _ := port(edited.id); p != edited.port {
		t.Errorf("edited %s: port %d, want %d", edited.id, p, edited.port)
	}
	if p, i := port(replaced.id); p != replaced.port || i != len(cfg.Endpoints)-1 {
		t.Errorf("replaced %s: port %d at %d of %d, want %d at the end", replaced.id, p, i, len(cfg.Endpoints), replaced.port)
	}
	if _, i := port(deleted.id); i >= 0 || deleted.id != app.id || len(cs) != 2 {
		t.Errorf("deleted %s (the first added, %s): still there at %d; %d left", deleted.id, app.id, i, len(cs))
	}
}

// TestScalePlacement checks the bounded placement (-scale.locality) at
// BenchmarkScale's three sizes: every endpoint is on a host of its VPC's
// window, a VPC is on no more hosts than the bound, the hosts are evenly
// loaded (within their switches' ports), and every host's tables hold
// what it must (vnet_destination, arp_proxy, port_vnet under the sizes in
// vpc_peering.p4). The spread placement at 1M must fail the same check:
// it is why the bound exists.
func TestScalePlacement(t *testing.T) {
	s := mustSchema(t)
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		topo := newScaleTopo(scaleSpec{Endpoints: n, VPCs: 1000, Hosts: n / 100, Shards: 4, VPCHosts: 100, Seed: 14})
		// A VPC's endpoints are j ≡ v (mod VPCs): its hosts are counted
		// one VPC at a time, with a host's last VPC marked.
		perHost, mark := make([]int, topo.Hosts), make([]int, topo.Hosts)
		for v := range topo.VPCs {
			on := 0
			for j := v; j < n; j += topo.VPCs {
				h := int(topo.host[j])
				if !topo.inWindow(v, h) {
					t.Fatalf("%d endpoints: ep%d of vpc%d on h%d, outside its hosts h%d..+%d", n, j, v, h, topo.firstHost(v), topo.vpcHosts())
				}
				if mark[h] != v+1 {
					mark[h] = v + 1
					on++
				}
				perHost[h]++
			}
			if on > 100 {
				t.Fatalf("%d endpoints: vpc%d is on %d hosts, over 100", n, v, on)
			}
		}
		if lo, hi := slices.Min(perHost), slices.Max(perHost); lo != n/topo.Hosts || hi != lo {
			t.Fatalf("%d endpoints: %d to %d endpoints a host, want %d each", n, lo, hi, n/topo.Hosts)
		}
		all := make([]int, topo.Hosts)
		for h := range all {
			all[h] = h
		}
		most, err := topo.checkTables(s, all)
		if err != nil {
			t.Fatalf("%d endpoints on hosts of their VPC's 100: %v", n, err)
		}
		t.Logf("%d endpoints, %d hosts, a VPC on at most 100: %s", n, topo.Hosts, most)
	}
	spread := newScaleTopo(scaleSpec{Endpoints: 1_000_000, VPCs: 1000, Hosts: 10_000, Shards: 4, Seed: 14})
	x := int(spread.host[0])
	if most, err := spread.checkTables(s, append([]int{x}, spread.peeredHosts(0, x, 8)...)); err == nil {
		t.Fatalf("1M endpoints, every VPC over every host: the sampled hosts fit their tables (%s); the check cannot fail", most)
	} else {
		t.Logf("1M endpoints, every VPC over every host: %v", err)
	}
}
