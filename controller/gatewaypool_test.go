package controller

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/internal/etcdtest"
	"github.com/p4mesh/p4mesh/store"
	"github.com/p4mesh/p4mesh/store/etcdstore"
)

// withPool is the example with gateway hosts gw1 and gw2 (no endpoints)
// and pool green-gw serving green.
func withPool(t testing.TB) *Config {
	c := example(t)
	c.Hosts = append(c.Hosts,
		Host{ID: "gw1", UnderlayIP: ip("192.168.0.21"), MAC: mustMAC("02:aa:00:00:00:21"), UplinkPort: 1},
		Host{ID: "gw2", UnderlayIP: ip("192.168.0.22"), MAC: mustMAC("02:aa:00:00:00:22"), UplinkPort: 1})
	c.GatewayPools = []GatewayPool{{
		Name: "green-gw", Members: []string{"gw1", "gw2"}, VPCs: []string{"green"},
		HealthTimeout: 3 * time.Second, Heartbeat: 250 * time.Millisecond,
		PromotePackets: 3, PromoteWindow: time.Second, IdleTimeout: 30 * time.Second,
		DirectAbovePPS: 1000, PoolBelowPPS: 200,
	}}
	return c
}

const poolYAML = `
gateway_pools:
  - name: green-gw
    members: [gw1, gw2]
    vpcs: [green]
    health_timeout: 3s
    heartbeat: 250ms
    promote_packets: 3
    promote_window: 1s
    idle_timeout: 30s
    direct_above_pps: 1000
    pool_below_pps: 200
`

// A pool reads from YAML, writes back the same, and compares equal
// through a round trip.
func TestGatewayPoolYAML(t *testing.T) {
	want := withPool(t)
	base, err := example(t).YAML()
	if err != nil {
		t.Fatal(err)
	}
	hosts := `  - id: gw1
    underlay_ip: 192.168.0.21
    mac: 02:aa:00:00:00:21
    uplink_port: 1
  - id: gw2
    underlay_ip: 192.168.0.22
    mac: 02:aa:00:00:00:22
    uplink_port: 1
`
	doc := strings.Replace(string(base), "endpoints:\n", hosts+"endpoints:\n", 1) + poolYAML
	got, err := ParseConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(want) {
		t.Fatalf("parsed pool differs:\n%s", DiffConfigs(want, got, "want", "got"))
	}
	out, err := got.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "health_timeout: 3s") || !strings.Contains(string(out), "direct_above_pps: 1000") {
		t.Errorf("YAML written lacks the pool's fields:\n%s", out)
	}
	again, err := ParseConfig(out)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Equal(want) {
		t.Errorf("round trip differs:\n%s", DiffConfigs(want, again, "want", "got"))
	}
	if _, err := ParseConfig([]byte(strings.Replace(doc, "heartbeat: 250ms", "heartbeat: soon", 1))); err == nil ||
		!strings.Contains(err.Error(), "gateway_pools[green-gw].heartbeat") {
		t.Errorf("a bad duration: %v; want an error naming gateway_pools[green-gw].heartbeat", err)
	}
}

