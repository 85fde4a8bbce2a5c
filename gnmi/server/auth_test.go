package server

import (
	"context"
	"testing"

	"github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/identity"
)

// verified is what mtls attaches to a connection whose client proved id.
type verified struct{ id identity.ID }

func (v verified) AuthType() string                   { return "tls" }
func (v verified) PeerIdentity() (identity.ID, error) { return v.id, nil }
func as(kind identity.Kind, name string) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: verified{identity.ID{TrustDomain: identity.DefaultTrustDomain, Kind: kind, Name: name}}})
}

// TestAuthorization: operators Set and read, viewers only read, every
// other identity of the deployment is refused, and so is a caller with no
// certificate; a refused Set changes nothing.
func TestAuthorization(t *testing.T) {
	_, ctl := start(t)
	srv, err := New(Options{Controller: ctl, Auth: identity.Auth{}})
	if err != nil {
		t.Fatal(err)
	}
	set := &gnmi.SetRequest{Update: []*gnmi.Update{{Path: path(t, "/p4mesh/vpcs/vpc[name=red]/config/vni"), Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: []byte("101")}}}}}
	get := &gnmi.GetRequest{Path: []*gnmi.Path{path(t, "/p4mesh/vpcs/vpc[name=red]/config/vni")}, Encoding: gnmi.Encoding_JSON_IETF}
	for _, c := range []struct {
		name     string
		ctx      context.Context
		get, set codes.Code
	}{
		{"no certificate", context.Background(), codes.Unauthenticated, codes.Unauthenticated},
		{"host", as(identity.Host, "h1"), codes.PermissionDenied, codes.PermissionDenied},
		{"controller", as(identity.Controller, "c2"), codes.PermissionDenied, codes.PermissionDenied},
		{"viewer", as(identity.Viewer, "bob"), codes.OK, codes.PermissionDenied},
	} {
		if _, err := srv.Get(c.ctx, get); status.Code(err) != c.get {
			t.Errorf("%s Get: %v, want %v", c.name, err, c.get)
		}
		if _, err := srv.Capabilities(c.ctx, &gnmi.CapabilityRequest{}); status.Code(err) != c.get {
			t.Errorf("%s Capabilities: %v, want %v", c.name, err, c.get)
		}
		if _, err := srv.Set(c.ctx, set); status.Code(err) != c.set {
			t.Errorf("%s Set: %v, want %v", c.name, err, c.set)
		}
		if v, _ := ctl.Config().VPC("red"); v.VNI != 100 {
			t.Fatalf("%s: a refused Set changed red's VNI to %d", c.name, v.VNI)
		}
	}
	if _, err := srv.Set(as(identity.Operator, "alice"), set); err != nil {
		t.Fatalf("operator Set: %v", err)
	}
	if v, _ := ctl.Config().VPC("red"); v.VNI != 101 {
		t.Fatalf("operator Set accepted but red's VNI is %d", v.VNI)
	}
}
