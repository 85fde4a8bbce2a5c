package ohc

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/watch"
)

// routesStream is the handler Run gives a subscription's routes stream.
func routesStream(a *Agent, s *subscription) watch.Handler {
	return a.routesHandler(s.routes, &s.rpart)
}

// BenchmarkAgentRouteChange: one route change through the agent at 1k,
// 10k and 100k routes, as Run takes it: the routes stream's event applied
// (a /24 learned, then withdrawn, alternately; single next hop or ECMP
// over two routers), the view assembled (Agent.assemble) and compiled
// with the agent's change (Compiler.CompileChange, what the programmer
// calls), then handed over. The host has VPC red with a VM, three
// routers of red on other hosts, and n routes of red (/32s, every third
// ECMP over two routers). incremental/op is the share of compiles that
// took the incremental path. Not included: the coalescing sleep, the
// demand filter and the switch write (a few entities).
func BenchmarkAgentRouteChange(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		for _, kind := range []string{"single", "ecmp"} {
			b.Run(fmt.Sprintf("routes=%d/%s", n, kind), func(b *testing.B) {
				a, err := NewAgent(AgentOptions{Host: "a", Controllers: []string{"c1"}, Programmer: &Programmer{}})
				if err != nil {
					b.Fatal(err)
				}
				hp := &hostProgramming{view: &watch.View{}}
				a.hosts["c1"] = hp
				h := a.handler(hp.view, &hp.part)
				put := func(h watch.Handler, key string, ev *p4meshv1.Event) {
					ev.Type, ev.Key = p4meshv1.Event_PUT, key
					h.Put(key, ev)
				}
				put(h, "host", &p4meshv1.Event{Value: &p4meshv1.Event_Host{Host: &p4meshv1.HostInfo{Id: "a", UnderlayIp: "192.168.0.1", Mac: "02:00:00:00:00:01"}}})
				put(h, "vpc/red", &p4meshv1.Event{Value: &p4meshv1.Event_Vpc{Vpc: &p4meshv1.VPC{Name: "red", Vni: 100,
					GatewayIp: "10.1.0.1", GatewayMac: "02:00:00:00:ff:01", Subnets: []string{"10.1.0.0/24"}}}})
				put(h, "endpoint/red-vm1", &p4meshv1.Event{Value: &p4meshv1.Event_LocalEndpoint{LocalEndpoint: &p4meshv1.LocalEndpoint{
					Id: "red-vm1", Vpc: "red", Ip: "10.1.0.5", Mac: "02:00:00:01:00:05", Port: 1}}})
				h.Synced(1)
				k := subKey{addr: "c1", vpc: "red"}
				s := newSubscription(k)
				a.subs[k] = s
				dest, fwd := a.handler(s.dest, &s.part), a.handler(s.fwd, &s.part)
				for j := range 3 {
					ip := fmt.Sprintf("10.1.0.%d", 40+j)
					put(dest, "red/"+ip, &p4meshv1.Event{Value: &p4meshv1.Event_Destination{Destination: &p4meshv1.Destination{Vpc: "red", Ip: ip}}})
					put(fwd, "red/"+ip, &p4meshv1.Event{Value: &p4meshv1.Event_Forwarding{Forwarding: &p4meshv1.Forwarding{Vpc: "red", Ip: ip,
						Mac: fmt.Sprintf("02:00:00:01:00:%02x", 0x40+j), HostIp: fmt.Sprintf("192.168.0.%d", 2+j%2)}}})
				}
				a.handler(s.lbs, &s.part).Synced(1)
				dest.Synced(1)
				fwd.Synced(1)
				rs := routesStream(a, s)
				route := func(prefix string, hops ...string) *p4meshv1.Event {
					r := &p4meshv1.Route{Vpc: "red", Prefix: prefix, NextHopIp: hops[0]}
					if len(hops) > 1 {
						r.NextHopIps = hops
					}
					return &p4meshv1.Event{Type: p4meshv1.Event_PUT, Key: "route/red/" + prefix, Value: &p4meshv1.Event_Route{Route: r}}
				}
				for i := range n {
					p := netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(16 + i>>16), byte(i >> 8), byte(i)}), 32).String()
					ev := route(p, []string{"10.1.0.40", "10.1.0.41"}[i%2])
					if i%3 == 0 {
						ev = route(p, "10.1.0.40", "10.1.0.41")
					}
					rs.Put(ev.Key, ev)
				}
				rs.Synced(1)
				cc := NewCompiler(demandSchema(b))
				hand := func() bool {
					as := a.assemble()
					before := cc.inc.incremental
					if _, err := cc.CompileChange(as.view, as.change); err != nil {
						b.Fatal(err)
					}
					for _, p := range as.parts {
						p.pending = ViewChange{}
					}
					a.handedView, a.handedParts = as.view, as.parts
					return cc.inc.incremental != before
				}
				hand()
				extra := route("172.15.0.0/24", "10.1.0.41")
				if kind == "ecmp" {
					extra = route("172.15.0.0/24", "10.1.0.40", "10.1.0.41")
				}
				var rev uint64 = 1
				inc := 0
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					rev++
					if i%2 == 0 {
						rs.Put(extra.Key, extra)
					} else {
						rs.Delete(extra.Key, rev)
					}
					if hand() {
						inc++
					}
				}
				b.ReportMetric(float64(inc)/float64(b.N), "incremental/op")
			})
		}
	}
}
