package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/identity"
)

// start serves gNMI for a controller owning red and blue (peered both
// ways) on loopback and returns a client.
func start(t *testing.T) (gnmi.GNMIClient, *controller.Server) {
	t.Helper()
	conn, ctl := startConn(t)
	return gnmi.NewGNMIClient(conn), ctl
}

// startConn is start returning the connection, which reaches the
// controller's own services (OHCs' host programming) as well as gNMI.
func startConn(t *testing.T) (*grpc.ClientConn, *controller.Server) {
	t.Helper()
	return startWith(t, nil)
}

// startWith is startConn with the gNMI server's options changed by opt.
func startWith(t *testing.T, opt func(*Options)) (*grpc.ClientConn, *controller.Server) {
	t.Helper()
	cfg, err := controller.LoadFile("../../controller/testdata/red-blue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// One controller owning everything, so peerings settle without a peer.
	cfg.Directory = []controller.ControllerEntry{{Name: cfg.Controller, Address: "127.0.0.1:1", VPCs: []string{"red", "green", "blue"}}}
	cfg.VPCs = append(cfg.VPCs, controller.VPC{Name: "blue", VNI: 200, Subnets: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}})
	cfg.Peerings = append(cfg.Peerings, controller.Peering{VPC: "blue", PeerVPC: "red", ExportPolicy: "all"})
	store, err := controller.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	ctl, err := controller.NewServer(controller.ServerOptions{Auth: identity.Auth{Insecure: true}, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Auth: identity.Auth{Insecure: true}, Controller: ctl, Poll: 20 * time.Millisecond}
	if opt != nil {
		opt(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	ctl.Register(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, ctl
}

func path(t *testing.T, s string) *gnmi.Path {
	t.Helper()
	p, err := ygot.StringToStructuredPath(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func getJSON(t *testing.T, c gnmi.GNMIClient, p string) string {
	t.Helper()
	resp, err := c.Get(t.Context(), &gnmi.GetRequest{Path: []*gnmi.Path{path(t, p)}, Encoding: gnmi.Encoding_JSON_IETF})
	if err != nil {
		t.Fatalf("Get %s: %v", p, err)
	}
	var b strings.Builder
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			b.WriteString(pathString(u.GetPath()) + " = ")
			if j := u.GetVal().GetJsonIetfVal(); j != nil {
				b.Write(j)
			} else {
				b.WriteString(u.GetVal().String())
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

func TestCapabilitiesAndGet(t *testing.T) {
	c, _ := start(t)
	caps, err := c.Capabilities(t.Context(), &gnmi.CapabilityRequest{})
	if err != nil || caps.GetGNMIVersion() != Version || len(caps.GetSupportedModels()) != 1 {
		t.Fatalf("Capabilities = %v, %v", caps, err)
	}
	if got := getJSON(t, c, "/p4mesh/vpcs/vpc[name=red]/config/vni"); !strings.Contains(got, "uint_val:100") {
		t.Errorf("red's VNI = %q", got)
	}
	all := getJSON(t, c, "/p4mesh/vpcs/vpc[name=*]/config/name")
	for _, v := range []string{"red", "green", "blue"} {
		if !strings.Contains(all, `"`+v+`"`) {
			t.Errorf("wildcard get lacks %s: %s", v, all)
		}
	}
	if got := getJSON(t, c, "/p4mesh/peerings/peering[vpc=red][peer-vpc=blue]/state/active"); !strings.Contains(got, "bool_val:true") {
		t.Errorf("red->blue active = %q", got)
	}
	route := "/p4mesh/routes/route[vpc=red][prefix=172.16.0.0/12][next-hop=red-router]/state"
	if got := getJSON(t, c, route+"/chosen"); !strings.Contains(got, "bool_val:true") {
		t.Errorf("the only route for 172.16.0.0/12 is not chosen: %q", got)
	}
	if got := getJSON(t, c, route+"/reason"); !strings.Contains(got, "the only route") {
		t.Errorf("route reason = %q", got)
	}
	if _, err := c.Get(t.Context(), &gnmi.GetRequest{Path: []*gnmi.Path{path(t, "/p4mesh/vpcs/vpc[name=nope]")}}); status.Code(err) != codes.NotFound {
		t.Errorf("Get of a missing VPC = %v; want NotFound", err)
	}
}

func TestSetTransaction(t *testing.T) {
	c, ctl := start(t)
	ietf := func(s string) *gnmi.TypedValue {
		return &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: []byte(s)}}
	}
	// A new VPC and a new export policy in one transaction.
	owned := &gnmi.TypedValue{Value: &gnmi.TypedValue_LeaflistVal{LeaflistVal: &gnmi.ScalarArray{Element: []*gnmi.TypedValue{
		{Value: &gnmi.TypedValue_StringVal{StringVal: "red"}}, {Value: &gnmi.TypedValue_StringVal{StringVal: "green"}},
		{Value: &gnmi.TypedValue_StringVal{StringVal: "blue"}}, {Value: &gnmi.TypedValue_StringVal{StringVal: "purple"}}}}}}
	_, err := c.Set(t.Context(), &gnmi.SetRequest{Update: []*gnmi.Update{
		{Path: path(t, "/p4mesh/vpcs/vpc[name=purple]"), Val: ietf(`{"p4mesh:name":"purple","p4mesh:config":{"name":"purple","vni":400,"subnets":["10.4.0.0/16"]}}`)},
		{Path: path(t, "/p4mesh/directory/controllers/controller[name=c1]/config/vpcs"), Val: owned},
		{Path: path(t, "/p4mesh/export-policies/export-policy[name=web]/config/name"), Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_StringVal{StringVal: "web"}}},
	}})
	if err != nil {
		t.Fatalf("Set: %v", err)
	}
	if _, ok := ctl.Config().VPC("purple"); !ok {
		t.Fatal("purple was not applied to the controller")
	}

	before := getJSON(t, c, "/")
	bad := []struct {
		name string
		req  *gnmi.SetRequest
		want string
	}{
		{"overlapping subnet", &gnmi.SetRequest{Update: []*gnmi.Update{
			{Path: path(t, "/p4mesh/vpcs/vpc[name=red]/config/subnets"), Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_LeaflistVal{LeaflistVal: &gnmi.ScalarArray{Element: []*gnmi.TypedValue{
				{Value: &gnmi.TypedValue_StringVal{StringVal: "10.1.0.0/16"}}, {Value: &gnmi.TypedValue_StringVal{StringVal: "10.1.128.0/17"}}}}}}},
		}}, "overlaps"},
		{"unknown policy", &gnmi.SetRequest{Update: []*gnmi.Update{
			{Path: path(t, "/p4mesh/peerings/peering[vpc=red][peer-vpc=blue]/config/export-policy"), Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_StringVal{StringVal: "nope"}}},
		}}, "nope"},
		{"bad prefix", &gnmi.SetRequest{Update: []*gnmi.Update{
			{Path: path(t, "/p4mesh/vpcs/vpc[name=purple]/config/subnets"), Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_LeaflistVal{LeaflistVal: &gnmi.ScalarArray{Element: []*gnmi.TypedValue{
				{Value: &gnmi.TypedValue_StringVal{StringVal: "10.4.0.1/16"}}}}}}},
		}}, "10.4.0.1/16"},
		{"state is read-only", &gnmi.SetRequest{Update: []*gnmi.Update{
			{Path: path(t, "/p4mesh/peerings/peering[vpc=red][peer-vpc=blue]/state/active"), Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_BoolVal{BoolVal: false}}},
		}}, "read-only"},
		{"good then bad: nothing applies", &gnmi.SetRequest{
			Delete: []*gnmi.Path{path(t, "/p4mesh/vpcs/vpc[name=purple]")},
			Update: []*gnmi.Update{{Path: path(t, "/p4mesh/vpcs/vpc[name=red]/config/vni"), Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_UintVal{UintVal: 200}}}},
		}, "200"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Set(t.Context(), tc.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Set = %v; want InvalidArgument naming %q", err, tc.want)
			}
			if after := getJSON(t, c, "/"); after != before {
				t.Error("a refused Set changed the configuration")
			}
		})
	}

	// Deleting something absent succeeds; deleting purple (and its
	// directory entry, in the same transaction) removes it.
	owned.GetLeaflistVal().Element = owned.GetLeaflistVal().Element[:3]
	if _, err := c.Set(t.Context(), &gnmi.SetRequest{
		Delete:  []*gnmi.Path{path(t, "/p4mesh/vpcs/vpc[name=purple]"), path(t, "/p4mesh/vpcs/vpc[name=absent]")},
		Replace: []*gnmi.Update{{Path: path(t, "/p4mesh/directory/controllers/controller[name=c1]/config/vpcs"), Val: owned}},
	}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, ok := ctl.Config().VPC("purple"); ok {
		t.Error("purple survived its delete")
	}
}

