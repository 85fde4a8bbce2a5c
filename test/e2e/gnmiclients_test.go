package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openconfig/gnmi/proto/gnmi"
	gnmicapi "github.com/openconfig/gnmic/pkg/api"
	"github.com/openconfig/ygnmi/ygnmi"
	"github.com/openconfig/ygot/ygot"
	"github.com/openconfig/ygot/ytypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/demo"
	"github.com/p4mesh/p4mesh/gnmi/oc"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/mtls"
)

// TestGNMIClients drives a p4mesh-controller's gNMI listener, started as an
// operator starts it (mutual TLS, certificates from `p4meshctl pki lab`),
// with two gNMI client implementations beside gnmi_cli (TestGNMICLI): the
// client library of gnmic (github.com/openconfig/gnmic/pkg/api v0.1.9),
// which builds requests the way the gnmic command does, and ygnmi v0.12.0,
// the typed client OpenConfig's feature tests use. Each runs Capabilities,
// Gets in JSON and JSON_IETF, Sets of leaves, leaf-lists, containers and
// lists in both encodings, a wildcard delete, a merging update, an invalid
// Set refused whole, and ONCE, POLL, STREAM ON_CHANGE (with a heartbeat),
// SAMPLE and updates_only subscriptions, with the request's target echoed
// and an unknown origin refused.
func TestGNMIClients(t *testing.T) {
	bin := buildDaemons(t)
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	ctlAddrs := [2]string{freeAddr(t), freeAddr(t)}
	gnmiAddr := freeAddr(t)
	topo := demo.DemoTopology(ctlAddrs)
	cfgPath := filepath.Join(dir, "c1.yaml")
	if err := topo.Configs["c1"].SaveFile(cfgPath); err != nil {
		t.Fatal(err)
	}
	ctl := filepath.Join(bin, "p4meshctl")
	if out, err := runOut(ctl, "pki", "lab", "--dir", pkiDir, "--config", cfgPath); err != nil {
		t.Fatalf("p4meshctl pki lab: %v\n%s", err, out)
	}
	// c1 alone: its peering with c2's blue stays inactive, which changes
	// nothing here.
	daemon(t, filepath.Join(bin, "p4mesh-controller"), "c1", append([]string{"--config", cfgPath, "--data-dir", filepath.Join(dir, "c1"),
		"--listen", ctlAddrs[0], "--peer-grace", "1s", "--gnmi-addr", gnmiAddr}, tlsArgs(pkiDir, identity.Controller, "c1")...)...)

	admin := mtls.Files{Cert: filepath.Join(pkiDir, "operator-admin.pem"), Key: filepath.Join(pkiDir, "operator-admin.key"), CA: filepath.Join(pkiDir, "ca.pem")}
	t.Run("gnmic", func(t *testing.T) { gnmicClient(t, gnmiAddr, admin) })
	t.Run("ygnmi", func(t *testing.T) { ygnmiClient(t, gnmiAddr, admin) })
}

