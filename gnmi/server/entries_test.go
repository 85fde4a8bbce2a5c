package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/store/boltstore"
)

// TestSetEntriesMatchesWhole: a run of Sets, each taken by setEntries on
// one server and by setWhole on another that started identical. Each must
// give the same answer or the same error (code and text), and leave the
// same configuration, order included. The steps follow each other on the
// same servers, so the index setEntries keeps up is used across Changes
// it made, across refusals, and across a change made outside gNMI.
// Steps marked fast must be taken by setEntries: a comparison with a Set
// it handed to setWhole proves nothing.
// elems is the path /p4mesh/<es>: one a path string cannot spell, such
// as one with a key of "".
func elems(es ...*gnmi.PathElem) *gnmi.Path {
	return &gnmi.Path{Elem: append([]*gnmi.PathElem{{Name: "p4mesh"}}, es...)}
}

// noVPC is the priority of the route of no VPC to prefix.
func noVPC(prefix string) *gnmi.Path {
	return elems(&gnmi.PathElem{Name: "routes"}, &gnmi.PathElem{Name: "route", Key: map[string]string{"vpc": "", "prefix": prefix, "next-hop": "-"}},
		&gnmi.PathElem{Name: "config"}, &gnmi.PathElem{Name: "priority"})
}

func TestSetEntriesMatchesWhole(t *testing.T) {
	fast, fastCtl, _ := fuzzServer(t)
	whole, wholeCtl, _ := fuzzServer(t)
	whole.wholeOnly = true

	leaves := func(s ...string) *gnmi.TypedValue {
		var el []*gnmi.TypedValue
		for _, v := range s {
			el = append(el, stringVal(v))
		}
		return &gnmi.TypedValue{Value: &gnmi.TypedValue_LeaflistVal{LeaflistVal: &gnmi.ScalarArray{Element: el}}}
	}
	up := func(p string, v *gnmi.TypedValue) *gnmi.Update { return &gnmi.Update{Path: path(t, p), Val: v} }
	ep := func(id, leaf string) string { return "/p4mesh/endpoints/endpoint[id=" + id + "]" + leaf }
	epJSON := func(id, ip, mac, host string, port int) *gnmi.TypedValue {
		return ietfVal(fmt.Sprintf(`{"p4mesh:id":%q,"p4mesh:config":{"id":%q,"vpc":"red","kind":"vm","ip":%q,"mac":%q,"host":%q,"port":%d}}`, id, id, ip, mac, host, port))
	}
	const route = "/p4mesh/routes/route[vpc=red][prefix=172.16.0.0/12][next-hop=red-router]"

	steps := []struct {
		name string
		req  *gnmi.SetRequest
		fast bool
		// outside, if set, changes both controllers' configuration
		// before the Set, as a SIGHUP reload would.
		outside func(*controller.Config)
	}{
		{name: "leaf of an endpoint", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{up(ep("red-vm1", "/config/port"), uintVal(5))}}},
		{name: "VNI of a VPC", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{up("/p4mesh/vpcs/vpc[name=red]/config/vni", uintVal(101))}}},
		{name: "new endpoint as JSON_IETF", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{up(ep("new1", ""), epJSON("new1", "10.1.0.50", "02:01:00:00:00:50", "h1", 9))}}},
		{name: "new endpoint leaf by leaf", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{
			up(ep("new2", "/config/vpc"), stringVal("red")), up(ep("new2", "/config/kind"), stringVal("vm")),
			up(ep("new2", "/config/ip"), stringVal("10.1.0.51")), up(ep("new2", "/config/mac"), stringVal("02:01:00:00:00:51")),
			up(ep("new2", "/config/host"), stringVal("h2")), up(ep("new2", "/config/port"), uintVal(9))}}},
		{name: "new endpoint under a prefix", fast: true, req: &gnmi.SetRequest{
			Prefix: path(t, "/p4mesh/endpoints"),
			Update: []*gnmi.Update{{Path: path(t, "endpoint[id=new3]"), Val: ietfVal(
				`{"id":"new3","config":{"id":"new3","vpc":"red","kind":"vm","ip":"10.1.0.52","mac":"02:01:00:00:00:52","host":"h3","port":9}}`)}}}},
		{name: "a leaf as JSON", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{
			up(ep("new3", "/config/port"), &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonVal{JsonVal: []byte(`10`)}})}}},
		// A replace deletes the entry and creates it again: at the end of
		// its list, in both trees, in the order of the operations.
		{name: "replace two endpoints", fast: true, req: &gnmi.SetRequest{Replace: []*gnmi.Update{
			up(ep("red-vm2", ""), epJSON("red-vm2", "10.1.0.11", "02:01:00:00:00:0b", "h2", 4)),
			up(ep("red-vm1", ""), epJSON("red-vm1", "10.1.0.10", "02:01:00:00:00:0a", "h1", 2))}}},
		{name: "merge JSON into an endpoint", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{
			up(ep("red-router", ""), ietfVal(`{"p4mesh:config":{"port":7}}`))}}},
		{name: "replace a leaf", fast: true, req: &gnmi.SetRequest{Replace: []*gnmi.Update{up(ep("red-router", "/config/port"), uintVal(8))}}},
		{name: "delete an endpoint", fast: true, req: &gnmi.SetRequest{Delete: []*gnmi.Path{path(t, ep("new2", ""))}}},
		{name: "delete an absent endpoint", fast: true, req: &gnmi.SetRequest{Delete: []*gnmi.Path{path(t, ep("never", ""))}}},
		{name: "delete and create again", fast: true, req: &gnmi.SetRequest{
			Delete: []*gnmi.Path{path(t, ep("green-vm1", ""))},
			Update: []*gnmi.Update{up(ep("green-vm1", ""), ietfVal(`{"p4mesh:id":"green-vm1","p4mesh:config":{"id":"green-vm1","vpc":"green","kind":"vm","ip":"10.3.0.10","mac":"02:03:00:00:00:0a","host":"h3","port":2}}`))}}},
		{name: "entries of every kind", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{
			up("/p4mesh/directory/controllers/controller[name=c1]/config/address", stringVal("127.0.0.1:2")),
			up("/p4mesh/vpcs/vpc[name=green]/config/gateway-ip", stringVal("10.3.0.253")),
			up("/p4mesh/hosts/host[id=h2]/config/uplink-port", uintVal(3)),
			up("/p4mesh/hosts/host[id=h2]/underlay-routes/underlay-route[prefix=10.99.0.0/16]/config", ietfVal(`{"prefix":"10.99.0.0/16","port":3,"src-mac":"02:aa:00:00:00:02","dst-mac":"02:fe:00:00:00:02"}`)),
			up("/p4mesh/load-balancers/load-balancer[name=red-web]/backends/backend[endpoint=new1]/config/weight", uintVal(3)),
			up(route+"/config/priority", uintVal(7)),
			up("/p4mesh/export-policies/export-policy[name=web]/config/protocols", leaves("tcp")),
			up("/p4mesh/peerings/peering[vpc=red][peer-vpc=blue]/config/preference", &gnmi.TypedValue{Value: &gnmi.TypedValue_IntVal{IntVal: 5}}),
			up("/p4mesh/peerings/peering[vpc=green][peer-vpc=blue]/config/export-policy", stringVal("web")),
			up("/p4mesh/routes/route[vpc=red][prefix=10.9.0.0/16][next-hop=-]/config/priority", uintVal(1)),
		}}},
		{name: "route with the same prefix to another next hop", fast: true, req: &gnmi.SetRequest{Replace: []*gnmi.Update{
			up("/p4mesh/routes/route[vpc=red][prefix=172.16.0.0/12][next-hop=new1]", ietfVal(`{"p4mesh:vpc":"red","p4mesh:prefix":"172.16.0.0/12","p4mesh:next-hop":"new1","p4mesh:config":{"vpc":"red","prefix":"172.16.0.0/12","next-hop":"new1","priority":20}}`))}}},
		{name: "new gateway pool", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{
			up("/p4mesh/gateway-pools/gateway-pool[name=gw]", ietfVal(`{"p4mesh:name":"gw","p4mesh:config":{"name":"gw","members":["h2"],"vpcs":["blue"],"direct-above-pps":"100"}}`))}}},
		{name: "leaf of a gateway pool", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{up("/p4mesh/gateway-pools/gateway-pool[name=gw]/config/members", leaves("h2", "h3"))}}},

		// Refusals: nothing changes, the same error either way.
		{name: "gateway pool serving a VPC twice", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{
			up("/p4mesh/gateway-pools/gateway-pool[name=gw2]", ietfVal(`{"p4mesh:name":"gw2","p4mesh:config":{"name":"gw2","members":["h1"],"vpcs":["blue"]}}`))}}},
		{name: "delete a gateway pool's member host", fast: true, req: &gnmi.SetRequest{Delete: []*gnmi.Path{path(t, "/p4mesh/hosts/host[id=h3]")}}},
		{name: "value out of range", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{up(ep("red-vm1", "/config/port"), uintVal(70000))}}},
		{name: "value of another type", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{up(ep("red-vm1", "/config/port"), stringVal("two"))}}},
		{name: "unknown leaf", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{up(ep("red-vm1", "/config/colour"), stringVal("blue"))}}},
		{name: "state leaf", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{up("/p4mesh/peerings/peering[vpc=red][peer-vpc=blue]/state/active", &gnmi.TypedValue{Value: &gnmi.TypedValue_BoolVal{}})}}},
		// Two entries only the schema refuses, named against the order of
		// their list: the errors come in the list's order.
		{name: "schema, two entries", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{
			up(ep("new3", "/config/mac"), stringVal("02-aa-00-00-00-09")),
			up(ep("new1", "/config/mac"), stringVal("02-aa-00-00-00-08")),
		}}},
		{name: "schema, a new entry", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{up(ep("Bad/Name", "/config/port"), uintVal(3))}}},
		{name: "duplicate IP", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{up(ep("dup", ""), epJSON("dup", "10.1.0.10", "02:01:00:00:00:60", "h1", 11))}}},
		{name: "delete a load balancer's backend endpoint", fast: true, req: &gnmi.SetRequest{Delete: []*gnmi.Path{path(t, ep("red-vm2", ""))}}},
		{name: "unknown host", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{up(ep("red-vm1", "/config/host"), stringVal("nope"))}}},
		{name: "unknown export policy", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{up("/p4mesh/peerings/peering[vpc=red][peer-vpc=blue]/config/export-policy", stringVal("nope"))}}},
		{name: "unknown next hop beside another route", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{up("/p4mesh/routes/route[vpc=red][prefix=172.16.0.0/12][next-hop=ghost]/config/priority", uintVal(1))}}},
		{name: "delete a VPC in use", fast: true, req: &gnmi.SetRequest{Delete: []*gnmi.Path{path(t, "/p4mesh/vpcs/vpc[name=green]")}}},
		{name: "a key leaf that differs from the key", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{up(ep("new1", "/config/id"), stringVal("other"))}}},
		// Items without a name, which the controller's errors would name
		// by index in the whole configuration the Set would make: the
		// schema refuses them first (refused).
		{name: "an endpoint of no id", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{{Path: elems(
			&gnmi.PathElem{Name: "endpoints"}, &gnmi.PathElem{Name: "endpoint", Key: map[string]string{"id": ""}}, &gnmi.PathElem{Name: "config"}, &gnmi.PathElem{Name: "port"}), Val: uintVal(3)}}}},
		{name: "a route of no VPC", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{{Path: noVPC("10.9.0.0/16"), Val: uintVal(1)}}}},
		{name: "two routes of no VPC", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{
			{Path: noVPC("10.9.0.0/16"), Val: uintVal(1)}, {Path: noVPC("10.8.0.0/16"), Val: uintVal(1)}}}},
		{name: "good then bad", fast: true, req: &gnmi.SetRequest{
			Delete: []*gnmi.Path{path(t, ep("new3", ""))},
			Update: []*gnmi.Update{up("/p4mesh/vpcs/vpc[name=red]/config/vni", uintVal(300))}}},

		// Sets setEntries leaves to setWhole, still compared.
		{name: "a key leaf set to another entry's key", req: &gnmi.SetRequest{Replace: []*gnmi.Update{up(ep("new3", "/id"), stringVal("new1"))}}},
		{name: "a route prefix spelled with host bits", req: &gnmi.SetRequest{Update: []*gnmi.Update{up("/p4mesh/routes/route[vpc=red][prefix=172.16.0.1/12][next-hop=red-router]/config/priority", uintVal(1))}}},
		{name: "an IPv6 route", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{up("/p4mesh/routes/route[vpc=red][prefix=fd00::/8][next-hop=-]/config/priority", uintVal(2))}}},
		{name: "the IPv6 route in capitals", req: &gnmi.SetRequest{Update: []*gnmi.Update{up("/p4mesh/routes/route[vpc=red][prefix=FD00::/8][next-hop=-]/config/priority", uintVal(3))}}},
		{name: "wildcard", req: &gnmi.SetRequest{Update: []*gnmi.Update{up("/p4mesh/hosts/host[id=*]/config/uplink-port", uintVal(4))}}},
		{name: "a whole list", req: &gnmi.SetRequest{Delete: []*gnmi.Path{path(t, "/p4mesh/routes")}}},
		{name: "outside a list", req: &gnmi.SetRequest{Update: []*gnmi.Update{up("/p4mesh/controller/config/name", stringVal("c1"))}}},

		// After a change made outside gNMI, the index follows.
		{name: "after an outside change", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{up(ep("outside", "/config/port"), uintVal(12))}},
			outside: func(c *controller.Config) {
				c.Endpoints = slices.Insert(c.Endpoints, 0, controller.Endpoint{ID: "outside", VPC: "red", Kind: controller.KindVM,
					IP: netip.MustParseAddr("10.1.0.70"), MAC: controller.MAC{2, 1, 0, 0, 0, 0x70}, Host: "h1", Port: 11})
			}},
		// A running configuration the schema refuses (the controller's
		// rules let a protocol be spelled "0006") refuses every Set on the
		// whole tree; setEntries, which checks only what a Set touches,
		// must leave such Sets to it.
		{name: "a running configuration the schema refuses", req: &gnmi.SetRequest{Update: []*gnmi.Update{up(ep("outside", "/config/port"), uintVal(14))}},
			outside: func(c *controller.Config) { c.ExportPolicies[0].Protocols = []string{"0006"} }},
		{name: "schema-clean again", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{up(ep("outside", "/config/port"), uintVal(15))}},
			outside: func(c *controller.Config) { c.ExportPolicies[0].Protocols = nil }},
		{name: "delete before, then touch after", fast: true, req: &gnmi.SetRequest{Delete: []*gnmi.Path{path(t, ep("outside", ""))}}},
		{name: "an entry past the deleted one", fast: true, req: &gnmi.SetRequest{Update: []*gnmi.Update{up(ep("green-vm1", "/config/port"), uintVal(13))}}},
		{name: "replace the last entry", fast: true, req: &gnmi.SetRequest{Replace: []*gnmi.Update{up(ep("green-vm1", ""), ietfVal(`{"p4mesh:id":"green-vm1","p4mesh:config":{"id":"green-vm1","vpc":"green","kind":"vm","ip":"10.3.0.10","mac":"02:03:00:00:00:0a","host":"h3","port":2}}`))}}},
	}
	for _, st := range steps {
		if st.outside != nil {
			for _, ctl := range []*controller.Server{fastCtl, wholeCtl} {
				c := ctl.Config().Clone()
				st.outside(c)
				if err := ctl.Apply(c); err != nil {
					t.Fatalf("%s: outside change: %v", st.name, err)
				}
			}
		}
		before := fastCtl.Config()
		fast.setMu.Lock()
		fr, _, ok, ferr := fast.setEntries(st.req)
		if !ok {
			fr, ferr = fast.setWhole(st.req)
		}
		fast.setMu.Unlock()
		if st.fast && !ok {
			t.Errorf("%s: setEntries handed the Set to setWhole", st.name)
		}
		wr, werr := whole.setWhole(st.req)
		if ferr != nil || werr != nil {
			fs, ws := status.Convert(ferr), status.Convert(werr)
			if fs.Code() != ws.Code() || fs.Message() != ws.Message() {
				t.Errorf("%s: errors differ\n entries: %v\n   whole: %v", st.name, ferr, werr)
			}
			if ferr != nil && !fastCtl.Config().Equal(before) {
				t.Errorf("%s: refused (%v), and changed the configuration", st.name, ferr)
			}
		} else {
			fr, wr = proto.Clone(fr).(*gnmi.SetResponse), proto.Clone(wr).(*gnmi.SetResponse)
			fr.Timestamp, wr.Timestamp = 0, 0
			if !proto.Equal(fr, wr) {
				t.Errorf("%s: answers differ\n entries: %v\n   whole: %v", st.name, fr, wr)
			}
		}
		// An accepted Set leaves the index describing the configuration
		// it made: were it lost, the next Set would pay a rebuild.
		if ok && ferr == nil && fast.ent.seq != fastCtl.ConfigSeq() {
			t.Errorf("%s: the index lost track of the configuration", st.name)
		}
		if f, w := fastCtl.Config(), wholeCtl.Config(); !f.Equal(w) {
			t.Fatalf("%s: the configurations differ: %v", st.name, controller.DiffConfigs(w, f, "whole", "entries"))
		}
		t.Logf("%s: %v", st.name, ferr)
	}
}