func TestSubscribe(t *testing.T) {
	c, ctl := start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	// ONCE: everything under the path, then sync_response, then the end.
	once, err := c.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	once.Send(&gnmi.SubscribeRequest{Request: &gnmi.SubscribeRequest_Subscribe{Subscribe: &gnmi.SubscriptionList{
		Mode: gnmi.SubscriptionList_ONCE, Encoding: gnmi.Encoding_JSON_IETF,
		Subscription: []*gnmi.Subscription{{Path: path(t, "/p4mesh/vpcs/vpc[name=red]")}},
	}}})
	var updates int
	for {
		r, err := once.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.GetSyncResponse() {
			break
		}
		updates += len(r.GetUpdate().GetUpdate())
	}
	if updates == 0 {
		t.Error("ONCE sent no updates before sync_response")
	}

	// STREAM ON_CHANGE on peering state: a dump, sync, then the change
	// when blue's side of the peering goes away.
	st, err := c.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Send(&gnmi.SubscribeRequest{Request: &gnmi.SubscribeRequest_Subscribe{Subscribe: &gnmi.SubscriptionList{
		Mode: gnmi.SubscriptionList_STREAM, Encoding: gnmi.Encoding_JSON_IETF,
		Subscription: []*gnmi.Subscription{{Path: path(t, "/p4mesh/peerings/peering[vpc=red][peer-vpc=blue]/state/active"), Mode: gnmi.SubscriptionMode_ON_CHANGE}},
	}}})
	active := func(r *gnmi.SubscribeResponse) (bool, bool) {
		for _, u := range r.GetUpdate().GetUpdate() {
			if strings.HasSuffix(pathString(u.GetPath()), "/state/active") {
				// Streamed leaves are JSON_IETF scalars.
				return string(u.GetVal().GetJsonIetfVal()) == "true", true
			}
		}
		return false, false
	}
	synced := false
	for !synced {
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := active(r); ok && !v {
			t.Fatal("red->blue is inactive before the change")
		}
		synced = r.GetSyncResponse()
	}
	cfg := ctl.Config().Clone()
	for i, p := range cfg.Peerings {
		if p.VPC == "blue" {
			cfg.Peerings = append(cfg.Peerings[:i], cfg.Peerings[i+1:]...)
			break
		}
	}
	if err := ctl.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	for {
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := active(r); ok {
			if v {
				t.Fatal("an ON_CHANGE update repeated the old value")
			}
			break
		}
	}

	// A SAMPLE interval below the minimum is refused.
	bad, err := c.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bad.Send(&gnmi.SubscribeRequest{Request: &gnmi.SubscribeRequest_Subscribe{Subscribe: &gnmi.SubscriptionList{
		Mode:         gnmi.SubscriptionList_STREAM,
		Subscription: []*gnmi.Subscription{{Path: path(t, "/p4mesh"), Mode: gnmi.SubscriptionMode_SAMPLE, SampleInterval: uint64(time.Millisecond)}},
	}}})
	if _, err := bad.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("SAMPLE at 1ms = %v; want InvalidArgument", err)
	}
}