func runOut(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

// jsonOf is an update's JSON value, whichever JSON encoding it came in.
func jsonOf(v *gnmi.TypedValue) string {
	return string(v.GetJsonIetfVal()) + string(v.GetJsonVal())
}

// firstVal is the value of the first update of a GetResponse.
func firstVal(t *testing.T, r *gnmi.GetResponse) *gnmi.TypedValue {
	t.Helper()
	if len(r.GetNotification()) == 0 || len(r.GetNotification()[0].GetUpdate()) == 0 {
		t.Fatalf("GetResponse has no update: %v", r)
	}
	return r.GetNotification()[0].GetUpdate()[0].GetVal()
}

func gnmicClient(t *testing.T, addr string, admin mtls.Files) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	tg, err := gnmicapi.NewTarget(gnmicapi.Name("c1"), gnmicapi.Address(addr), gnmicapi.Timeout(10*time.Second),
		gnmicapi.TLSCA(admin.CA), gnmicapi.TLSCert(admin.Cert), gnmicapi.TLSKey(admin.Key))
	if err != nil {
		t.Fatal(err)
	}
	// The daemon listens once it has started: retry the first call.
	waitUntil(t, 30*time.Second, "gNMI to answer gnmic", func() (bool, string) {
		if err := tg.CreateGNMIClient(ctx); err != nil {
			return false, err.Error()
		}
		if _, err := tg.Capabilities(ctx); err != nil {
			tg.Close()
			return false, err.Error()
		}
		return true, ""
	})
	defer tg.Close()
	must := func(m any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	get := func(p, enc string, opts ...gnmicapi.GNMIOption) *gnmi.GetResponse {
		t.Helper()
		req, err := gnmicapi.NewGetRequest(append([]gnmicapi.GNMIOption{gnmicapi.Path(p), gnmicapi.Encoding(enc)}, opts...)...)
		must(req, err)
		r, err := tg.Get(ctx, req)
		if err != nil {
			t.Fatalf("gnmic get %s (%s): %v", p, enc, err)
		}
		return r
	}
	set := func(opts ...gnmicapi.GNMIOption) (*gnmi.SetResponse, error) {
		t.Helper()
		req, err := gnmicapi.NewSetRequest(opts...)
		must(req, err)
		return tg.Set(ctx, req)
	}
	mustSet := func(what string, opts ...gnmicapi.GNMIOption) {
		t.Helper()
		if _, err := set(opts...); err != nil {
			t.Fatalf("gnmic set (%s): %v", what, err)
		}
	}
	const red = "/p4mesh/vpcs/vpc[name=red]"

	// Capabilities: both JSON encodings and the p4mesh model.
	caps, err := tg.Capabilities(ctx)
	must(caps, err)
	if !slices.Contains(caps.GetSupportedEncodings(), gnmi.Encoding_JSON) || !slices.Contains(caps.GetSupportedEncodings(), gnmi.Encoding_JSON_IETF) ||
		len(caps.GetSupportedModels()) != 1 || caps.GetSupportedModels()[0].GetName() != "p4mesh" {
		t.Errorf("Capabilities = %v", caps)
	}

	// Get in both encodings; the target is echoed.
	g := get(red+"/config", "json", gnmicapi.Target("c1"))
	if v := firstVal(t, g); v.GetJsonVal() == nil || !strings.Contains(string(v.GetJsonVal()), `"vni":100`) {
		t.Errorf("get %s/config as JSON = %v", red, v)
	}
	if tgt := g.GetNotification()[0].GetPrefix().GetTarget(); tgt != "c1" {
		t.Errorf("get with target c1: notification prefix target %q", tgt)
	}
	if v := firstVal(t, get(red+"/config", "json_ietf")); !strings.Contains(string(v.GetJsonIetfVal()), `"p4mesh:vni":100`) {
		t.Errorf("get %s/config as JSON_IETF = %v", red, v)
	}
	if v := firstVal(t, get(red+"/config/subnets", "json")); string(v.GetJsonVal()) != `["10.1.0.0/16"]` {
		t.Errorf("get of the subnets leaf-list as JSON = %v; want a JSON array", v)
	}

	// Sets, as gnmic sends them: a leaf in JSON (its default), a
	// leaf-list in JSON_IETF, a container replaced in JSON_IETF, a list
	// in JSON as Get writes it (an object keyed by name).
	mustSet("leaf, JSON", gnmicapi.Update(gnmicapi.Path(red+"/config/vni"), gnmicapi.Value("101", "json")))
	mustSet("leaf-list, JSON_IETF", gnmicapi.Update(gnmicapi.Path(red+"/config/subnets"), gnmicapi.Value(`["10.1.0.0/16","10.5.0.0/16"]`, "json_ietf")))
	if v := jsonOf(firstVal(t, get(red+"/config", "json_ietf"))); !strings.Contains(v, `vni":101`) || !strings.Contains(v, `"10.5.0.0/16"`) {
		t.Errorf("after the leaf and leaf-list updates red's config = %s", v)
	}
	mustSet("container replace, JSON_IETF", gnmicapi.Replace(gnmicapi.Path(red+"/config"), gnmicapi.Value(`{"p4mesh:name":"red","p4mesh:vni":102,"p4mesh:subnets":["10.1.0.0/16"]}`, "json_ietf")))
	if v := jsonOf(firstVal(t, get(red+"/config", "json"))); !strings.Contains(v, `"vni":102`) || strings.Contains(v, "10.5.0.0") {
		t.Errorf("after replacing red's config: %s", v)
	}
	pols := jsonOf(firstVal(t, get("/p4mesh/export-policies", "json")))
	mustSet("list, JSON keyed by name", gnmicapi.Update(gnmicapi.Path("/p4mesh/export-policies"), gnmicapi.Value(`{"export-policy":{"web":{"config":{"name":"web","protocols":["tcp"]}}}}`, "json")))
	if v := jsonOf(firstVal(t, get("/p4mesh/export-policies/export-policy[name=web]/config/protocols", "json_ietf"))); v != `["tcp"]` {
		t.Errorf("export policy web's protocols = %s", v)
	}
	// The list Get gave, set back whole in JSON: web goes, all stays.
	mustSet("list replace with Get's own JSON", gnmicapi.Replace(gnmicapi.Path("/p4mesh/export-policies"), gnmicapi.Value(pols, "json")))
	if v := jsonOf(firstVal(t, get("/p4mesh/export-policies", "json"))); strings.Contains(v, "web") || !strings.Contains(v, `"all"`) {
		t.Errorf("after replacing the export policies with Get's JSON: %s", v)
	}

	// The other encoding of each: a leaf in JSON_IETF, a leaf-list
	// replaced in JSON, a container updated in JSON, a list entry in
	// JSON_IETF, then deleted.
	mustSet("leaf, JSON_IETF", gnmicapi.Update(gnmicapi.Path(red+"/config/vni"), gnmicapi.Value("107", "json_ietf")))
	mustSet("leaf-list replace, JSON", gnmicapi.Replace(gnmicapi.Path(red+"/config/subnets"), gnmicapi.Value(`["10.1.0.0/16","10.7.0.0/16"]`, "json")))
	mustSet("container update, JSON", gnmicapi.Update(gnmicapi.Path(red+"/config"), gnmicapi.Value(`{"vni":108}`, "json")))
	if v := jsonOf(firstVal(t, get(red+"/config", "json"))); !strings.Contains(v, `"vni":108`) || !strings.Contains(v, "10.7.0.0/16") {
		t.Errorf("after the JSON_IETF leaf, JSON leaf-list and JSON container Sets: %s", v)
	}
	const dns = "/p4mesh/export-policies/export-policy[name=dns]"
	mustSet("list entry, JSON_IETF", gnmicapi.Update(gnmicapi.Path(dns), gnmicapi.Value(`{"p4mesh:name":"dns","p4mesh:config":{"name":"dns","protocols":["udp"]}}`, "json_ietf")))
	if v := jsonOf(firstVal(t, get(dns+"/config/protocols", "json"))); v != `["udp"]` {
		t.Errorf("export policy dns's protocols = %s", v)
	}
	mustSet("delete a list entry", gnmicapi.Delete(dns))
	if req, err := gnmicapi.NewGetRequest(gnmicapi.Path(dns)); err != nil {
		t.Fatal(err)
	} else if _, err := tg.Get(ctx, req); status.Code(err) != codes.NotFound {
		t.Errorf("get of the deleted export policy dns = %v; want NotFound", err)
	}

	// A merging update of an existing entry keeps what it does not name.
	mustSet("merge", gnmicapi.Update(gnmicapi.Path("/p4mesh/vpcs"), gnmicapi.Value(`{"vpc":[{"name":"red","config":{"name":"red","vni":103}}]}`, "json_ietf")))
	if v := jsonOf(firstVal(t, get(red+"/config", "json_ietf"))); !strings.Contains(v, `vni":103`) || !strings.Contains(v, "10.1.0.0/16") {
		t.Errorf("after a merging update of red: %s", v)
	}

	// A delete of a leaf, and a wildcard delete: green's gateway goes.
	mustSet("delete", gnmicapi.Delete("/p4mesh/vpcs/vpc[name=green]/config/gateway-mac"))
	mustSet("wildcard delete", gnmicapi.Delete("/p4mesh/vpcs/vpc[name=*]/config/gateway-ip"))
	if r := get("/p4mesh/vpcs/vpc[name=*]/config/gateway-ip", "json"); len(r.GetNotification()[0].GetUpdate()) != 0 {
		t.Errorf("gateway IPs left after the wildcard delete: %v", r)
	}

	// An invalid Set is refused whole: the good update beside it is not
	// applied.
	before := jsonOf(firstVal(t, get("/", "json_ietf")))
	_, err = set(gnmicapi.Update(gnmicapi.Path(red+"/config/vni"), gnmicapi.Value("104", "json")),
		gnmicapi.Update(gnmicapi.Path("/p4mesh/vpcs/vpc[name=green]/config/vni"), gnmicapi.Value("0", "json")))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "vpc[name=green]/config/vni") {
		t.Errorf("a Set giving green VNI 0 = %v; want InvalidArgument naming green's VNI", err)
	}
	if after := jsonOf(firstVal(t, get("/", "json_ietf"))); after != before {
		t.Error("the refused Set changed the configuration")
	}

	// An unknown origin is refused.
	req, err := gnmicapi.NewGetRequest(gnmicapi.Path(red + "/config/vni"))
	must(req, err)
	req.Path[0].Origin = "openconfig"
	if _, err := tg.Get(ctx, req); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "openconfig") {
		t.Errorf("get with origin openconfig = %v; want InvalidArgument naming it", err)
	}

	// ONCE, in both encodings, target echoed.
	for _, enc := range []string{"json", "json_ietf"} {
		sreq, err := gnmicapi.NewSubscribeRequest(gnmicapi.Subscription(gnmicapi.Path(red+"/config/vni")),
			gnmicapi.SubscriptionListMode("once"), gnmicapi.Encoding(enc), gnmicapi.Target("c1"))
		must(sreq, err)
		rs, err := tg.SubscribeOnce(ctx, sreq)
		if err != nil || len(rs) != 1 {
			t.Fatalf("subscribe once (%s): %v, %v", enc, rs, err)
		}
		n := rs[0].GetUpdate()
		if v := n.GetUpdate()[0].GetVal(); jsonOf(v) != "103" || (enc == "json") != (v.GetJsonVal() != nil) {
			t.Errorf("subscribe once (%s) = %v", enc, v)
		}
		if n.GetPrefix().GetTarget() != "c1" {
			t.Errorf("subscribe once (%s): prefix %v; want target c1", enc, n.GetPrefix())
		}
	}

	// POLL: the value on each poll, the second after a change.
	preq, err := gnmicapi.NewSubscribeRequest(gnmicapi.Subscription(gnmicapi.Path(red+"/config/vni")), gnmicapi.SubscriptionListMode("poll"), gnmicapi.Encoding("json_ietf"))
	must(preq, err)
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	go tg.Subscribe(pctx, preq, "poll")
	polled := func() string {
		t.Helper()
		rsps, errs := tg.ReadSubscriptions()
		var got string
		for {
			select {
			case r := <-rsps:
				if u := r.Response.GetUpdate(); u != nil {
					got = jsonOf(u.GetUpdate()[0].GetVal())
				}
				if r.Response.GetSyncResponse() {
					return got
				}
			case e := <-errs:
				t.Fatalf("poll subscription: %v", e.Err)
			case <-time.After(10 * time.Second):
				t.Fatal("no poll answer in 10s")
			}
		}
	}
	if v := polled(); v != "103" {
		t.Errorf("first poll = %q", v)
	}
	mustSet("vni for the poll", gnmicapi.Update(gnmicapi.Path(red+"/config/vni"), gnmicapi.Value("105", "json")))
	if err := tg.SubscribePoll(ctx, "poll"); err != nil {
		t.Fatal(err)
	}
	if v := polled(); v != "105" {
		t.Errorf("poll after a change = %q; want 105", v)
	}
	pcancel()

	// STREAM ON_CHANGE with a heartbeat: the dump, heartbeats with
	// nothing changed, and a change at once; then updates_only: no dump.
	// stream opens a STREAM subscription with gnmic's SubscribeStreamChan
	// and forwards what it receives until cancelled. (gnmic's goroutine
	// behind it blocks on its unbuffered error channel once the stream
	// ends and nobody reads: it stays until the test binary exits.)
	stream := func(name string, opts ...gnmicapi.GNMIOption) (chan *gnmi.SubscribeResponse, context.CancelFunc) {
		sreq, err := gnmicapi.NewSubscribeRequest(append([]gnmicapi.GNMIOption{gnmicapi.SubscriptionListMode("stream"), gnmicapi.Encoding("json_ietf")}, opts...)...)
		must(sreq, err)
		sctx, scancel := context.WithCancel(ctx)
		rsps, errs := tg.SubscribeStreamChan(sctx, sreq, name)
		out := make(chan *gnmi.SubscribeResponse, 100)
		go func() {
			for {
				select {
				case r := <-rsps:
					select {
					case out <- r:
					default: // the test stopped reading
					}
				case <-errs:
				case <-sctx.Done():
					return
				}
			}
		}()
		return out, scancel
	}
	// values reads for d and returns the VNIs the updates carried and
	// whether a sync_response came.
	values := func(ch chan *gnmi.SubscribeResponse, d time.Duration) (vals []string, synced bool) {
		deadline := time.After(d)
		for {
			select {
			case r := <-ch:
				synced = synced || r.GetSyncResponse()
				for _, u := range r.GetUpdate().GetUpdate() {
					vals = append(vals, jsonOf(u.GetVal()))
				}
			case <-deadline:
				return vals, synced
			}
		}
	}
	oc1, stop := stream("onchange", gnmicapi.Subscription(gnmicapi.Path(red+"/config/vni"), gnmicapi.SubscriptionMode("on_change"), gnmicapi.HeartbeatInterval(300*time.Millisecond)))
	if vals, synced := values(oc1, 1100*time.Millisecond); !synced || len(vals) < 3 || len(vals) > 5 {
		t.Errorf("ON_CHANGE with a 300ms heartbeat for 1.1s: %v (synced %v); want the dump and about three heartbeats", vals, synced)
	}
	stop()
	oc2, stop := stream("onchange-updates-only", gnmicapi.UpdatesOnly(true), gnmicapi.Subscription(gnmicapi.Path(red+"/config/vni"), gnmicapi.SubscriptionMode("on_change")))
	if vals, synced := values(oc2, 500*time.Millisecond); !synced || len(vals) != 0 {
		t.Errorf("ON_CHANGE updates_only before any change: %v (synced %v); want only sync_response", vals, synced)
	}
	start := time.Now()
	mustSet("vni for the stream", gnmicapi.Update(gnmicapi.Path(red+"/config/vni"), gnmicapi.Value("106", "json")))
	if vals, _ := values(oc2, 500*time.Millisecond); !slices.Equal(vals, []string{"106"}) {
		t.Errorf("ON_CHANGE updates_only after a change: %v within %s; want [106]", vals, time.Since(start))
	}
	stop()

	// SAMPLE every 200ms, with and without updates_only.
	for _, only := range []bool{false, true} {
		sm, stop := stream(fmt.Sprint("sample", only), gnmicapi.UpdatesOnly(only), gnmicapi.Subscription(gnmicapi.Path(red+"/config/vni"), gnmicapi.SubscriptionMode("sample"), gnmicapi.SampleInterval(200*time.Millisecond)))
		vals, synced := values(sm, 1100*time.Millisecond)
		if !synced || len(vals) < 4 || len(vals) > 7 {
			t.Errorf("SAMPLE at 200ms for 1.1s (updates_only %v): %v (synced %v); want about 5 samples", only, vals, synced)
		}
		stop()
	}
	// An encoding the server does not send is refused, naming those it does.
	sreq, err := gnmicapi.NewSubscribeRequest(gnmicapi.Subscription(gnmicapi.Path(red+"/config/vni")), gnmicapi.SubscriptionListMode("once"), gnmicapi.Encoding("proto"))
	must(sreq, err)
	if _, err := tg.SubscribeOnce(ctx, sreq); status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "JSON_IETF") {
		t.Errorf("subscribe in PROTO = %v; want Unimplemented naming JSON_IETF", err)
	}
}

