package server

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// Gateway pools over gNMI: a pool set with every leaf is applied to the
// controller and read back as set; bad pools are refused naming the path
// and change nothing; its state shows the live members (ON_CHANGE when a
// member reports) and the peerings whose peer it serves show their mode.
func TestGatewayPoolSetAndGet(t *testing.T) {
	conn, ctl := startConn(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctl.Run(ctx) // the pool loop: members go live as they report
	}()
	t.Cleanup(func() { cancel(); <-done })
	c, ohc := gnmi.NewGNMIClient(conn), p4meshv1.NewHostProgrammingClient(conn)
	const pool = "/p4mesh/gateway-pools/gateway-pool[name=blue-gw]"
	_, err := c.Set(t.Context(), &gnmi.SetRequest{Update: []*gnmi.Update{{Path: path(t, pool), Val: ietfVal(`{"p4mesh:name":"blue-gw",
		"p4mesh:config":{"name":"blue-gw","members":["h2","h3"],"vpcs":["blue"],"health-timeout":1500,"heartbeat":300,
		"promote-packets":4,"promote-window":2000,"idle-timeout":60000,"direct-above-pps":"5000","pool-below-pps":"1000"}}`)}}})
	if err != nil {
		t.Fatalf("Set: %v", err)
	}
	p, ok := ctl.Config().GatewayPool("blue-gw")
	if !ok || !slices.Equal(p.Members, []string{"h2", "h3"}) || !slices.Equal(p.VPCs, []string{"blue"}) || p.HealthTimeout != 1500*time.Millisecond ||
		p.Heartbeat != 300*time.Millisecond || p.PromotePackets != 4 || p.PromoteWindow != 2*time.Second || p.IdleTimeout != time.Minute ||
		p.DirectAbovePPS != 5000 || p.PoolBelowPPS != 1000 {
		t.Fatalf("pool applied: %+v, %v", p, ok)
	}
	got := getJSON(t, c, pool+"/config")
	for _, want := range []string{`"p4mesh:members":["h2","h3"]`, `"p4mesh:health-timeout":1500`, `"p4mesh:direct-above-pps":"5000"`, `"p4mesh:idle-timeout":60000`} {
		if !strings.Contains(got, want) {
			t.Errorf("Get of the pool's config lacks %s:\n%s", want, got)
		}
	}

	before := getJSON(t, c, "/")
	for _, tc := range []struct {
		name, path string
		val        *gnmi.TypedValue
		want       string
	}{
		{"unknown member", pool + "/config/members", ietfVal(`["h2","ghost"]`), pool + `/config/members: host "ghost" is not a host of this controller`},
		{"VPC served twice", "/p4mesh/gateway-pools/gateway-pool[name=other]", ietfVal(`{"p4mesh:name":"other","p4mesh:config":{"name":"other","members":["h1"],"vpcs":["blue"]}}`),
			`/p4mesh/gateway-pools/gateway-pool[name=other]/config/vpcs: VPC "blue" is already served by gateway pool blue-gw`},
		{"heartbeat not below the timeout", pool + "/config/heartbeat", uintVal(1500), pool + "/config/heartbeat: heartbeat 1.5s must be shorter than health_timeout 1.5s"},
		{"hysteresis inverted", pool + "/config/pool-below-pps", uintVal(6000), pool + "/config/pool-below-pps: 6000 is above direct_above_pps 5000"},
		{"unknown VPC", pool + "/config/vpcs", ietfVal(`["pink"]`), pool + `/config/vpcs: VPC "pink" is not defined`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Set(t.Context(), &gnmi.SetRequest{Update: []*gnmi.Update{{Path: path(t, tc.path), Val: tc.val}}})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Set = %v; want InvalidArgument naming %q", err, tc.want)
			}
			if after := getJSON(t, c, "/"); after != before {
				t.Error("a refused Set changed the configuration")
			}
		})
	}

	// State: no member live until one reports; then it is, ON_CHANGE.
	st := stream(t, c, &gnmi.SubscriptionList{Encoding: gnmi.Encoding_JSON_IETF, Subscription: []*gnmi.Subscription{
		{Path: path(t, pool+"/state/live-members"), Mode: gnmi.SubscriptionMode_ON_CHANGE}}})
	st.leaves(t, 1, 300*time.Millisecond) // the dump
	if _, err := ohc.Report(t.Context(), &p4meshv1.HostReport{Host: "h3"}); err != nil {
		t.Fatal(err)
	}
	var live []string
	deadline := time.Now().Add(10 * time.Second)
	for !slices.ContainsFunc(live, func(s string) bool { return strings.Contains(s, `"h3"`) }) && time.Now().Before(deadline) {
		live = append(live, st.leaves(t, 1, time.Second)...)
	}
	if len(live) == 0 || !strings.Contains(live[len(live)-1], `["h3"]`) {
		t.Errorf("live-members after h3 reported: %v; want [h3]", live)
	}
	got = getJSON(t, c, "/p4mesh/peerings/peering[vpc=red][peer-vpc=blue]/state")
	for _, want := range []string{`"p4mesh:mode":"pool"`, `"p4mesh:gateway-pool":"blue-gw"`, `"p4mesh:mode-reason":"gateway pool blue-gw serves blue, direct above 5000 pps: pool"`,
		`"p4mesh:measured-pps":"0"`, `"p4mesh:direct-above-pps":"5000"`, `"p4mesh:pool-below-pps":"1000"`} {
		if !strings.Contains(got, want) {
			t.Errorf("red->blue's state lacks %s:\n%s", want, got)
		}
	}
	if got := getJSON(t, c, "/p4mesh/peerings/peering[vpc=blue][peer-vpc=red]/state"); !strings.Contains(got, `"p4mesh:mode":"direct"`) ||
		!strings.Contains(got, "no gateway pool serves red: direct") || strings.Contains(got, "measured-pps") {
		t.Errorf("blue->red's state, red in no pool:\n%s", got)
	}

	// Deleting the pool removes it.
	if _, err := c.Set(t.Context(), &gnmi.SetRequest{Delete: []*gnmi.Path{path(t, pool)}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := ctl.Config().GatewayPool("blue-gw"); ok {
		t.Error("the pool is still there after its delete")
	}
}
