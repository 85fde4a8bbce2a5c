package server

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/ygot"

	"github.com/p4mesh/p4mesh/controller"
	p4gnmi "github.com/p4mesh/p4mesh/gnmi"
	"github.com/p4mesh/p4mesh/identity"
)

// fuzzServer is a gNMI server in front of a controller owning red, green
// and blue (red-blue.yaml, with blue's side of the peering), without gRPC:
// the fuzz target calls Set directly.
func fuzzServer(f testing.TB) (*Server, *controller.Server, *controller.Config) {
	f.Helper()
	cfg, err := controller.LoadFile("../../controller/testdata/red-blue.yaml")
	if err != nil {
		f.Fatal(err)
	}
	cfg.Directory = []controller.ControllerEntry{{Name: cfg.Controller, Address: "127.0.0.1:1", VPCs: []string{"red", "green", "blue"}}}
	cfg.VPCs = append(cfg.VPCs, controller.VPC{Name: "blue", VNI: 200, Subnets: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}})
	cfg.Peerings = append(cfg.Peerings, controller.Peering{VPC: "blue", PeerVPC: "red", ExportPolicy: "all"})
	store, err := controller.OpenStore(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	if err := store.Apply(cfg); err != nil {
		f.Fatal(err)
	}
	ctl, err := controller.NewServer(controller.ServerOptions{Auth: identity.Auth{Insecure: true}, Store: store})
	if err != nil {
		f.Fatal(err)
	}
	srv, err := New(Options{Auth: identity.Auth{Insecure: true}, Controller: ctl})
	if err != nil {
		f.Fatal(err)
	}
	return srv, ctl, ctl.Config()
}

// fuzzPath parses s as a gNMI path, or, when it does not parse, uses it
// raw as element names split on "/", so that paths no client library would
// build reach the server too.
func fuzzPath(s string) *gnmi.Path {
	if p, err := ygot.StringToStructuredPath(s); err == nil {
		return p
	}
	p := &gnmi.Path{}
	for _, name := range strings.Split(strings.Trim(s, "/"), "/") {
		p.Elem = append(p.Elem, &gnmi.PathElem{Name: name})
	}
	return p
}