func TestGetType(t *testing.T) {
	c, _ := start(t)
	get := func(typ gnmi.GetRequest_DataType) string {
		resp, err := c.Get(t.Context(), &gnmi.GetRequest{Path: []*gnmi.Path{path(t, "/p4mesh/peerings")}, Encoding: gnmi.Encoding_JSON_IETF, Type: typ})
		if err != nil {
			t.Fatalf("Get %s: %v", typ, err)
		}
		return string(resp.GetNotification()[0].GetUpdate()[0].GetVal().GetJsonIetfVal())
	}
	if got := get(gnmi.GetRequest_CONFIG); strings.Contains(got, `"state"`) || !strings.Contains(got, `"config"`) {
		t.Errorf("CONFIG Get = %s; want config containers only", got)
	}
	if got := get(gnmi.GetRequest_STATE); strings.Contains(got, `"config"`) || !strings.Contains(got, `"active"`) {
		t.Errorf("STATE Get = %s; want state containers only", got)
	}
	if got := get(gnmi.GetRequest_ALL); !strings.Contains(got, `"config"`) || !strings.Contains(got, `"state"`) {
		t.Errorf("ALL Get = %s; want both", got)
	}
}

// TestSampleBesideOnChange: a SAMPLE subscription fires on its interval even
// when an ON_CHANGE subscription earlier in the list covers the same leaf.
func TestSampleBesideOnChange(t *testing.T) {
	c, _ := start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := c.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Send(&gnmi.SubscribeRequest{Request: &gnmi.SubscribeRequest_Subscribe{Subscribe: &gnmi.SubscriptionList{
		Mode: gnmi.SubscriptionList_STREAM, Encoding: gnmi.Encoding_JSON_IETF,
		Subscription: []*gnmi.Subscription{
			{Path: path(t, "/p4mesh/vpcs"), Mode: gnmi.SubscriptionMode_ON_CHANGE},
			{Path: path(t, "/p4mesh/vpcs/vpc[name=green]/config/vni"), Mode: gnmi.SubscriptionMode_SAMPLE, SampleInterval: uint64(40 * time.Millisecond)},
		},
	}}})
	for {
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.GetSyncResponse() {
			break
		}
	}
	samples := 0
	for samples < 3 {
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("after %d samples: %v", samples, err)
		}
		for _, u := range r.GetUpdate().GetUpdate() {
			if strings.HasSuffix(pathString(u.GetPath()), "vpc[name=green]/config/vni") {
				samples++
			}
		}
	}
}