// ygnmi's queries are typed on path structs that ygnmi's generator makes
// from the model. p4mesh's model is read through the ygot structs the
// server itself uses (gnmi/oc); rather than generating a second package of
// path structs for the few paths this test uses, the queries are built
// with the constructors the generated code calls (NewNodePath,
// NewConfigQuery, NewSingletonQuery), with the same arguments it passes
// for an uncompressed schema.

func ocSchema() *ytypes.Schema {
	return &ytypes.Schema{Root: &oc.Device{}, SchemaTree: oc.SchemaTree, Unmarshal: oc.Unmarshal}
}

// nodePath is a path struct for the schema path elems (keys on the
// elements that have them) from the root.
type nodePath struct{ *ygnmi.NodePath }

func pathOf(elems ...*gnmi.PathElem) ygnmi.PathStruct {
	root := ygnmi.NewDeviceRootBase()
	// ygnmi gives paths without an origin "openconfig", which p4mesh
	// refuses (§2.2.2.1: it serves its own model only); ygnmi's generator
	// puts a model's own origin on the root this way.
	root.PutCustomData(ygnmi.OriginOverride, "p4mesh")
	var p ygnmi.PathStruct = root
	for _, e := range elems {
		keys := map[string]any{}
		for k, v := range e.GetKey() {
			keys[k] = v
		}
		p = nodePath{ygnmi.NewNodePath([]string{e.GetName()}, keys, p)}
	}
	return p
}

