package server

import (
	"strings"
	"testing"

	"github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/controller"
)

func uintVal(n uint64) *gnmi.TypedValue {
	return &gnmi.TypedValue{Value: &gnmi.TypedValue_UintVal{UintVal: n}}
}

func stringVal(s string) *gnmi.TypedValue {
	return &gnmi.TypedValue{Value: &gnmi.TypedValue_StringVal{StringVal: s}}
}

func ietfVal(s string) *gnmi.TypedValue {
	return &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: []byte(s)}}
}

func redVNI(t *testing.T, ctl *controller.Server) uint32 {
	t.Helper()
	v, ok := ctl.Config().VPC("red")
	if !ok {
		t.Fatal("red is gone")
	}
	return v.VNI
}

// TestSetAtomicAtEachValue: a Set whose first value is good and whose second
// does not fit its leaf is refused whole, by update and by replace. The
// failure is in setting the value on the tree, before the candidate
// configuration exists to be validated: a server that skipped the value
// there would apply the rest and answer OK, and validation would never see
// what it dropped. The bad leaves are ones whose absence is valid, so that
// a replace that deleted its leaf and then skipped the value would be
// applied too; uplink-port, which the controller requires, is the case the
// issue reported.
func TestSetAtomicAtEachValue(t *testing.T) {
	c, ctl := start(t)
	const vni = "/p4mesh/vpcs/vpc[name=red]/config/vni"
	const priority = "/p4mesh/routes/route[vpc=red][prefix=172.16.0.0/12][next-hop=red-router]/config/priority"
	bad := []struct {
		name, path string
		val        *gnmi.TypedValue
		code       codes.Code
	}{
		{"uint16 out of range", "/p4mesh/hosts/host[id=h1]/config/uplink-port", uintVal(65536), codes.InvalidArgument},
		{"uint32 out of range", priority, uintVal(1 << 32), codes.InvalidArgument},
		{"string for a number", "/p4mesh/peerings/peering[vpc=red][peer-vpc=blue]/config/preference", stringVal("high"), codes.InvalidArgument},
		{"JSON string for a number", priority, ietfVal(`"high"`), codes.InvalidArgument},
		{"JSON subtree with a string for a boolean", "/p4mesh/export-policies/export-policy[name=web]",
			ietfVal(`{"p4mesh:name":"web","p4mesh:config":{"name":"web","private-only":"yes"}}`), codes.InvalidArgument},
		// A path the model does not have is NotFound (gNMI specification
		// §3.4.7), refused whole all the same.
		{"unknown leaf", "/p4mesh/vpcs/vpc[name=green]/config/colour", stringVal("blue"), codes.NotFound},
	}
	for _, op := range []string{"update", "replace"} {
		for _, tc := range bad {
			t.Run(op+"/"+tc.name, func(t *testing.T) {
				ups := []*gnmi.Update{{Path: path(t, vni), Val: uintVal(101)}, {Path: path(t, tc.path), Val: tc.val}}
				req := &gnmi.SetRequest{Update: ups}
				if op == "replace" {
					req = &gnmi.SetRequest{Replace: ups}
				}
				before := ctl.Config()
				// Each case starts from the same configuration, whatever a
				// broken server made of the one before.
				defer func() {
					if !ctl.Config().Equal(before) {
						if err := ctl.Apply(before); err != nil {
							t.Fatalf("restore: %v", err)
						}
					}
				}()
				_, err := c.Set(t.Context(), req)
				if status.Code(err) != tc.code || !strings.Contains(err.Error(), pathString(path(t, tc.path))) {
					t.Errorf("Set = %v; want %s naming %s", err, tc.code, tc.path)
				}
				if got := redVNI(t, ctl); got != 100 {
					t.Errorf("red's VNI = %d; want 100: the Set must change nothing", got)
				}
				if !ctl.Config().Equal(before) {
					t.Error("the Set changed the configuration")
				}
			})
		}
	}

	// The first value alone is good: the refusals above are the second's.
	if _, err := c.Set(t.Context(), &gnmi.SetRequest{Update: []*gnmi.Update{{Path: path(t, vni), Val: uintVal(101)}}}); err != nil {
		t.Fatalf("Set of red's VNI alone: %v", err)
	}
	if _, err := c.Set(t.Context(), &gnmi.SetRequest{Replace: []*gnmi.Update{{Path: path(t, vni), Val: uintVal(102)}}}); err != nil {
		t.Fatalf("replace of red's VNI alone: %v", err)
	}
	if got := redVNI(t, ctl); got != 102 {
		t.Errorf("red's VNI = %d; want 102", got)
	}
}
