package controller

import (
	"fmt"
	"strings"
	"testing"
)

func TestDiffConfigs(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"equal", func(*Config) {}, ""},
		{"fields of one entry", func(c *Config) {
			vpcOf(c, "green").VNI = 301
			vpcOf(c, "green").GatewayIP = ip("10.3.0.253")
		}, "vpc green: vni, gateway_ip differ"},
		{"added and removed", func(c *Config) {
			c.Peerings = nil
			c.Hosts = c.Hosts[:2]
			c.ExportPolicies = append(c.ExportPolicies, ExportPolicy{Name: "web"})
		}, "host h3: only in a; export policy web: only in b; peering red->blue: only in a"},
		{"renamed controller", func(c *Config) { c.Controller = "c9" }, `controller: "c1" in a, "c9" in b`},
		{"route keyed by VPC and prefix", func(c *Config) { c.Routes[0].Priority = 7 }, "route red 172.16.0.0/12: priority differs"},
		{"replicas", func(c *Config) { c.Directory[1].Replicas = []string{"127.0.0.1:7002", "10.0.0.2:7002"} }, "directory c2: replicas differs"},
		{"replicas instead of address", func(c *Config) {
			c.Directory[1].Address, c.Directory[1].Replicas = "", []string{"127.0.0.1:7002"}
		}, "directory c2: address, replicas differ"},
		{"order", func(c *Config) { c.Directory[0], c.Directory[1] = c.Directory[1], c.Directory[0] }, "directory: the same entries in another order"},
		{"a repeated key is still compared", func(c *Config) {
			c.Endpoints = append(c.Endpoints, c.Endpoints[0])
		}, "endpoint red-vm1 (#2): only in b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := example(t)
			tc.edit(b)
			d := DiffConfigs(example(t), b, "a", "b")
			if got := d.String(); got != tc.want {
				t.Errorf("DiffConfigs = %q, want %q", got, tc.want)
			}
			if (len(d) == 0) != example(t).Equal(b) {
				t.Errorf("DiffConfigs found %d differences but Equal = %v", len(d), example(t).Equal(b))
			}
		})
	}
}

// A summary stays one readable line however much differs.
func TestConfigDiffStringIsBounded(t *testing.T) {
	b := example(t)
	for i := range 25 {
		b.Endpoints = append(b.Endpoints, Endpoint{ID: fmt.Sprintf("vm%d", i), VPC: "red"})
	}
	d := DiffConfigs(example(t), b, "saved", "--config")
	s := d.String()
	if len(d) != 25 || !strings.HasSuffix(s, "; and 15 more") || strings.Count(s, ";") != diffShown {
		t.Errorf("summary of %d differences = %q, want %d items and 15 more", len(d), s, diffShown)
	}
	if !strings.HasPrefix(s, "endpoint vm0: only in --config; endpoint vm1: only in --config;") {
		t.Errorf("summary %q does not start with the first differences, in order", s)
	}
}