func elemsOf(t *testing.T, s string) []*gnmi.PathElem {
	t.Helper()
	p, err := ygot.StringToStructuredPath(s)
	if err != nil {
		t.Fatal(err)
	}
	return p.GetElem()
}

// vpcConfig is the config container of VPC name.
func vpcConfig(t *testing.T, name string) ygnmi.ConfigQuery[*oc.P4Mesh_P4Mesh_Vpcs_Vpc_Config] {
	return ygnmi.NewConfigQuery[*oc.P4Mesh_P4Mesh_Vpcs_Vpc_Config]("P4Mesh_P4Mesh_Vpcs_Vpc_Config", false, false, false, false, false, false,
		pathOf(elemsOf(t, "/p4mesh/vpcs/vpc[name="+name+"]/config")...), nil, nil, ocSchema, nil, nil)
}

// vpcVNI is leaf config/vni of VPC name.
func vpcVNI(t *testing.T, name string) ygnmi.ConfigQuery[uint32] {
	return ygnmi.NewConfigQuery[uint32]("P4Mesh_P4Mesh_Vpcs_Vpc_Config", false, false, true, true, false, false,
		pathOf(elemsOf(t, "/p4mesh/vpcs/vpc[name="+name+"]/config/vni")...),
		func(gs ygot.ValidatedGoStruct) (uint32, bool) {
			v := gs.(*oc.P4Mesh_P4Mesh_Vpcs_Vpc_Config).Vni
			if v == nil {
				return 0, false
			}
			return *v, true
		},
		func() ygot.ValidatedGoStruct { return new(oc.P4Mesh_P4Mesh_Vpcs_Vpc_Config) }, ocSchema, nil, nil)
}