// Every rule of a pool is an error naming the field, and a server refuses
// the change, keeping what it served.
func TestGatewayPoolValidation(t *testing.T) {
	if err := withPool(t).Validate(); err != nil {
		t.Fatalf("the base is invalid: %v", err)
	}
	for _, tc := range []struct {
		name  string
		edit  func(p *GatewayPool, c *Config)
		field string
		want  string
	}{
		{"unknown host", func(p *GatewayPool, _ *Config) { p.Members = append(p.Members, "nope") }, "gateway_pools[green-gw].members[2]", `host "nope" is not a host of this controller`},
		{"member twice", func(p *GatewayPool, _ *Config) { p.Members = append(p.Members, "gw1") }, "gateway_pools[green-gw].members[2]", "listed twice"},
		{"no members", func(p *GatewayPool, _ *Config) { p.Members = nil }, "gateway_pools[green-gw].members", "at least one member"},
		{"VPC of another controller", func(p *GatewayPool, _ *Config) { p.VPCs = []string{"blue"} }, "gateway_pools[green-gw].vpcs[0]", `VPC "blue" is owned by c2, not by this controller`},
		{"unknown VPC", func(p *GatewayPool, _ *Config) { p.VPCs = []string{"pink"} }, "gateway_pools[green-gw].vpcs[0]", `VPC "pink" is not defined`},
		{"VPC served twice", func(p *GatewayPool, c *Config) {
			c.GatewayPools = append(c.GatewayPools, GatewayPool{Name: "other", Members: []string{"gw2"}, VPCs: []string{"green"}})
		}, "gateway_pools[other].vpcs[0]", "already served by gateway pool green-gw"},
		{"pool twice", func(p *GatewayPool, c *Config) {
			c.GatewayPools = append(c.GatewayPools, GatewayPool{Name: "green-gw", Members: []string{"gw2"}, VPCs: []string{"red"}})
		}, "gateway_pools[green-gw]", "defined twice"},
		{"bad name", func(p *GatewayPool, _ *Config) { p.Name = "a/b" }, "gateway_pools[a/b]", "must start with a letter"},
		{"negative timeout", func(p *GatewayPool, _ *Config) { p.IdleTimeout = -time.Second }, "gateway_pools[green-gw].idle_timeout", "negative"},
		{"sub-millisecond", func(p *GatewayPool, _ *Config) { p.PromoteWindow = 1500 * time.Microsecond }, "gateway_pools[green-gw].promote_window", "whole number of milliseconds"},
		{"heartbeat not below timeout", func(p *GatewayPool, _ *Config) { p.Heartbeat = 3 * time.Second }, "gateway_pools[green-gw].heartbeat", "shorter than health_timeout"},
		{"default timeout, long heartbeat", func(p *GatewayPool, _ *Config) { p.HealthTimeout, p.Heartbeat = 0, 2*time.Second }, "gateway_pools[green-gw].heartbeat", "shorter than health_timeout 2s"},
		{"hysteresis inverted", func(p *GatewayPool, _ *Config) { p.PoolBelowPPS = 2000 }, "gateway_pools[green-gw].pool_below_pps", "above direct_above_pps 1000"},
		{"member host deleted", func(p *GatewayPool, c *Config) { c.Hosts = c.Hosts[:len(c.Hosts)-1] }, "gateway_pools[green-gw].members[1]", `host "gw2" is not a host`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := withPool(t)
			tc.edit(&c.GatewayPools[0], c)
			err := c.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.field+": ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want %s: …%s…", err, tc.field, tc.want)
			}
		})
	}

	// A server refuses such a change and keeps serving what it had.
	srv, err := NewServer(ServerOptions{Store: NoPersistence{Start: withPool(t)}, Auth: identity.Auth{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	before := srv.Config()
	bad := before.GatewayPools[0]
	bad.Members = []string{"gw1", "ghost"}
	if err := srv.ApplyChange(&Change{GatewayPools: []GatewayPool{bad}}); err == nil || !strings.Contains(err.Error(), `host "ghost"`) {
		t.Errorf("ApplyChange of a pool with an unknown member: %v", err)
	}
	if err := srv.ApplyChange(&Change{DeleteHosts: []string{"gw2"}}); err == nil || !strings.Contains(err.Error(), "gateway_pools[green-gw].members[1]") {
		t.Errorf("ApplyChange deleting a member host: %v", err)
	}
	if !srv.Config().Equal(before) {
		t.Errorf("a refused change changed the configuration:\n%s", DiffConfigs(before, srv.Config(), "before", "after"))
	}
}

// A pool, added and changed at run time, is there after a restart, with
// every store: the bbolt and etcd item stores and the YAML file.
func TestGatewayPoolSurvivesRestart(t *testing.T) {
	ep := etcdtest.Start(t)
	stores := map[string]func(t *testing.T, dir string) (Persistence, func()){
		"bolt": func(t *testing.T, dir string) (Persistence, func()) {
			s, b := openItems(t, dir)
			return s, func() { b.Close() }
		},
		"etcd": func(t *testing.T, _ string) (Persistence, func()) {
			cli, err := etcdstore.NewClient(t.Context(), etcdstore.ClientConfig{Endpoints: []string{ep}})
			if err != nil {
				t.Fatal(err)
			}
			b, err := etcdstore.New(cli, "c1-"+strings.ReplaceAll(t.Name(), "/", "-"), etcdstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var backend store.Backend = b
			s, err := OpenItemStore(t.Context(), backend)
			if err != nil {
				t.Fatal(err)
			}
			return s, func() { b.Close(); cli.Close() }
		},
		"yaml": func(t *testing.T, dir string) (Persistence, func()) {
			s, err := OpenStore(filepath.Join(dir, "yaml"))
			if err != nil {
				t.Fatal(err)
			}
			return s, func() {}
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			st, closeStore := open(t, dir)
			start := withPool(t)
			start.GatewayPools = nil
			switch s := st.(type) {
			case *ItemStore:
				if _, err := s.Startup(start, false); err != nil {
					t.Fatal(err)
				}
			case *Store:
				if _, err := s.Startup(start, false); err != nil {
					t.Fatal(err)
				}
			}
			srv, err := NewServer(ServerOptions{Store: st, Auth: identity.Auth{Insecure: true}})
			if err != nil {
				t.Fatal(err)
			}
			pool := withPool(t).GatewayPools[0]
			if err := srv.ApplyChange(&Change{GatewayPools: []GatewayPool{pool}}); err != nil {
				t.Fatal(err)
			}
			pool.Members, pool.DirectAbovePPS = []string{"gw2"}, 5000
			second := GatewayPool{Name: "red-gw", Members: []string{"gw1"}, VPCs: []string{"red"}}
			if err := srv.ApplyChange(&Change{GatewayPools: []GatewayPool{pool, second}}); err != nil {
				t.Fatal(err)
			}
			if err := srv.ApplyChange(&Change{DeleteGatewayPools: []string{"red-gw"}}); err != nil {
				t.Fatal(err)
			}
			want := srv.Config()
			closeStore()

			again, closeAgain := open(t, dir)
			defer closeAgain()
			if y, ok := again.(*Store); ok {
				if _, err := y.Startup(nil, false); err != nil {
					t.Fatal(err)
				}
			}
			got := again.Current()
			if !got.Equal(want) {
				t.Fatalf("after a restart the configuration differs:\n%s", DiffConfigs(want, got, "before", "after"))
			}
			if p, ok := got.GatewayPool("green-gw"); !ok || p.DirectAbovePPS != 5000 || len(p.Members) != 1 {
				t.Errorf("pool after restart: %+v, %v", p, ok)
			}
			if _, ok := got.GatewayPool("red-gw"); ok {
				t.Error("the deleted pool came back")
			}
		})
	}
}
