package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/store/boltstore"
)

// bigConfig is one VPC, "big", of n endpoints spread over hosts hosts.
func bigConfig(n, hosts int) *controller.Config {
	var hs []controller.Host
	for i := range hosts {
		hs = append(hs, controller.Host{ID: fmt.Sprintf("h%d", i), UnderlayIP: netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i + 1)}),
			MAC: controller.MAC{2, 0xfe, 0, 0, byte(i >> 8), byte(i)}, UplinkPort: 1})
	}
	cfg := &controller.Config{Controller: "c1", Hosts: hs,
		Directory: []controller.ControllerEntry{{Name: "c1", Address: "127.0.0.1:1", VPCs: []string{"big"}}},
		VPCs:      []controller.VPC{{Name: "big", VNI: 100, Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}}
	cfg.Endpoints = make([]controller.Endpoint, 0, n)
	for i := range n {
		cfg.Endpoints = append(cfg.Endpoints, bigEndpoint(i, hosts))
	}
	return cfg
}

// bigEndpoint is the i-th endpoint of bigConfig.
func bigEndpoint(i, hosts int) controller.Endpoint {
	return controller.Endpoint{ID: fmt.Sprintf("vm-%d", i), VPC: "big", Kind: controller.KindVM,
		IP:  netip.AddrFrom4([4]byte{10, byte((i + 2) >> 16), byte((i + 2) >> 8), byte(i + 2)}),
		MAC: controller.MAC{2, 1, 0, byte(i >> 16), byte(i >> 8), byte(i)}, Host: fmt.Sprintf("h%d", i%hosts), Port: uint16(2 + i/hosts)}
}

// BenchmarkGetEndpoints: a Get of /p4mesh/endpoints (config and state)
// with 100k endpoints configured (one VPC over 1000 hosts), as JSON_IETF,
// through Server.Get without gRPC (the answer is far above gRPC's default
// 4 MB message limit). Reports the answer's size. Two cases: the tree
// shared between Gets (configuration and state unchanged), and rebuilt
// for every Get (the first Get after a change).
func BenchmarkGetEndpoints(b *testing.B) {
	const endpoints, hosts = 100_000, 1000
	store, err := controller.OpenStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	if err := store.Apply(bigConfig(endpoints, hosts)); err != nil {
		b.Fatal(err)
	}
	ctl, err := controller.NewServer(controller.ServerOptions{Auth: identity.Auth{Insecure: true}, Store: store})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(Options{Auth: identity.Auth{Insecure: true}, Controller: ctl})
	if err != nil {
		b.Fatal(err)
	}
	req := &gnmi.GetRequest{Path: []*gnmi.Path{{Elem: []*gnmi.PathElem{{Name: "p4mesh"}, {Name: "endpoints"}}}}, Encoding: gnmi.Encoding_JSON_IETF}
	// cached: the configuration and state do not change between Gets, so
	// they share one tree. rebuilt: every Get builds the tree, as the
	// first Get after a change does.
	for _, rebuild := range []bool{false, true} {
		name := "cached"
		if rebuild {
			name = "rebuilt"
		}
		b.Run(name, func(b *testing.B) {
			if _, err := srv.Get(context.Background(), req); err != nil { // warm: the tree, the JSON writer's plan
				b.Fatal(err)
			}
			b.ReportAllocs()
			var size int
			for b.Loop() {
				if rebuild {
					srv.treeMu.Lock()
					srv.tree = nil
					srv.treeMu.Unlock()
				}
				resp, err := srv.Get(context.Background(), req)
				if err != nil {
					b.Fatal(err)
				}
				size = proto.Size(resp)
			}
			b.ReportMetric(float64(size)/1e6, "MB-answer")
		})
	}
}

