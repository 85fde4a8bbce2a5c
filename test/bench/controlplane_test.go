package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

// The control-plane benchmarks of the design: convergence with many hosts,
// state per host against a full copy, and controller memory.

// cpMAC builds a MAC from a kind byte and an index.
func cpMAC(kind byte, i int) controller.MAC {
	return controller.MAC{0x02, kind, 0, byte(i >> 16), byte(i >> 8), byte(i)}
}

// twoShards is c1 owning red (one VM on each of n hosts) and c2 owning
// blue, peered both ways: every host is a peered host of blue.
func twoShards(addrs [2]string, n int) (c1, c2 *controller.Config) {
	dir := []controller.ControllerEntry{{Name: "c1", Address: addrs[0], VPCs: []string{"red"}}, {Name: "c2", Address: addrs[1], VPCs: []string{"blue"}}}
	var hosts []controller.Host
	for i := range n {
		ip := netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i + 1)})
		hosts = append(hosts, controller.Host{ID: fmt.Sprintf("h%d", i), UnderlayIP: ip, MAC: cpMAC(0xfe, i), UplinkPort: 1,
			UnderlayRoutes: []controller.UnderlayRoute{{Prefix: netip.MustParsePrefix("192.168.0.0/16"), Port: 1, SrcMAC: cpMAC(0xfe, i), DstMAC: cpMAC(0xfd, 0)}}})
	}
	c1 = &controller.Config{Controller: "c1", Directory: dir, Hosts: hosts,
		VPCs:           []controller.VPC{{Name: "red", VNI: 100, Subnets: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}},
		ExportPolicies: []controller.ExportPolicy{{Name: "all"}},
		Peerings:       []controller.Peering{{VPC: "red", PeerVPC: "blue", ExportPolicy: "all"}}}
	for i := range n {
		c1.Endpoints = append(c1.Endpoints, controller.Endpoint{ID: fmt.Sprintf("red-%d", i), VPC: "red", Kind: controller.KindVM,
			IP: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i + 10)}), MAC: cpMAC(0x01, i), Host: fmt.Sprintf("h%d", i), Port: 2})
	}
	c2 = &controller.Config{Controller: "c2", Directory: dir, Hosts: hosts,
		VPCs:           []controller.VPC{{Name: "blue", VNI: 200, Subnets: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}}},
		ExportPolicies: []controller.ExportPolicy{{Name: "all"}},
		Peerings:       []controller.Peering{{VPC: "blue", PeerVPC: "red", ExportPolicy: "all"}},
		Endpoints: []controller.Endpoint{{ID: "blue-0", VPC: "blue", Kind: controller.KindVM, IP: netip.MustParseAddr("10.2.0.10"),
			MAC: cpMAC(0x02, 0), Host: "h0", Port: 3}}}
	return c1, c2
}

type cpMesh struct {
	ctls     map[string]*controller.Server
	switches []*dataplane.Switch
	stop     func()
}

