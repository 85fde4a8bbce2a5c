package server

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/controller"
)

// BGP over gNMI: an attachment and the speaker with a neighbor in one Set,
// applied to the controller; Get shows it back without the password in
// state; a neighbor on a VM, or the attachment deleted, is refused naming
// the path; the session's state is read.
func TestBGPSetAndGet(t *testing.T) {
	c, ctl := start(t)
	ietf := func(s string) *gnmi.TypedValue {
		return &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: []byte(s)}}
	}
	_, err := c.Set(t.Context(), &gnmi.SetRequest{Update: []*gnmi.Update{
		{Path: path(t, "/p4mesh/endpoints/endpoint[id=red-vpn]"), Val: ietf(`{"p4mesh:id":"red-vpn","p4mesh:config":{"id":"red-vpn","vpc":"red","kind":"vpn",
			"ip":"10.1.255.10","mac":"02:01:00:00:ff:10","host":"h1","port":9,"router-mac":"02:fe:00:00:00:10"}}`)},
		{Path: path(t, "/p4mesh/bgp"), Val: ietf(`{"p4mesh:config":{"local-as":64512,"router-id":"10.255.0.1","listen-port":-1},
			"p4mesh:neighbors":{"neighbor":[{"vpc":"red","address":"192.0.2.1","config":{"vpc":"red","address":"192.0.2.1",
			"attachment":"red-vpn","peer-as":65001,"hold-time":9,"keepalive":3,"auth-password":"s3cret"},
			"import-filters":{"import-filter":[{"prefix":"10.0.0.0/8","config":{"prefix":"10.0.0.0/8","le":24}}]}}]}}`)},
	}})
	if err != nil {
		t.Fatalf("Set: %v", err)
	}
	b := ctl.Config().BGP
	if b == nil || b.LocalAS != 64512 || b.ListenPort != -1 || len(b.Neighbors) != 1 {
		t.Fatalf("bgp applied: %+v", b)
	}
	n := b.Neighbors[0]
	if n.Attachment != "red-vpn" || n.PeerAS != 65001 || n.HoldTime != 9 || n.Password != "s3cret" ||
		len(n.Import) != 1 || n.Import[0].LE != 24 {
		t.Errorf("neighbor applied: %+v", n)
	}

	ctl.SetBGPNeighbors([]controller.BGPNeighborStatus{{VPC: "red", Address: netip.MustParseAddr("192.0.2.1"), Attachment: "red-vpn",
		State: "active", LastError: "hold timer expired"}})
	got := getJSON(t, c, "/p4mesh/bgp/neighbors/neighbor[vpc=red][address=192.0.2.1]")
	for _, want := range []string{`"session-state":"active"`, `"last-error":"hold timer expired"`, `"peer-as":65001`, `"auth-password":"s3cret"`} {
		if !strings.Contains(got, want) {
			t.Errorf("Get of the neighbor lacks %s:\n%s", want, got)
		}
	}
	if strings.Count(got, "s3cret") != 1 {
		t.Errorf("the password must be in config only:\n%s", got)
	}

	// A router id of red's own is taken (its GoBGP server sends it).
	if _, err := c.Set(t.Context(), &gnmi.SetRequest{Update: []*gnmi.Update{
		{Path: path(t, "/p4mesh/bgp/vpcs/vpc[vpc=red]"), Val: ietf(`{"p4mesh:vpc":"red","p4mesh:config":{"vpc":"red","router-id":"10.9.9.9"}}`)},
	}}); err != nil {
		t.Fatalf("Set of red's router id: %v", err)
	}
	if id := ctl.Config().BGP.RouterIDOf("red"); id != netip.MustParseAddr("10.9.9.9") {
		t.Errorf("red's router id after its Set: %v", id)
	}

	before := getJSON(t, c, "/")
	for _, tc := range []struct {
		name string
		req  *gnmi.SetRequest
		want string
	}{
		{"neighbor on a VM", &gnmi.SetRequest{Update: []*gnmi.Update{
			{Path: path(t, "/p4mesh/bgp/neighbors/neighbor[vpc=red][address=192.0.2.1]/config/attachment"), Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_StringVal{StringVal: "red-vm1"}}},
		}}, "/p4mesh/bgp/neighbors/neighbor[vpc=red][address=192.0.2.1]/config/attachment: endpoint red-vm1 is of kind vm"},
		{"attachment deleted", &gnmi.SetRequest{Delete: []*gnmi.Path{path(t, "/p4mesh/endpoints/endpoint[id=red-vpn]")}},
			`/p4mesh/bgp/neighbors/neighbor[vpc=red][address=192.0.2.1]/config/attachment: endpoint "red-vpn" is not defined`},
		{"router id per VPC", &gnmi.SetRequest{Update: []*gnmi.Update{
			{Path: path(t, "/p4mesh/bgp/vpcs/vpc[vpc=red]"), Val: ietf(`{"p4mesh:vpc":"red","p4mesh:config":{"vpc":"red","router-id":"0.0.0.0"}}`)},
		}}, "/p4mesh/bgp/vpcs/vpc[vpc=red]/config/router-id: router id 0.0.0.0 is not a valid BGP identifier"},
	} {
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

	// Deleting /p4mesh/bgp stops BGP: no section left.
	if _, err := c.Set(t.Context(), &gnmi.SetRequest{Delete: []*gnmi.Path{path(t, "/p4mesh/bgp")}}); err != nil {
		t.Fatal(err)
	}
	if b := ctl.Config().BGP; b != nil {
		t.Errorf("bgp after its delete: %+v", b)
	}
}