// BenchmarkOnChangeFanout: ON_CHANGE latency from a controller change to
// the notification at the subscriber. 1, 10 and 100 STREAM ON_CHANGE
// subscribers, each its own Subscribe over gRPC on loopback (one
// connection), on one leaf of the red-blue configuration (4 endpoints,
// 3 hosts: the tree is small, so this measures the wake-up and fan-out,
// not the tree build). Each iteration changes that endpoint's port with
// controller.Server.ApplyChange and waits until every subscriber has the
// new value. The clock starts when the controller serves the change (its
// Changed channel closes, after its commit to a YAML store in a temporary
// directory). Reported: p50 and p99 over all subscribers and changes of the
// time from there to a subscriber's receipt, p50/p99 of the time until the
// last subscriber has it, and apply-p50-ms, the ApplyChange call alone
// (store commit included). Subscribers wake on Changed; nothing polls.
func BenchmarkOnChangeFanout(b *testing.B) {
	for _, subscribers := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("subscribers=%d", subscribers), func(b *testing.B) { onChangeFanout(b, subscribers) })
	}
}

func onChangeFanout(b *testing.B, subscribers int) {
	srv, ctl, _ := fuzzServer(b)
	onChange(b, srv, ctl, "red-vm1", 10, subscribers)
}

// BenchmarkOnChangeScale: ON_CHANGE latency, as BenchmarkOnChangeFanout
// measures it with one subscriber, on a controller holding 10k or 100k
// endpoints (bigConfig: one VPC over 1,000 hosts; no store, so the clock
// starts as soon as the change is applied): the cost of bringing the
// subscriptions' view of the tree up to date after one endpoint's port
// changes.
func BenchmarkOnChangeScale(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			ctl, err := controller.NewServer(controller.ServerOptions{Auth: identity.Auth{Insecure: true},
				Store: controller.NoPersistence{Start: bigConfig(n, 1000)}})
			if err != nil {
				b.Fatal(err)
			}
			srv, err := New(Options{Auth: identity.Auth{Insecure: true}, Controller: ctl})
			if err != nil {
				b.Fatal(err)
			}
			// vm-0 is on h0, whose other endpoints have ports up to
			// 2+n/1000.
			onChange(b, srv, ctl, "vm-0", 260, 1)
		})
	}
}

// onChange measures ON_CHANGE latency on endpoint id's port, which each
// iteration sets to one of portBase..portBase+199, free on its host.
func onChange(b *testing.B, srv *Server, ctl *controller.Server, id string, portBase uint16, subscribers int) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go g.Serve(lis)
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := gnmi.NewGNMIClient(conn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	ep, ok := ctl.Config().Endpoint(id)
	if !ok {
		b.Fatalf("no %s", id)
	}
	leaf := &gnmi.Path{Elem: []*gnmi.PathElem{{Name: "p4mesh"}, {Name: "endpoints"}, {Name: "endpoint", Key: map[string]string{"id": id}}, {Name: "config"}, {Name: "port"}}}
	type seen struct {
		port uint32
		at   time.Time
	}
	got := make(chan seen, subscribers*4)
	synced := make(chan struct{}, subscribers)
	for range subscribers {
		st, err := c.Subscribe(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Send(&gnmi.SubscribeRequest{Request: &gnmi.SubscribeRequest_Subscribe{Subscribe: &gnmi.SubscriptionList{
			Mode: gnmi.SubscriptionList_STREAM, Encoding: gnmi.Encoding_JSON_IETF, UpdatesOnly: true,
			Subscription: []*gnmi.Subscription{{Path: leaf, Mode: gnmi.SubscriptionMode_ON_CHANGE}},
		}}}); err != nil {
			b.Fatal(err)
		}
		go func() {
			for {
				r, err := st.Recv()
				if err != nil {
					return
				}
				if r.GetSyncResponse() {
					synced <- struct{}{}
				}
				for _, u := range r.GetUpdate().GetUpdate() {
					v, err := strconv.ParseUint(string(u.GetVal().GetJsonIetfVal()), 10, 32)
					if err == nil {
						got <- seen{uint32(v), time.Now()}
					}
				}
			}
		}()
	}
	for range subscribers {
		<-synced
	}
	var each, all, apply []time.Duration
	port := portBase
	for b.Loop() {
		port = portBase + (port-portBase+1)%200 // ports of the host no other endpoint has, not the CPU port (255)
		ep.Port = port
		// The change happens when the controller serves it, which is
		// when it closes Changed: the clock starts there, after the
		// controller's commit to its store.
		served := make(chan time.Time, 1)
		changed := ctl.Changed()
		go func() { <-changed; served <- time.Now() }()
		t0 := time.Now()
		if err := ctl.ApplyChange(&controller.Change{Endpoints: []controller.Endpoint{ep}}); err != nil {
			b.Fatal(err)
		}
		apply = append(apply, time.Since(t0))
		start := <-served
		var last time.Duration
		for n := 0; n < subscribers; {
			select {
			case s := <-got:
				if s.port != uint32(port) {
					continue
				}
				d := s.at.Sub(start)
				each = append(each, d)
				last = max(last, d)
				n++
			case <-time.After(2 * time.Minute): // at 100k, the whole tree took more than 10 s on a loaded machine
				b.Fatalf("only %d of %d subscribers saw port %d", n, subscribers, port)
			}
		}
		all = append(all, last)
	}
	slices.Sort(each)
	slices.Sort(all)
	slices.Sort(apply)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(each[len(each)/2]), "p50-ms")
	b.ReportMetric(ms(each[len(each)*99/100]), "p99-ms")
	b.ReportMetric(ms(all[len(all)/2]), "p50-all-ms")
	b.ReportMetric(ms(all[len(all)*99/100]), "p99-all-ms")
	b.ReportMetric(ms(apply[len(apply)/2]), "apply-p50-ms")
}