// vpcSubnets is leaf-list config/subnets of VPC name.
func vpcSubnets(t *testing.T, name string) ygnmi.ConfigQuery[[]string] {
	return ygnmi.NewConfigQuery[[]string]("P4Mesh_P4Mesh_Vpcs_Vpc_Config", false, false, true, false, false, false,
		pathOf(elemsOf(t, "/p4mesh/vpcs/vpc[name="+name+"]/config/subnets")...),
		func(gs ygot.ValidatedGoStruct) ([]string, bool) {
			v := gs.(*oc.P4Mesh_P4Mesh_Vpcs_Vpc_Config).Subnets
			return v, v != nil
		},
		func() ygot.ValidatedGoStruct { return new(oc.P4Mesh_P4Mesh_Vpcs_Vpc_Config) }, ocSchema, nil, nil)
}

// peeringActive is leaf state/active of a peering: state, read-only.
func peeringActive(t *testing.T, vpc, peer string) ygnmi.SingletonQuery[bool] {
	return ygnmi.NewSingletonQuery[bool]("P4Mesh_P4Mesh_Peerings_Peering_State", true, false, true, true, false, false,
		pathOf(elemsOf(t, "/p4mesh/peerings/peering[vpc="+vpc+"][peer-vpc="+peer+"]/state/active")...),
		func(gs ygot.ValidatedGoStruct) (bool, bool) {
			v := gs.(*oc.P4Mesh_P4Mesh_Peerings_Peering_State).Active
			if v == nil {
				return false, false
			}
			return *v, true
		},
		func() ygot.ValidatedGoStruct { return new(oc.P4Mesh_P4Mesh_Peerings_Peering_State) }, ocSchema, nil, nil)
}

