package controller

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/identity"
)

// With mutual TLS, a gateway's certificate is what lets it watch its
// pool's VPC: h5, with no endpoint anywhere, is the one member of
// green-gw, serving green. It may watch green's own view and nothing
// else on that account; what it asks for in the request does not count.
func TestGatewayMTLSAuthorization(t *testing.T) {
	p := newTestPKI(t)
	l1, l2 := listen(t), listen(t)
	a1, a2 := l1.Addr().String(), l2.Addr().String()
	cfg1 := c1Config(t, a1, a2)
	cfg1.Hosts = append(cfg1.Hosts, Host{ID: "h5", UnderlayIP: ip("192.168.0.5"), MAC: mustMAC("02:aa:00:00:00:05"), UplinkPort: 1})
	cfg1.GatewayPools = []GatewayPool{{Name: "green-gw", Members: []string{"h5"}, VPCs: []string{"green"}}}
	serveSecure(t, p, "c1", l1, cfg1)
	serveSecure(t, p, "c2", l2, c2Config(t, a1, a2, true))
	h5 := p.dialAs(a1, identity.Host, "h5")

	if ev, err := firstEvent(t, h5, destWatch, &p4meshv1.WatchRequest{Vpc: "green"}); err != nil || ev.GetType() != p4meshv1.Event_PUT {
		t.Errorf("h5 watching green, the VPC its pool serves: %v, %v; want green's destinations", ev, err)
	}
	if ev, err := firstEvent(t, h5, hostWatch, &p4meshv1.WatchRequest{}); err != nil {
		t.Errorf("h5's host programming: %v, %v", ev, err)
	}
	for _, c := range []struct {
		name string
		req  *p4meshv1.WatchRequest
		msg  string
	}{
		{"another VPC's own view", &p4meshv1.WatchRequest{Vpc: "red"}, "no endpoint in VPC red"},
		{"another host's name", &p4meshv1.WatchRequest{Host: "h1", Vpc: "red"}, "no endpoint in VPC red"},
		{"a peer's export, claiming the peer", &p4meshv1.WatchRequest{Vpc: "red", ExportPolicy: "all", PeerVpc: "blue"}, "may not watch red"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ev, err := firstEvent(t, h5, destWatch, c.req)
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("got %v, %v; want PermissionDenied mentioning %q", ev, err, c.msg)
			}
		})
	}
	// A host of the pool's controller that is no member may not.
	if ev, err := firstEvent(t, p.dialAs(a1, identity.Host, "h1"), destWatch, &p4meshv1.WatchRequest{Vpc: "green"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("h1 watching green: %v, %v; want PermissionDenied", ev, err)
	}
}
