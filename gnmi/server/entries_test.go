package server

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/controller"
)

// TestSetEntriesMatchesWhole: a run of Sets, each taken by setEntries on
// one server and by setWhole on another that started identical. Each must
// give the same answer or the same error (code and text), and leave the
// same configuration, order included. The steps follow each other on the
// same servers, so the index setEntries keeps up is used across Changes
// it made, across refusals, and across a change made outside gNMI.
// Steps marked fast must be taken by setEntries: a comparison with a Set
// it handed to setWhole proves nothing.
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
		fr, ok, ferr := fast.setEntries(st.req)
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
		if ok && ferr == nil && fast.ent.cfg != fastCtl.Config() {
			t.Errorf("%s: the index lost track of the configuration", st.name)
		}
		if f, w := fastCtl.Config(), wholeCtl.Config(); !f.Equal(w) {
			t.Fatalf("%s: the configurations differ: %v", st.name, controller.DiffConfigs(w, f, "whole", "entries"))
		}
		t.Logf("%s: %v", st.name, ferr)
	}
}

// TestListIndexMatchesList: the positions listIndex gives, kept up across
// deletes and appends as controller.Change applies them, are those of the
// list itself.
func TestListIndexMatchesList(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	l := &lists[3] // endpoints
	c := &controller.Config{}
	for i := range 50 {
		c.Endpoints = append(c.Endpoints, controller.Endpoint{ID: fmt.Sprint("e", i)})
	}
	var x listIndex
	x.build(l, c)
	next := 50
	for range 2000 {
		ch := &controller.Change{}
		var dels, puts []entryKey
		for range r.IntN(4) {
			if len(c.Endpoints) > 0 {
				id := c.Endpoints[r.IntN(len(c.Endpoints))].ID
				ch.DeleteEndpoints = append(ch.DeleteEndpoints, id)
				dels = append(dels, one(id))
			}
		}
		for range r.IntN(4) {
			id := fmt.Sprint("e", next)
			if r.IntN(2) == 0 && len(c.Endpoints) > 0 { // in place, or moved if also deleted
				id = c.Endpoints[r.IntN(len(c.Endpoints))].ID
			} else {
				next++
			}
			ch.Endpoints = append(ch.Endpoints, controller.Endpoint{ID: id})
			puts = append(puts, one(id))
		}
		c = ch.ApplyTo(c)
		for _, k := range dels {
			x.del(k)
		}
		for _, k := range puts {
			x.add(k)
		}
		if x.len() != len(c.Endpoints) {
			t.Fatalf("index holds %d; the list %d", x.len(), len(c.Endpoints))
		}
		last := -1
		for i, e := range c.Endpoints {
			pos, coord, ok := x.pos(one(e.ID))
			if !ok || pos != i || coord <= last {
				t.Fatalf("%s: index says %d (coordinate %d after %d), %v; it is at %d", e.ID, pos, coord, last, ok, i)
			}
			last = coord
		}
	}
}