// startCP runs two controllers, n switches (no ports: the benchmark reads
// their tables) and n OHCs, all in this process over loopback gRPC.
func startCP(b *testing.B, n int) *cpMesh {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var servers []*grpc.Server
	m := &cpMesh{ctls: map[string]*controller.Server{}}
	var lis [2]net.Listener
	var addrs [2]string
	for i := range lis {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		lis[i], addrs[i] = l, l.Addr().String()
	}
	c1, c2 := twoShards(addrs, n)
	for i, cfg := range []*controller.Config{c1, c2} {
		store, err := controller.OpenStore(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		if err := store.Apply(cfg); err != nil {
			b.Fatal(err)
		}
		srv, err := controller.NewServer(controller.ServerOptions{Auth: identity.Auth{Insecure: true}, Store: store})
		if err != nil {
			b.Fatal(err)
		}
		g := grpc.NewServer()
		srv.Register(g)
		servers = append(servers, g)
		m.ctls[cfg.Controller] = srv
		wg.Add(2)
		go func() { defer wg.Done(); g.Serve(lis[i]) }()
		go func() { defer wg.Done(); srv.Run(ctx) }()
	}
	info, _ := p4.P4Info()
	for i := range n {
		sw, err := dataplane.NewSwitch(dataplane.SwitchOptions{Server: dataplane.Options{P4Info: info}})
		if err != nil {
			b.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		g := dataplane.NewGRPCServer()
		sw.Server().Register(g)
		servers = append(servers, g)
		m.switches = append(m.switches, sw)
		wg.Add(2)
		go func() { defer wg.Done(); g.Serve(l) }()
		go func() {
			defer wg.Done()
			ohc.RunDaemon(ctx, ohc.DaemonOptions{Host: fmt.Sprintf("h%d", i), Controllers: addrs[:], Switch: l.Addr().String(), DeviceID: 1, ElectionID: 1}, nil)
		}()
	}
	m.stop = func() {
		cancel()
		for _, g := range servers {
			g.Stop()
		}
		wg.Wait()
	}
	return m
}

// hasEntry looks (vni, ip) up in a switch's vnet_destination, as a packet would.
func hasEntry(sw *dataplane.Switch, s *p4rt.Schema, vni uint32, ip netip.Addr) bool {
	st := sw.Server().Store()
	if st == nil {
		return false
	}
	t, _ := s.Table("vnet_destination")
	a := ip.As4()
	key := []byte{byte(vni >> 16), byte(vni >> 8), byte(vni), a[0], a[1], a[2], a[3]}
	st.RLock()
	defer st.RUnlock()
	tbl := st.Table(t.ID())
	e := tbl.Lookup(key)
	return e != nil && e != tbl.Default
}

// BenchmarkConvergence: an endpoint is added in blue; the time until every
// peered host's switch holds its entry, per host, as p50 and p99.
func BenchmarkConvergence(b *testing.B) {
	info, _ := p4.P4Info()
	s, _ := p4rt.NewSchema(info)
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			m := startCP(b, n)
			defer m.stop()
			// Wait for the initial state everywhere.
			deadline := time.Now().Add(60 * time.Second)
			for _, sw := range m.switches {
				for !hasEntry(sw, s, 100, netip.MustParseAddr("10.2.0.10")) {
					if time.Now().After(deadline) {
						b.Fatal("initial state never converged")
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			var lat []time.Duration
			i := 0
			for b.Loop() {
				i++
				ip := netip.AddrFrom4([4]byte{10, 2, 100 + byte(i>>8), byte(i)})
				c2 := m.ctls["c2"]
				cfg := c2.Config().Clone()
				cfg.Endpoints = append(cfg.Endpoints, controller.Endpoint{ID: fmt.Sprintf("blue-new-%d", i), VPC: "blue", Kind: controller.KindVM,
					IP: ip, MAC: cpMAC(0x03, i), Host: fmt.Sprintf("h%d", i%n), Port: uint16(4 + (i/n)%200)})
				start := time.Now()
				if err := c2.Apply(cfg); err != nil {
					b.Fatal(err)
				}
				pending := slices.Clone(m.switches)
				for len(pending) > 0 {
					pending = slices.DeleteFunc(pending, func(sw *dataplane.Switch) bool {
						if hasEntry(sw, s, 100, ip) {
							lat = append(lat, time.Since(start))
							return true
						}
						return false
					})
					if time.Since(start) > 30*time.Second {
						b.Fatalf("%d hosts never got the entry", len(pending))
					}
					time.Sleep(200 * time.Microsecond)
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkEntriesPerHost: a host with one VM in a VPC peered with k-1
// others, each peer with 10 endpoints exporting one /24 of its /16 (3
// endpoints inside it): the entries the OHC compiles under limited pull,
// against the full-copy alternative (every endpoint of every VPC in the
// group). Compile-only: it counts what would be programmed.
func BenchmarkEntriesPerHost(b *testing.B) {
	info, _ := p4.P4Info()
	s, _ := p4rt.NewSchema(info)
	for _, k := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("vpcs=%d", k), func(b *testing.B) {
			hostIP := netip.MustParseAddr("192.168.0.1")
			v := &ohc.View{
				Host: ohc.Host{ID: "h", IP: hostIP, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1},
					UnderlayRoutes: []ohc.UnderlayRoute{{Prefix: netip.MustParsePrefix("192.168.0.0/16"), Port: 1, SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}}},
				VPCs:   map[string]ohc.VPC{"v0": {Name: "v0", VNI: 1, Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")}}},
				Local:  []ohc.LocalEndpoint{{ID: "vm", VPC: "v0", IP: netip.MustParseAddr("10.0.0.10"), MAC: net.HardwareAddr{2, 1, 0, 0, 0, 1}, Port: 2}},
				Remote: map[string][]ohc.RemoteEndpoint{},
			}
			full := 0
			for p := 1; p < k; p++ {
				name := fmt.Sprintf("v%d", p)
				// 10.x.y.0/16 per VPC: 16 bits of VPC number.
				base := [4]byte{byte(10 + p>>8), byte(p), 0, 0}
				exported := netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], 1, 0}), 24)
				v.Peerings = append(v.Peerings, ohc.Peering{VPC: "v0", PeerVPC: name, PeerVNI: uint32(p + 1), Active: true, PeerPrefixes: []netip.Prefix{exported}})
				for e := range 10 {
					third := byte(1)
					if e >= 3 {
						third = 2 // not exported
					}
					ip := netip.AddrFrom4([4]byte{base[0], base[1], third, byte(10 + e)})
					full++
					if exported.Contains(ip) {
						v.Remote[name] = append(v.Remote[name], ohc.RemoteEndpoint{IP: ip, MAC: net.HardwareAddr{2, 2, 0, byte(p >> 8), byte(p), byte(e)},
							HostIP: netip.AddrFrom4([4]byte{192, 168, byte(p >> 8), byte(p)})})
					}
				}
			}
			var n int
			for b.Loop() {
				es, err := ohc.Compile(s, v)
				if err != nil {
					b.Fatal(err)
				}
				n = len(es)
			}
			b.ReportMetric(float64(n), "entries")
			b.ReportMetric(float64(full+1), "full-copy-endpoints")
		})
	}
}

// BenchmarkControllerMemory: the heap a controller holds with 100k
// endpoints configured and published (one VPC of 100k VMs over 1000 hosts).
func BenchmarkControllerMemory(b *testing.B) {
	for b.Loop() {
		cfg := bigVPC(100_000, 1000)
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		store, err := controller.OpenStore(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		if err := store.Apply(cfg); err != nil {
			b.Fatal(err)
		}
		srv, err := controller.NewServer(controller.ServerOptions{Auth: identity.Auth{Insecure: true}, Store: store})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB-heap")
		runtime.KeepAlive(srv)
	}
}

// bigVPC is controller c1 owning one VPC, big, of n VMs spread over hosts
// hosts (VM i on host h<i%hosts>), with nothing peered.
func bigVPC(n, hosts int) *controller.Config {
	var hs []controller.Host
	for i := range hosts {
		hs = append(hs, controller.Host{ID: fmt.Sprintf("h%d", i), UnderlayIP: netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i + 1)}), MAC: cpMAC(0xfe, i), UplinkPort: 1})
	}
	cfg := &controller.Config{Controller: "c1", Hosts: hs,
		Directory: []controller.ControllerEntry{{Name: "c1", Address: "127.0.0.1:1", VPCs: []string{"big"}}},
		VPCs:      []controller.VPC{{Name: "big", VNI: 100, Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}}
	for i := range n {
		cfg.Endpoints = append(cfg.Endpoints, controller.Endpoint{ID: fmt.Sprintf("vm-%d", i), VPC: "big", Kind: controller.KindVM,
			IP: netip.AddrFrom4([4]byte{10, byte((i + 2) >> 16), byte((i + 2) >> 8), byte(i + 2)}), MAC: cpMAC(0x01, i), Host: fmt.Sprintf("h%d", i%hosts), Port: uint16(2 + i/hosts)})
	}
	return cfg
}
