package controller

import (
	"net/netip"
	"strings"
	"testing"
)

func TestChangeApplyTo(t *testing.T) {
	c := example(t)
	before := c.Clone()
	ep := c.Endpoints[0]
	moved := ep
	moved.Port = 42
	added := Endpoint{ID: "new1", VPC: ep.VPC, Kind: KindVM, IP: netip.MustParseAddr("10.1.0.200"), MAC: MAC{2, 0, 0, 0, 0, 0xc8}, Host: ep.Host, Port: 9}
	ch := &Change{Endpoints: []Endpoint{moved, added}, DeleteEndpoints: []string{c.Endpoints[1].ID}}
	n := ch.ApplyTo(c)
	if !c.Equal(before) {
		t.Fatal("ApplyTo modified its input")
	}
	if got, _ := n.Endpoint(ep.ID); got.Port != 42 {
		t.Errorf("put of an existing endpoint: port %d, want 42", got.Port)
	}
	if n.Endpoints[0].ID != ep.ID {
		t.Errorf("put of an existing endpoint moved it to %s", n.Endpoints[0].ID)
	}
	if _, ok := n.Endpoint(c.Endpoints[1].ID); ok {
		t.Errorf("deleted endpoint %s still there", c.Endpoints[1].ID)
	}
	if n.Endpoints[len(n.Endpoints)-1].ID != "new1" {
		t.Errorf("new endpoint not appended: last is %s", n.Endpoints[len(n.Endpoints)-1].ID)
	}
	if len(n.Endpoints) != len(c.Endpoints) {
		t.Errorf("%d endpoints, want %d", len(n.Endpoints), len(c.Endpoints))
	}
}

func TestApplyChangeValidatesWhole(t *testing.T) {
	s := startCtl(t, "c1", listen(t), t.TempDir(), example(t)).srv
	before := s.Config()
	ep := before.Endpoints[0]
	dup := ep
	dup.ID = "dup"
	dup.MAC = MAC{2, 0, 0, 0, 0, 0xee}
	err := s.ApplyChange(&Change{Endpoints: []Endpoint{dup}})
	if err == nil || !strings.Contains(err.Error(), ep.IP.String()) {
		t.Fatalf("a second endpoint with %s's IP: err %v, want one naming the IP", ep.ID, err)
	}
	if s.Config() != before {
		t.Fatal("a refused change changed the configuration")
	}
	// red-vm1 is a load balancer's backend: deleting it alone is refused
	// as the whole configuration would be; with the load balancer, not.
	if err := s.ApplyChange(&Change{DeleteEndpoints: []string{"red-vm1"}}); err == nil || !strings.Contains(err.Error(), `endpoint "red-vm1" is not defined`) {
		t.Fatalf("deleting a backend: err %v", err)
	}
	if err := s.ApplyChange(&Change{DeleteEndpoints: []string{"red-vm1"}, DeleteLoadBalancers: []string{"red-web"}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Config().Endpoint("red-vm1"); ok {
		t.Fatal("endpoint red-vm1 not deleted")
	}
}