// FuzzSet: any path, value and operation. The server never panics, a
// refused Set leaves the configuration exactly as it was, and an accepted
// one leaves a configuration the server can still report. Both ways are
// checked against what the Set must do, worked out without the server
// (applySet): a Set whose path or value does not fit, or whose result
// fails the YANG model or the controller's rules, must be refused; an
// accepted one must leave exactly that result, and it must validate. That
// oracle shares ygot with the server but none of the server's code, and
// validates with ygot and the controller rather than p4gnmi.Validate: what
// it catches is the server losing an error or a check on the way.
func FuzzSet(f *testing.F) {
	srv, ctl, base := fuzzServer(f)
	root := srv.schema.RootSchema()
	seeds := []struct {
		op         uint8
		path, json string
	}{
		{0, "/p4mesh/vpcs/vpc[name=red]/config/vni", `101`},
		{0, "/p4mesh/vpcs/vpc[name=red]/config/subnets", `["10.1.0.0/16","10.1.128.0/17"]`},
		{0, "/p4mesh/vpcs/vpc[name=purple]", `{"name":"purple","config":{"name":"purple","vni":400,"subnets":["10.4.0.0/16"]}}`},
		{0, "/p4mesh/peerings/peering[vpc=red][peer-vpc=blue]/config/export-policy", `"nope"`},
		{0, "/p4mesh/vpcs/vpc[name=green]/config/subnets", `["10.3.0.1/16"]`},
		{0, "/p4mesh/endpoints/endpoint[id=x]", `{"id":"x","config":{"id":"x","vpc":"red","kind":"vm","ip":"10.1.0.99","mac":"02:00:00:00:00:99","host":"h1","port":7}}`},
		{0, "/p4mesh/peerings/peering[vpc=red][peer-vpc=blue]/state/active", `false`},
		{1, "/p4mesh/export-policies", `{"export-policy":[{"name":"all","config":{"name":"all"}}]}`},
		{1, "/", `{"p4mesh:p4mesh":{"controller":{"config":{"name":"c1"}}}}`},
		{1, "/p4mesh/vpcs/vpc[name=red]/config", `{"name":"blue","vni":100}`},
		{1, "/p4mesh/routes/route[vpc=red][prefix=0.0.0.0/0][next-hop=-]", `{}`},
		{2, "/p4mesh/vpcs/vpc[name=red]", ``},
		{2, "/p4mesh/load-balancers/load-balancer[name=red-web]/backends", ``},
		{2, "/p4mesh/endpoints/endpoint[id=red-vm1]", ``},
		{2, "/", ``},
		{3, "/p4mesh/vpcs/vpc[name=*]/config/vni", `7`},
		{4, "/p4mesh/hosts/host[id=h1]/config/uplink-port", `65536`},
		{0, "/p4mesh/hosts/host[id=h1]/config/mac", `"zz"`},
		{0, "/p4mesh/directory/controllers/controller[name=c1]/config/vpcs", `["red"]`},
		{0, "/nope[", `{`},
		{0, "/p4mesh/vpcs/vpc/config/vni", `null`},
		// Values that do not fit their leaf, where dropping the value
		// would leave a valid configuration.
		{0, "/p4mesh/vpcs/vpc[name=red]/config/vni", `"abc"`},
		{1, "/p4mesh/routes/route[vpc=red][prefix=172.16.0.0/12][next-hop=red-router]/config/priority", `4294967296`},
		// Values only the YANG model refuses.
		{0, "/p4mesh/hosts/host[id=h1]/config/mac", `"02-aa-00-00-00-09"`},
		{0, "/p4mesh/export-policies/export-policy[name=all]/config/protocols", `["0006"]`},
		// JSON (op&4), as gnmic and pygnmi send by default: leaves,
		// containers, lists as objects by key, merges into what exists.
		{4, "/p4mesh/vpcs/vpc[name=red]/config/vni", `102`},
		{4, "/p4mesh/vpcs/vpc[name=red]/config", `{"vni":103,"subnets":["10.1.0.0/16"]}`},
		{4, "/p4mesh/vpcs", `{"vpc":{"red":{"config":{"name":"red","vni":104}}}}`},
		{5, "/p4mesh/peerings", `{"peering":{"red blue":{"config":{"vpc":"red","peer-vpc":"blue","export-policy":"all"}}}}`},
		{0, "/p4mesh/vpcs", `{"p4mesh:vpc":[{"name":"red","config":{"name":"red","vni":105}}]}`},
		{0, "/", `{"p4mesh:p4mesh":{"vpcs":{"vpc":[{"name":"green","config":{"vni":301}}]}}}`},
		{4, "/p4mesh/vpcs/vpc[name=red]", `{"name":"blue"}`},
		// Wildcards: expanded on delete, refused where a value is set.
		{2, "/p4mesh/vpcs/vpc[name=*]/config/gateway-ip", ``},
		{2, "/p4mesh/vpcs/vpc/config/gateway-mac", ``},
		{2, "/p4mesh/peerings/peering[vpc=blue]", ``},
		{2, "/p4mesh/endpoints/endpoint[id=*]/config/port", ``},
		{0, "/p4mesh/vpcs/vpc[name=*]/config/vni", `7`},
		{2, "/p4mesh/vpcs/vpc[id=red]", ``},
		// Element wildcards on delete: "..." any depth, "*" any name.
		{2, "/p4mesh/.../gateway-mac", ``},
		{2, "/.../config/priority", ``},
		{2, "/p4mesh/vpcs/vpc[name=green]/*/gateway-ip", ``},
		{2, "/p4mesh/*/load-balancer", ``},
		{2, "/p4mesh/.../bogus", ``},
		{0, "/p4mesh/.../vni", `7`},
	}
	for _, s := range seeds {
		f.Add(s.op, s.path, s.json)
	}
	f.Fuzz(func(t *testing.T, op uint8, path, value string) {
		p := fuzzPath(path)
		var val *gnmi.TypedValue
		if op&4 == 0 {
			val = &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: []byte(value)}}
		} else {
			val = &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonVal{JsonVal: []byte(value)}}
		}
		req := &gnmi.SetRequest{}
		switch op % 4 {
		case 0:
			req.Update = []*gnmi.Update{{Path: p, Val: val}}
		case 1:
			req.Replace = []*gnmi.Update{{Path: p, Val: val}}
		case 2:
			req.Delete = []*gnmi.Path{p}
		case 3: // a delete and an update of the same path, in one transaction
			req.Delete = []*gnmi.Path{p}
			req.Update = []*gnmi.Update{{Path: p, Val: val}}
		}
		before := ctl.Config()
		want, wrong := wantSet(root, before, req)
		_, err := srv.Set(context.Background(), req)
		if err != nil {
			if after := ctl.Config(); !after.Equal(before) {
				t.Fatalf("Set %v refused (%v) but changed the configuration", req, err)
			}
			return
		}
		if wrong != nil {
			t.Fatalf("Set %v accepted; it must be refused: %v", req, wrong)
		}
		after := ctl.Config()
		if !after.Equal(want) {
			t.Fatalf("Set %v accepted, leaving other than what it makes: %v", req, controller.DiffConfigs(want, after, "the request's result", "the controller"))
		}
		if err := after.Validate(); err != nil {
			t.Fatalf("Set %v accepted, leaving a configuration the controller's rules refuse: %v", req, err)
		}
		if d, err := p4gnmi.FromConfig(after); err != nil {
			t.Fatalf("Set %v accepted, leaving a configuration the model cannot hold: %v", req, err)
		} else if err := checkYANG(d); err != nil {
			t.Fatalf("Set %v accepted, leaving a configuration the YANG model refuses: %v", req, err)
		}
		if _, err := srv.Get(context.Background(), &gnmi.GetRequest{Path: []*gnmi.Path{{}}}); err != nil {
			t.Fatalf("Set %v accepted, then Get / fails: %v", req, err)
		}
		// Start the next input from the same configuration.
		if !ctl.Config().Equal(base) {
			if err := ctl.Apply(base); err != nil {
				t.Fatalf("restore: %v", err)
			}
		}
	})
}

// wantSet is the configuration a Set of req must leave if it is accepted,
// or why it must be refused: a path or value that does not fit the model,
// or a result the YANG model or the controller's rules refuse.
func wantSet(root *yang.Entry, base *controller.Config, req *gnmi.SetRequest) (*controller.Config, error) {
	d, err := applySet(root, base, req)
	if err != nil {
		return nil, fmt.Errorf("it cannot be applied: %w", err)
	}
	if err := checkYANG(d); err != nil {
		return nil, fmt.Errorf("the YANG model refuses the result: %w", err)
	}
	c, err := p4gnmi.ToConfig(d)
	if err != nil {
		return nil, fmt.Errorf("the result does not convert: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("the controller's rules refuse the result: %w", err)
	}
	return c, nil
}
