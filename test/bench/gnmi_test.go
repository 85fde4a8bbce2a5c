package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/demo"
	gnmiserver "github.com/p4mesh/p4mesh/gnmi/server"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

// BenchmarkGNMISetToEntry: on the in-memory demo, a gNMI Set on c2 (over
// gRPC on loopback) adds an endpoint in blue; the time from sending the Set
// until the entry is in the vnet_destination of red's hosts (h1 and h3,
// peered with blue), per host, as p50 and p99, and until both have it.
func BenchmarkGNMISetToEntry(b *testing.B) {
	topo := demo.DemoTopology([2]string{"", ""})
	f := demo.NewMemFabric(topo)
	defer f.Close()
	m, err := demo.Start(context.Background(), demo.Options{Fabric: f, DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	gs, err := gnmiserver.New(gnmiserver.Options{Auth: identity.Auth{Insecure: true}, Controller: m.Controllers["c2"]})
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	g := grpc.NewServer()
	gs.Register(g)
	go g.Serve(lis)
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := gnmi.NewGNMIClient(conn)

	info, _ := p4.P4Info()
	s, _ := p4rt.NewSchema(info)
	peered := []*dataplane.Switch{m.Switches["h1"], m.Switches["h3"]}
	blue1 := topo.VM("blue-1").IP
	deadline := time.Now().Add(30 * time.Second)
	for _, sw := range peered {
		for !hasEntry(sw, s, 100, blue1) {
			if time.Now().After(deadline) {
				b.Fatal("the demo never converged")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	var each, all []time.Duration
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprintf("blue-new-%d", i)
		ip := netip.AddrFrom4([4]byte{10, 2, 100 + byte(i>>8), byte(i)})
		mac := cpMAC(0x03, i)
		p, err := ygot.StringToStructuredPath("/p4mesh/endpoints/endpoint[id=" + id + "]")
		if err != nil {
			b.Fatal(err)
		}
		val := fmt.Sprintf(`{"id":%q,"config":{"id":%q,"vpc":"blue","kind":"vm","ip":"%s","mac":"%s","host":"h2","port":%d}}`,
			id, id, ip, mac, 10+i)
		start := time.Now()
		if _, err := c.Set(context.Background(), &gnmi.SetRequest{Update: []*gnmi.Update{{Path: p,
			Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: []byte(val)}}}}}); err != nil {
			b.Fatal(err)
		}
		pending := slices.Clone(peered)
		for len(pending) > 0 {
			pending = slices.DeleteFunc(pending, func(sw *dataplane.Switch) bool {
				if hasEntry(sw, s, 100, ip) {
					each = append(each, time.Since(start))
					return true
				}
				return false
			})
			if time.Since(start) > 30*time.Second {
				b.Fatalf("%d hosts never got %s", len(pending), id)
			}
			time.Sleep(200 * time.Microsecond)
		}
		all = append(all, time.Since(start))
	}
	slices.Sort(each)
	slices.Sort(all)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(each[len(each)/2]), "p50-ms")
	b.ReportMetric(ms(each[len(each)*99/100]), "p99-ms")
	b.ReportMetric(ms(all[len(all)*99/100]), "p99-both-ms")
}