// TestHostSwitchPrimary: what an OHC reports of its mastership is the
// host's switch-primary state, absent until reported, and a report that
// changes only that leaf is seen by the next Get.
func TestHostSwitchPrimary(t *testing.T) {
	conn, _ := startConn(t)
	c, ohc := gnmi.NewGNMIClient(conn), p4meshv1.NewHostProgrammingClient(conn)
	const state = "/p4mesh/hosts/host[id=h1]/state"
	if got := getJSON(t, c, state); strings.Contains(got, "switch-primary") {
		t.Fatalf("switch-primary before any report:\n%s", got)
	}
	for _, primary := range []bool{true, false} {
		_, err := ohc.Report(t.Context(), &p4meshv1.HostReport{Host: "h1", Entries: map[string]uint64{"port_vnet": 2}, SwitchPrimary: &primary})
		if err != nil {
			t.Fatal(err)
		}
		got := getJSON(t, c, state+"/switch-primary")
		if want := fmt.Sprintf("bool_val:%v", primary); !strings.Contains(got, want) {
			t.Errorf("after a report of primary %v, switch-primary = %q", primary, got)
		}
	}
	got := getJSON(t, c, state)
	for _, want := range []string{`"p4mesh:switch-primary":false`, `"p4mesh:programmed-entries":"2"`} {
		if !strings.Contains(got, want) {
			t.Errorf("h1's state lacks %s:\n%s", want, got)
		}
	}
}