func ygnmiClient(t *testing.T, addr string, admin mtls.Files) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	creds, err := mtls.Load(admin, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(mtls.ClientCredentials(creds, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gc := gnmi.NewGNMIClient(conn)
	// ygnmi checks that every notification carries the target it asked
	// for: the server echoes it (§2.2.2.1).
	c, err := ygnmi.NewClient(gc, ygnmi.WithTarget("c1"))
	if err != nil {
		t.Fatal(err)
	}
	// ygnmi subscribes in PROTO unless told: p4mesh answers JSON_IETF
	// or JSON, and refuses PROTO, naming them.
	jsonIETF := ygnmi.WithEncoding(gnmi.Encoding_JSON_IETF)
	if _, err := ygnmi.Lookup(ctx, c, vpcVNI(t, "green")); status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "JSON_IETF") {
		t.Errorf("ygnmi Lookup in its default encoding (PROTO) = %v; want Unimplemented naming JSON_IETF", err)
	}

	// Capabilities, through the same connection.
	if caps, err := gc.Capabilities(ctx, &gnmi.CapabilityRequest{}); err != nil || !slices.Contains(caps.GetSupportedEncodings(), gnmi.Encoding_JSON) {
		t.Errorf("Capabilities = %v, %v", caps, err)
	}

	// Get (ygnmi's Get is a ONCE Subscribe; WithUseGet a gNMI Get in
	// JSON_IETF) of a leaf, a leaf-list and a container, all JSON_IETF.
	if v, err := ygnmi.Get(ctx, c, vpcVNI(t, "green"), jsonIETF); err != nil || v != 300 {
		t.Errorf("ygnmi Get green's VNI = %d, %v; want 300", v, err)
	}
	// (Not ygnmi in JSON: it unmarshals leaves with ygot's
	// ytypes.SetNode, which takes json_ietf_val only and calls json_val
	// deprecated. gnmic reads JSON above.)
	if v, err := ygnmi.Get(ctx, c, vpcVNI(t, "green"), ygnmi.WithUseGet()); err != nil || v != 300 {
		t.Errorf("ygnmi Get (gNMI Get) green's VNI = %d, %v; want 300", v, err)
	}
	if v, err := ygnmi.Get(ctx, c, vpcSubnets(t, "green"), jsonIETF); err != nil || !slices.Equal(v, []string{"10.3.0.0/16"}) {
		t.Errorf("ygnmi Get green's subnets = %v, %v", v, err)
	}
	cfg, err := ygnmi.Get(ctx, c, vpcConfig(t, "green"), ygnmi.WithUseGet())
	if err != nil || cfg.GetVni() != 300 || cfg.GetName() != "green" {
		t.Fatalf("ygnmi Get green's config = %v, %v", cfg, err)
	}

	// Sets: a leaf (ygnmi sends a scalar), a leaf-list, a container
	// replaced and updated (JSON_IETF), a delete.
	if _, err := ygnmi.Update(ctx, c, vpcVNI(t, "green"), 301); err != nil {
		t.Fatalf("ygnmi Update green's VNI: %v", err)
	}
	if _, err := ygnmi.Update(ctx, c, vpcSubnets(t, "green"), []string{"10.3.0.0/16", "10.6.0.0/16"}); err != nil {
		t.Fatalf("ygnmi Update green's subnets: %v", err)
	}
	if v, err := ygnmi.Get(ctx, c, vpcSubnets(t, "green"), jsonIETF); err != nil || len(v) != 2 {
		t.Errorf("green's subnets after the update = %v, %v", v, err)
	}
	cfg.Vni, cfg.Subnets = ygot.Uint32(302), []string{"10.3.0.0/16"}
	if _, err := ygnmi.Replace(ctx, c, vpcConfig(t, "green"), cfg); err != nil {
		t.Fatalf("ygnmi Replace green's config: %v", err)
	}
	got, err := ygnmi.Get(ctx, c, vpcConfig(t, "green"), jsonIETF)
	if err != nil || got.GetVni() != 302 || len(got.Subnets) != 1 {
		t.Errorf("green's config after the replace = %v, %v", got, err)
	}
	// An update of a container merges: the subnets it does not give stay.
	if _, err := ygnmi.Update(ctx, c, vpcConfig(t, "green"), &oc.P4Mesh_P4Mesh_Vpcs_Vpc_Config{Name: ygot.String("green"), Vni: ygot.Uint32(303)}); err != nil {
		t.Fatalf("ygnmi Update green's config: %v", err)
	}
	if v, err := ygnmi.Get(ctx, c, vpcSubnets(t, "green"), jsonIETF); err != nil || len(v) != 1 {
		t.Errorf("green's subnets after a merging update = %v, %v", v, err)
	}
	// An invalid Set (VNI 0) is refused, and nothing changes.
	if _, err := ygnmi.Update(ctx, c, vpcVNI(t, "green"), 0); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ygnmi Update of green's VNI to 0 = %v; want InvalidArgument", err)
	}
	if v, err := ygnmi.Get(ctx, c, vpcVNI(t, "green"), jsonIETF); err != nil || v != 303 {
		t.Errorf("green's VNI after a refused Set = %d, %v; want 303", v, err)
	}

	// A list entry, replaced whole and deleted.
	pol := ygnmi.NewConfigQuery[*oc.P4Mesh_P4Mesh_ExportPolicies_ExportPolicy]("P4Mesh_P4Mesh_ExportPolicies_ExportPolicy", false, false, false, false, false, false,
		pathOf(elemsOf(t, "/p4mesh/export-policies/export-policy[name=ssh]")...), nil, nil, ocSchema, nil, nil)
	if _, err := ygnmi.Replace(ctx, c, pol, &oc.P4Mesh_P4Mesh_ExportPolicies_ExportPolicy{Name: ygot.String("ssh"),
		Config: &oc.P4Mesh_P4Mesh_ExportPolicies_ExportPolicy_Config{Name: ygot.String("ssh"), Protocols: []string{"tcp"}}}); err != nil {
		t.Fatalf("ygnmi Replace export policy ssh: %v", err)
	}
	if p, err := ygnmi.Get(ctx, c, pol, ygnmi.WithUseGet()); err != nil || !slices.Equal(p.GetConfig().Protocols, []string{"tcp"}) {
		t.Errorf("export policy ssh = %v, %v", p, err)
	}
	if _, err := ygnmi.Delete(ctx, c, pol); err != nil {
		t.Fatalf("ygnmi Delete export policy ssh: %v", err)
	}
	if v, err := ygnmi.Lookup(ctx, c, pol, jsonIETF); err != nil || v.IsPresent() {
		t.Errorf("export policy ssh after its delete = %v, %v; want absent", v, err)
	}

	// STREAM ON_CHANGE (ygnmi's Watch): the new value arrives, and
	// state (a peering's active) is read.
	w := ygnmi.Watch(ctx, c, vpcVNI(t, "green"), func(v *ygnmi.Value[uint32]) error {
		if x, ok := v.Val(); ok && x == 304 {
			return nil
		}
		return ygnmi.Continue
	}, jsonIETF, ygnmi.WithSubscriptionMode(gnmi.SubscriptionMode_ON_CHANGE))
	time.Sleep(200 * time.Millisecond) // let the watch have its dump
	if _, err := ygnmi.Update(ctx, c, vpcVNI(t, "green"), 304); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Await(); err != nil {
		t.Errorf("ygnmi Watch of green's VNI for 304: %v", err)
	}
	if active, err := ygnmi.Get(ctx, c, peeringActive(t, "red", "blue"), jsonIETF); err != nil || active {
		t.Errorf("red–blue active (c2 is not running) = %v, %v; want false", active, err)
	}
	// SAMPLE (ygnmi's Collect): several samples of an unchanged value.
	col := ygnmi.Collect(ctx, c, vpcVNI(t, "green"), jsonIETF, ygnmi.WithSubscriptionMode(gnmi.SubscriptionMode_SAMPLE), ygnmi.WithSampleInterval(200*time.Millisecond))
	time.Sleep(1100 * time.Millisecond)
	cancel()
	vals, _ := col.Await()
	if len(vals) < 4 {
		t.Errorf("ygnmi Collect with SAMPLE at 200ms for 1.1s: %d values; want about 5", len(vals))
	}

	// Set a leaf, delete it, then read it gone.
	ctx2, cancel2 := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel2()
	gw := ygnmi.NewConfigQuery[string]("P4Mesh_P4Mesh_Vpcs_Vpc_Config", false, false, true, true, false, false,
		pathOf(elemsOf(t, "/p4mesh/vpcs/vpc[name=green]/config/gateway-mac")...),
		func(gs ygot.ValidatedGoStruct) (string, bool) {
			v := gs.(*oc.P4Mesh_P4Mesh_Vpcs_Vpc_Config).GatewayMac
			if v == nil {
				return "", false
			}
			return *v, true
		},
		func() ygot.ValidatedGoStruct { return new(oc.P4Mesh_P4Mesh_Vpcs_Vpc_Config) }, ocSchema, nil, nil)
	if _, err := ygnmi.Update(ctx2, c, gw, "02:00:00:00:03:fe"); err != nil {
		t.Fatalf("ygnmi Update green's gateway MAC: %v", err)
	}
	if v, err := ygnmi.Get(ctx2, c, gw, jsonIETF); err != nil || v != "02:00:00:00:03:fe" {
		t.Errorf("green's gateway MAC = %q, %v", v, err)
	}
	if _, err := ygnmi.Delete(ctx2, c, gw); err != nil {
		t.Fatalf("ygnmi Delete green's gateway MAC: %v", err)
	}
	if v, err := ygnmi.Lookup(ctx2, c, gw, jsonIETF); err != nil || v.IsPresent() {
		t.Errorf("green's gateway MAC after its delete = %v, %v; want absent", v, err)
	}
}
