package server

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/p4mesh/p4mesh/controller"
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
// one leaves a configuration the server can still report.
func FuzzSet(f *testing.F) {
	srv, ctl, base := fuzzServer(f)
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
		_, err := srv.Set(context.Background(), req)
		if err != nil {
			if after := ctl.Config(); !after.Equal(before) {
				t.Fatalf("Set %v refused (%v) but changed the configuration", req, err)
			}
			return
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