// BenchmarkSetOneEndpoint: a gNMI Set, over gRPC on loopback, adding one
// endpoint (an update of /p4mesh/endpoints/endpoint[id=X]/config, as
// `p4meshctl set --update` sends it) to a controller holding 10k or 100k
// endpoints (one VPC over 1,000 hosts), its store the daemon's default
// (bbolt, controller.ItemStore) in a temporary directory; 1M too with P4MESH_BENCH_1M=1 (several GB and minutes), over
// 10,000 hosts (a host has at most 509 ports).
// Each size runs four ways:
//   - entries: the Set as the server takes it (setEntries);
//   - whole: the same Set forced onto the whole tree (setWhole), the cost
//     before setEntries;
//   - controller: controller.Server.ApplyChange of the same Change alone,
//     without gNMI: what of "entries" is the controller's;
//   - gnmi: what of "entries" is the gNMI server's: setEntries up to the
//     Change (planEntries), without gRPC and without applying it;
//   - entries+get: the Set, then a Get of the new endpoint's port, as a
//     client reading back what it wrote; get-p50-ms is the Get alone;
//   - refused: a Set of a new endpoint with an existing one's IP, which
//     the controller refuses and the server words from what it touches
//     (it fails if that builds the whole configuration).
//
// Reports p50 and p99 of each Set.
func BenchmarkSetOneEndpoint(b *testing.B) {
	sizes := []int{10_000, 100_000}
	if os.Getenv("P4MESH_BENCH_1M") != "" {
		sizes = append(sizes, 1_000_000)
	}
	for _, n := range sizes {
		hosts := max(1000, n/100)
		// The daemon's default store: bbolt, one key per item.
		dbPath := filepath.Join(b.TempDir(), "store.db")
		backend, err := boltstore.Open(dbPath, boltstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer backend.Close()
		store, err := controller.OpenItemStore(b.Context(), backend)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := store.Startup(bigConfig(n, hosts), false); err != nil {
			b.Fatalf("%.2000s", err) // one line per endpoint if the generator is wrong
		}
		if fi, err := os.Stat(dbPath); err == nil {
			b.Logf("store.db at %d endpoints: %d bytes", n, fi.Size())
		}
		ctl, err := controller.NewServer(controller.ServerOptions{Auth: identity.Auth{Insecure: true}, Store: store})
		if err != nil {
			b.Fatal(err)
		}
		srv, err := New(Options{Auth: identity.Auth{Insecure: true}, Controller: ctl})
		if err != nil {
			b.Fatal(err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		g := grpc.NewServer()
		srv.Register(g)
		go g.Serve(lis)
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		c := gnmi.NewGNMIClient(conn)
		next := n // the index of the next endpoint to add
		request := func(e controller.Endpoint) *gnmi.SetRequest {
			return &gnmi.SetRequest{Update: []*gnmi.Update{{
				Path: &gnmi.Path{Elem: []*gnmi.PathElem{{Name: "p4mesh"}, {Name: "endpoints"}, {Name: "endpoint", Key: map[string]string{"id": e.ID}}, {Name: "config"}}},
				Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: fmt.Appendf(nil,
					`{"id":%q,"vpc":"big","kind":"vm","ip":"%s","mac":"%s","host":%q,"port":%d}`, e.ID, e.IP, e.MAC, e.Host, e.Port)}},
			}}}
		}
		set := func(b *testing.B) (string, time.Duration) {
			e := bigEndpoint(next, hosts)
			next++
			start := time.Now()
			_, err := c.Set(b.Context(), request(e))
			if err != nil {
				b.Fatal(err)
			}
			return e.ID, time.Since(start)
		}
		for _, how := range []string{"entries", "whole", "controller", "gnmi", "entries+get", "refused"} {
			b.Run(fmt.Sprintf("endpoints=%d/%s", n, how), func(b *testing.B) {
				srv.wholeOnly = how == "whole"
				defer func() { srv.wholeOnly = false }()
				set(b) // the first Set after a change made elsewhere indexes the configuration
				var sets, gets []time.Duration
				builds := ctl.ConfigBuilds()
				for b.Loop() {
					if how == "refused" {
						e := bigEndpoint(next, hosts)
						e.IP = bigEndpoint(0, hosts).IP
						// The entry whole: a Set of only its config
						// is refused earlier, as making an entry
						// with only what the path sets.
						req := &gnmi.SetRequest{Update: []*gnmi.Update{{
							Path: &gnmi.Path{Elem: []*gnmi.PathElem{{Name: "p4mesh"}, {Name: "endpoints"}, {Name: "endpoint", Key: map[string]string{"id": e.ID}}}},
							Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: fmt.Appendf(nil,
								`{"id":%q,"config":{"id":%q,"vpc":"big","kind":"vm","ip":"%s","mac":"%s","host":%q,"port":%d}}`, e.ID, e.ID, e.IP, e.MAC, e.Host, e.Port)}},
						}}}
						start := time.Now()
						_, err := c.Set(b.Context(), req)
						sets = append(sets, time.Since(start))
						if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), e.IP.String()+" is also") {
							b.Fatalf("a Set of a second endpoint with %s: %v", e.IP, err)
						}
						continue
					}
					if how == "gnmi" {
						req := request(bigEndpoint(next, hosts)) // the same one each time: nothing is applied
						start := time.Now()
						srv.setMu.Lock()
						p, ok, err := srv.planEntries(req)
						srv.setMu.Unlock()
						if !ok || err != nil || len(p.ch.Endpoints) != 1 {
							b.Fatalf("planEntries = %v, %v, %v", p, ok, err)
						}
						sets = append(sets, time.Since(start))
						continue
					}
					if how == "controller" {
						e := bigEndpoint(next, hosts)
						next++
						start := time.Now()
						if err := ctl.ApplyChange(&controller.Change{Endpoints: []controller.Endpoint{e}}); err != nil {
							b.Fatal(err)
						}
						sets = append(sets, time.Since(start))
						continue
					}
					id, d := set(b)
					sets = append(sets, d)
					if how == "entries+get" {
						start := time.Now()
						if _, err := c.Get(b.Context(), &gnmi.GetRequest{Encoding: gnmi.Encoding_JSON_IETF, Path: []*gnmi.Path{{Elem: []*gnmi.PathElem{
							{Name: "p4mesh"}, {Name: "endpoints"}, {Name: "endpoint", Key: map[string]string{"id": id}}, {Name: "config"}, {Name: "port"}}}}}); err != nil {
							b.Fatal(err)
						}
						gets = append(gets, time.Since(start))
					}
				}
				ms := func(ds []time.Duration, q int) float64 {
					slices.Sort(ds)
					return float64(ds[(len(ds)-1)*q/100].Microseconds()) / 1000
				}
				if how == "refused" && ctl.ConfigBuilds() != builds {
					b.Errorf("refused Sets built the whole configuration %d times", ctl.ConfigBuilds()-builds)
				}
				b.ReportMetric(ms(sets, 50), "p50-ms")
				b.ReportMetric(ms(sets, 99), "p99-ms")
				if len(gets) > 0 {
					b.ReportMetric(ms(gets, 50), "get-p50-ms")
				}
			})
		}
		conn.Close()
		g.Stop()
	}
}