// TestStateRefresh: what OHCs report changes without the controller's
// change notification; an ON_CHANGE subscription still sees it, within
// Options.StateInterval.
func TestStateRefresh(t *testing.T) {
	conn, _ := startWith(t, func(o *Options) { o.StateInterval = 200 * time.Millisecond })
	c, ohc := gnmi.NewGNMIClient(conn), p4meshv1.NewHostProgrammingClient(conn)
	st := stream(t, c, &gnmi.SubscriptionList{Encoding: gnmi.Encoding_JSON_IETF, Subscription: []*gnmi.Subscription{
		{Path: path(t, "/p4mesh/hosts/host[id=h1]/state/programmed-entries"), Mode: gnmi.SubscriptionMode_ON_CHANGE}}})
	st.leaves(t, 1, 500*time.Millisecond) // the dump, if any
	start := time.Now()
	if _, err := ohc.Report(t.Context(), &p4meshv1.HostReport{Host: "h1", Entries: map[string]uint64{"port_vnet": 7}}); err != nil {
		t.Fatal(err)
	}
	got := st.leaves(t, 1, 5*time.Second)
	if len(got) != 1 || !strings.HasSuffix(got[0], `= "7"`) {
		t.Fatalf("after a report of 7 entries: %v; want programmed-entries 7", got)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the report reached the subscriber after %s; StateInterval is 200ms", d)
	}
}

// TestRIBState: every candidate of a VPC's RIB is in its state, with its
// origin, next hops, attributes, chosen and reason, local and imported.
func TestRIBState(t *testing.T) {
	c, ctl := start(t)
	cfg := ctl.Config().Clone()
	cfg.Endpoints = append(cfg.Endpoints, controller.Endpoint{ID: "red-vpn", VPC: "red", Kind: controller.KindVPN,
		IP: netip.MustParseAddr("10.1.0.77"), MAC: controller.MAC{2, 1, 0, 0, 0, 0x77}, Host: "h1", Port: 9, RouterMAC: controller.MAC{2, 0xfe, 0, 0, 0, 1}})
	for i := range cfg.Peerings {
		if cfg.Peerings[i].VPC == "red" && cfg.Peerings[i].PeerVPC == "blue" {
			cfg.Peerings[i].ExportCustomRoutes = true
		}
	}
	if err := ctl.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if err := ctl.UpdateLearnedRoutes("red", []controller.LearnedRoute{{Neighbor: "red-vpn", Prefix: netip.MustParsePrefix("192.0.2.0/24"),
		NextHop: netip.MustParseAddr("172.31.0.1"), ASPath: []uint32{65001, 65002}, MED: 7, LocalPref: 100}}, nil); err != nil {
		t.Fatal(err)
	}
	red := "/p4mesh/vpcs/vpc[name=red]/state/routes/route[prefix=192.0.2.0/24][origin=bgp][source=red-vpn]"
	for leaf, want := range map[string]string{
		"chosen": "bool_val:true", "reason": "the only route for its prefix", "next-hops": "10.1.0.77",
		"as-path": "65001 65002", "med": "uint_val:7", "local-pref": "uint_val:100", "bgp-next-hop": "172.31.0.1",
	} {
		if got := getJSON(t, c, red+"/"+leaf); !strings.Contains(got, want) {
			t.Errorf("%s = %q, want it to contain %q", leaf, got, want)
		}
	}
	if got := getJSON(t, c, "/p4mesh/vpcs/vpc[name=red]/state/routes/route[prefix=10.1.0.0/16][origin=subnet][source=red]/reason"); !strings.Contains(got, "own subnet: always wins") {
		t.Errorf("red's subnet reason = %q", got)
	}
	// blue imports red's custom route through the peering.
	blue := "/p4mesh/vpcs/vpc[name=blue]/state/routes/route[prefix=192.0.2.0/24][origin=peer][source=red]"
	for leaf, want := range map[string]string{"chosen": "bool_val:true", "peer-vni": "uint_val:100", "peer-origin": "bgp", "next-hops": "10.1.0.77"} {
		if got := getJSON(t, c, blue+"/"+leaf); !strings.Contains(got, want) {
			t.Errorf("blue's %s = %q, want it to contain %q", leaf, got, want)
		}
	}
	// Withdrawn, it leaves both RIBs' state.
	if err := ctl.UpdateLearnedRoutes("red", nil, []controller.LearnedRouteKey{{Neighbor: "red-vpn", Prefix: netip.MustParsePrefix("192.0.2.0/24")}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{red, blue} {
		if _, err := c.Get(t.Context(), &gnmi.GetRequest{Path: []*gnmi.Path{path(t, p)}}); status.Code(err) != codes.NotFound {
			t.Errorf("Get %s after the withdrawal = %v; want NotFound", p, err)
		}
	}
}