// TestEditsAndDeletesBuildNoConfig: a run of Sets of endpoints (leaves
// edited, entries merged, replaced, deleted, added) never has the
// controller materialise its whole configuration (controller.ConfigBuilds),
// as planning a Set on Config did after every delete or edit; and after
// each batch of eight, Get answers what the run made, and the configuration is the one
// the same edits make applied to a copy, order included.
func TestEditsAndDeletesBuildNoConfig(t *testing.T) {
	_, _, start := fuzzServer(t)
	// The daemon's store: one key per item, which never asks for the
	// whole configuration (the YAML file's store materialises it on every
	// change, to write it).
	backend, err := boltstore.Open(filepath.Join(t.TempDir(), "store.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })
	store, err := controller.OpenItemStore(t.Context(), backend)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Startup(start, false); err != nil {
		t.Fatal(err)
	}
	ctl, err := controller.NewServer(controller.ServerOptions{Auth: identity.Auth{Insecure: true}, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Auth: identity.Auth{Insecure: true}, Controller: ctl})
	if err != nil {
		t.Fatal(err)
	}
	want := start.Clone()
	r := rand.New(rand.NewPCG(14, 3))
	ep := func(id string) string { return "/p4mesh/endpoints/endpoint[id=" + id + "]" }
	var ids []string // the endpoints the run made, still there
	n := 0
	newEP := func() controller.Endpoint {
		n++
		return controller.Endpoint{ID: fmt.Sprint("e", n), VPC: "red", Kind: controller.KindVM, IP: netip.AddrFrom4([4]byte{10, 1, 1, byte(n)}),
			MAC: controller.MAC{2, 9, 0, 0, 0, byte(n)}, Host: "h1", Port: uint16(100 + n)}
	}
	epJSON := func(e controller.Endpoint) *gnmi.TypedValue {
		return ietfVal(fmt.Sprintf(`{"p4mesh:id":%q,"p4mesh:config":{"id":%q,"vpc":%q,"kind":"vm","ip":%q,"mac":%q,"host":%q,"port":%d}}`,
			e.ID, e.ID, e.VPC, e.IP, e.MAC, e.Host, e.Port))
	}
	get := func(id string) (controller.Endpoint, bool) {
		i := slices.IndexFunc(want.Endpoints, func(e controller.Endpoint) bool { return e.ID == id })
		if i < 0 {
			return controller.Endpoint{}, false
		}
		return want.Endpoints[i], true
	}
	// The start's indexing is done (it builds the configuration once:
	// the controller keeps none from its start).
	for indexed := false; !indexed; time.Sleep(time.Millisecond) {
		srv.setMu.Lock()
		indexed = srv.ent.seq != 0
		srv.setMu.Unlock()
	}
	builds := ctl.ConfigBuilds()
	// A refusal is worded from what the Set touches, not from the whole
	// configuration it would make. (The GC drops the snapshot the
	// indexing built, which nobody holds: building it again counts.)
	runtime.GC()
	dup := start.Endpoints[0]
	dup.ID, dup.MAC, dup.Port = "dup", controller.MAC{2, 9, 9, 0, 0, 1}, 99
	if _, err := srv.Set(context.Background(), &gnmi.SetRequest{Update: []*gnmi.Update{{Path: path(t, ep("dup")), Val: epJSON(dup)}}}); status.Code(err) != codes.InvalidArgument ||
		!strings.Contains(err.Error(), "/p4mesh/endpoints/endpoint[id=dup]/config/ip: "+dup.IP.String()+" is also the IP of endpoint "+start.Endpoints[0].ID) {
		t.Fatalf("a second endpoint with %s's IP: %v", start.Endpoints[0].ID, err)
	}
	if b := ctl.ConfigBuilds(); b != builds {
		t.Fatalf("a refused Set built the whole configuration %d times", b-builds)
	}
	var touched []string
	for step := range 80 {
		var req *gnmi.SetRequest
		ch := &controller.Change{}
		var id, what string
		switch k := r.IntN(5); {
		case k == 0 || len(ids) < 3:
			e := newEP()
			id, what = e.ID, "add"
			req = &gnmi.SetRequest{Update: []*gnmi.Update{{Path: path(t, ep(id)), Val: epJSON(e)}}}
			ch.Endpoints = append(ch.Endpoints, e)
			ids = append(ids, id)
		case k == 1: // a leaf
			id, what = ids[r.IntN(len(ids))], "edit a leaf"
			e, _ := get(id)
			n++
			e.Port = uint16(100 + n)
			req = &gnmi.SetRequest{Update: []*gnmi.Update{{Path: path(t, ep(id)+"/config/port"), Val: uintVal(uint64(e.Port))}}}
			ch.Endpoints = append(ch.Endpoints, e)
		case k == 2: // merge into the entry
			id, what = ids[r.IntN(len(ids))], "merge"
			e, _ := get(id)
			n++
			e.Port = uint16(100 + n)
			req = &gnmi.SetRequest{Update: []*gnmi.Update{{Path: path(t, ep(id)), Val: ietfVal(fmt.Sprintf(`{"p4mesh:config":{"port":%d}}`, e.Port))}}}
			ch.Endpoints = append(ch.Endpoints, e)
		case k == 3: // replaced whole: to the end of the list
			id, what = ids[r.IntN(len(ids))], "replace"
			e, _ := get(id)
			n++
			e.Port = uint16(100 + n)
			req = &gnmi.SetRequest{Replace: []*gnmi.Update{{Path: path(t, ep(id)), Val: epJSON(e)}}}
			ch.DeleteEndpoints, ch.Endpoints = []string{id}, []controller.Endpoint{e}
		default:
			i := r.IntN(len(ids))
			id, what = ids[i], "delete"
			req = &gnmi.SetRequest{Delete: []*gnmi.Path{path(t, ep(id))}}
			ch.DeleteEndpoints = []string{id}
			ids = slices.Delete(ids, i, i+1)
		}
		if _, err := srv.Set(context.Background(), req); err != nil {
			t.Fatalf("step %d, %s %s: %v", step, what, id, err)
		}
		if b := ctl.ConfigBuilds(); b != builds {
			t.Fatalf("step %d, %s %s: the controller built its whole configuration %d times", step, what, id, b-builds)
		}
		want = ch.ApplyTo(want)
		touched = append(touched, id)
		if step%8 != 7 {
			continue
		}
		// Gets build the whole configuration, which a Set would then
		// find built: only after a batch of Sets.
		for _, id := range touched {
			resp, err := srv.Get(context.Background(), &gnmi.GetRequest{Path: []*gnmi.Path{path(t, ep(id)+"/config/port")}, Encoding: gnmi.Encoding_JSON_IETF})
			e, there := get(id)
			switch {
			case there && err != nil:
				t.Fatalf("step %d, %s: Get: %v", step, id, err)
			case there:
				v := resp.GetNotification()[0].GetUpdate()[0].GetVal()
				got := string(v.GetJsonIetfVal())
				if got == "" {
					got = scalarText(v)
				}
				if got != fmt.Sprint(e.Port) {
					t.Fatalf("step %d, %s: Get port = %s, want %d", step, id, got, e.Port)
				}
			case status.Code(err) != codes.NotFound:
				t.Fatalf("step %d, %s: Get of the deleted endpoint = %v, %v; want NotFound", step, id, resp, err)
			}
		}
		touched = nil
		if got := ctl.Config(); !got.Equal(want) {
			t.Fatalf("step %d: %v", step, controller.DiffConfigs(want, got, "want", "got"))
		}
		builds = ctl.ConfigBuilds() // Get and Config build it, once
	}
}
