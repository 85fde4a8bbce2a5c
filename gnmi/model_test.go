package gnmi

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openconfig/ygot/ygot"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/gnmi/oc"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func load(t *testing.T, path string) *controller.Config {
	t.Helper()
	c, err := controller.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func parse(t *testing.T, yaml string) *controller.Config {
	t.Helper()
	c, err := controller.ParseConfig([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fromConfig(t *testing.T, c *controller.Config) *oc.Device {
	t.Helper()
	d, err := FromConfig(c)
	if err != nil {
		t.Fatalf("FromConfig: %v", err)
	}
	return d
}

// sameConfig fails unless got equals want, showing both in YAML.
func sameConfig(t *testing.T, got, want *controller.Config) {
	t.Helper()
	if got.Equal(want) {
		return
	}
	g, _ := got.YAML()
	w, _ := want.YAML()
	t.Errorf("configuration changed on the round trip:\ngot:\n%s\nwant:\n%s", g, w)
}

const redBlue = "../controller/testdata/red-blue.yaml"

// odd holds what a configuration may hold that red-blue.yaml does not:
// controllers that run as replica sets (with and without an address),
// several routes for one prefix, a drop route, IPv6, negative preference,
// policy filters, an explicit gateway, and values that are representable
// but invalid (VNI 0, weight 0, an empty MAC), which must survive the
// round trip to be reported by validation rather than lost.
const odd = `
controller: c1
directory:
  - name: c1
    address: "[::1]:7001"
    vpcs: [b, a]
  - name: c2
    replicas: ["[::1]:7002", 10.0.0.2:7002]
  - name: c3
    address: 10.0.0.3:7003
    replicas: [10.0.0.4:7003, 10.0.0.3:7003]
vpcs:
  - name: b
    vni: 0
    subnets: [10.2.0.0/16, "fd00::/64", 10.9.0.0/24]
    gateway_ip: 10.2.0.254
    gateway_mac: 02:00:00:00:02:fe
  - name: a
    vni: 16777215
hosts:
  - id: h2
    underlay_ip: 192.168.0.2
    uplink_port: 0
  - id: h1
    underlay_ip: "2001:db8::1"
    mac: 02:aa:00:00:00:01
    uplink_port: 510
    underlay_routes:
      - prefix: 192.168.1.0/24
        port: 3
        src_mac: 02:aa:00:00:00:01
        dst_mac: 02:fe:00:00:00:01
      - prefix: 0.0.0.0/0
        port: 4
endpoints:
  - id: z
    vpc: b
    kind: interconnect
    ip: 10.2.0.9
    mac: 02:01:00:00:00:0a
    host: h1
    port: 7
    router_mac: 02:fe:00:00:00:0b
  - id: y
    vpc: a
    kind: router
    host: h2
load_balancers:
  - name: lb
    vpc: b
    vip: 10.2.0.100
    protocol: udp
    port: 53
    backends:
      - endpoint: z
        weight: 0
      - endpoint: y
  - name: empty
routes:
  - vpc: b
    prefix: 0.0.0.0/0
    next_hop: z
    priority: 200
  - vpc: b
    prefix: 0.0.0.0/0
    next_hop: y
    priority: 100
  - vpc: b
    prefix: 192.168.0.0/16
  - vpc: a
    prefix: 0.0.0.0/0
export_policies:
  - name: web
    prefixes: [10.2.0.0/24, 10.9.0.0/24]
    private_only: true
    protocols: [tcp, "6", icmp]
  - name: none
peerings:
  - vpc: b
    peer_vpc: a
    export_policy: web
    preference: -5
    export_custom_routes: true
  - vpc: a
    peer_vpc: b
    export_policy: none
gateway_pools:
  - name: gw
    members: [h2, h1]
    vpcs: [b]
    health_timeout: 1500ms
    heartbeat: 250ms
    promote_packets: 3
    promote_window: 1s
    idle_timeout: 1m
    direct_above_pps: 18446744073709551615
    pool_below_pps: 10
  - name: bare
    members: [nobody]
    vpcs: [b]
`

func TestRoundTrip(t *testing.T) {
	for name, c := range map[string]*controller.Config{
		"red-blue": load(t, redBlue),
		"tiny":     load(t, "testdata/tiny.yaml"),
		"odd":      parse(t, odd),
		"empty":    {},
	} {
		t.Run(name, func(t *testing.T) {
			before, _ := c.YAML()
			d := fromConfig(t, c)
			got, err := ToConfig(d)
			if err != nil {
				t.Fatalf("ToConfig: %v", err)
			}
			sameConfig(t, got, c)
			if after, _ := c.YAML(); !bytes.Equal(before, after) {
				t.Error("FromConfig modified its argument")
			}
		})
	}
}

func TestRoundTripIETF(t *testing.T) {
	for name, c := range map[string]*controller.Config{
		"red-blue": load(t, redBlue),
		"odd":      parse(t, odd),
	} {
		t.Run(name, func(t *testing.T) {
			b, err := MarshalIETF(fromConfig(t, c))
			if err != nil {
				t.Fatal(err)
			}
			d, err := UnmarshalIETF(b)
			if err != nil {
				t.Fatalf("UnmarshalIETF: %v\n%s", err, b)
			}
			got, err := ToConfig(d)
			if err != nil {
				t.Fatalf("ToConfig: %v", err)
			}
			sameConfig(t, got, c)
			b2, err := MarshalIETF(d)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, b2) {
				t.Errorf("JSON_IETF changed on a round trip:\n%s\nthen:\n%s", b, b2)
			}
		})
	}
}

// TestRoundTripWithState checks that state is reported and that ToConfig
// ignores it: what a Get returns can be sent back with Set.
func TestRoundTripWithState(t *testing.T) {
	c := load(t, redBlue)
	d := fromConfig(t, c)
	WithState(d, nil, controller.Stats{})
	b, err := MarshalIETF(d)
	if err != nil {
		t.Fatal(err)
	}
	d, err = UnmarshalIETF(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ToConfig(d)
	if err != nil {
		t.Fatal(err)
	}
	sameConfig(t, got, c)
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	got = append(got, '\n')
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it); got:\n%s", path, got)
	}
}

func TestGoldenIETF(t *testing.T) {
	c := load(t, "testdata/tiny.yaml")
	d := fromConfig(t, c)
	if err := Validate(d); err != nil {
		t.Fatalf("tiny.yaml is invalid: %v", err)
	}
	b, err := MarshalIETF(d)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "tiny.json", b)

	WithState(d, []controller.PeeringStatus{
		{VPC: "red", PeerVPC: "blue", Active: false, Reason: "blue has not configured its side"},
	}, controller.Stats{PublishedServices: 1, Subscribers: 3, Peerings: 1})
	b, err = MarshalIETF(d)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "tiny-state.json", b)

	// The golden file is what a gNMI client may send: it parses back.
	in, err := os.ReadFile("testdata/tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	d, err = UnmarshalIETF(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ToConfig(d)
	if err != nil {
		t.Fatal(err)
	}
	sameConfig(t, got, c)
}

func TestFromConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(c *controller.Config)
		want   string
	}{
		{"duplicate VPC", func(c *controller.Config) { c.VPCs = append(c.VPCs, c.VPCs[0]) },
			`/p4mesh/vpcs/vpc[name=red]: VPC defined twice`},
		{"duplicate route", func(c *controller.Config) { c.Routes = append(c.Routes, c.Routes[0]) },
			`/p4mesh/routes/route[vpc=red][prefix=172.16.0.0/12][next-hop=red-router]: route defined twice`},
		{"duplicate backend", func(c *controller.Config) {
			c.LoadBalancers[0].Backends = append(c.LoadBalancers[0].Backends, c.LoadBalancers[0].Backends[0])
		}, `/p4mesh/load-balancers/load-balancer[name=red-web]/backends/backend[endpoint=red-vm1]: backend listed twice`},
		{"reserved next hop", func(c *controller.Config) { c.Routes[0].NextHop = "-" },
			`/p4mesh/routes/route[vpc=red][prefix=172.16.0.0/12][next-hop=-]: next hop "-" is reserved for drop routes`},
		{"unknown kind", func(c *controller.Config) { c.Endpoints[0].Kind = "vmx" },
			`/p4mesh/endpoints/endpoint[id=red-vm1]/config/kind: "vmx" is not one of vm, ilb, vpn, interconnect, router`},
		{"preference beyond int32", func(c *controller.Config) { c.Peerings[0].Preference = 1 << 31 },
			`/p4mesh/peerings/peering[vpc=red][peer-vpc=blue]/config/preference: 2147483648 is out of range`},
		{"unknown protocol", func(c *controller.Config) { c.LoadBalancers[0].Protocol = "sctp" },
			`/p4mesh/load-balancers/load-balancer[name=red-web]/config/protocol: "sctp" is not tcp or udp`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := load(t, redBlue)
			tc.change(c)
			_, err := FromConfig(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("FromConfig error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestValidate changes a valid configuration in the model, as a gNMI Set
// would, and checks what Validate says, and that it changes nothing.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(m *oc.P4Mesh_P4Mesh)
		want   []string // each a line of the error
	}{
		{"valid", func(m *oc.P4Mesh_P4Mesh) {}, nil},
		{"bad prefix", func(m *oc.P4Mesh_P4Mesh) {
			m.Vpcs.GetVpc("red").Config.Subnets = []string{"10.1.0.0/33"}
		}, []string{`/p4mesh/vpcs/vpc[name=red]/config/subnets: "10.1.0.0/33" is not a valid ip-prefix`}},
		{"host bits", func(m *oc.P4Mesh_P4Mesh) {
			m.Vpcs.GetVpc("red").Config.Subnets = []string{"10.1.0.1/16"}
		}, []string{`/p4mesh/vpcs/vpc[name=red]/config/subnets: 10.1.0.1/16 has host bits set; did you mean 10.1.0.0/16?`}},
		{"VNI out of range", func(m *oc.P4Mesh_P4Mesh) {
			m.Vpcs.GetVpc("red").Config.Vni = ygot.Uint32(1 << 24)
		}, []string{`/p4mesh/vpcs/vpc[name=red]/config/vni: unsigned integer value 16777216 is outside range 1..16777215`}},
		{"VNI clash", func(m *oc.P4Mesh_P4Mesh) {
			m.Vpcs.GetVpc("green").Config.Vni = ygot.Uint32(100)
		}, []string{`/p4mesh/vpcs/vpc[name=green]/config/vni: 100 is also the VNI of red`}},
		{"overlapping subnets", func(m *oc.P4Mesh_P4Mesh) {
			m.Vpcs.GetVpc("red").Config.Subnets = []string{"10.1.0.0/16", "10.1.128.0/17"}
		}, []string{`/p4mesh/vpcs/vpc[name=red]/config/subnets: 10.1.128.0/17 overlaps 10.1.0.0/16 (subnets[0])`}},
		{"overlapping peer", func(m *oc.P4Mesh_P4Mesh) {
			p, _ := m.Peerings.AppendNewPeering("green", "red")
			p.GetOrCreateConfig().Vpc, p.Config.PeerVpc, p.Config.ExportPolicy = ygot.String("green"), ygot.String("red"), ygot.String("all")
			m.Vpcs.GetVpc("green").Config.Subnets = []string{"10.3.0.0/16", "10.1.0.0/24"}
		}, []string{`/p4mesh/peerings/peering[vpc=green][peer-vpc=red]: green subnet 10.1.0.0/24 overlaps red subnet 10.1.0.0/16`}},
		{"unknown policy", func(m *oc.P4Mesh_P4Mesh) {
			m.Peerings.GetPeering("red", "blue").Config.ExportPolicy = ygot.String("nope")
		}, []string{`/p4mesh/peerings/peering[vpc=red][peer-vpc=blue]/config/export-policy: export policy "nope" is not defined`}},
		{"unknown host", func(m *oc.P4Mesh_P4Mesh) {
			m.Endpoints.GetEndpoint("red-vm1").Config.Host = ygot.String("h9")
		}, []string{`/p4mesh/endpoints/endpoint[id=red-vm1]/config/host: host "h9" is not defined`}},
		{"bad MAC", func(m *oc.P4Mesh_P4Mesh) {
			m.Hosts.GetHost("h1").Config.Mac = ygot.String("02:aa:00:00:00")
		}, []string{`/p4mesh/hosts/host[id=h1]/config/mac: "02:aa:00:00:00" is not a valid mac-address`}},
		{"bad name", func(m *oc.P4Mesh_P4Mesh) {
			v, _ := m.Vpcs.AppendNewVpc("-x")
			v.GetOrCreateConfig().Name = ygot.String("-x")
		}, []string{`/p4mesh/vpcs/vpc[name=-x]/config/name: "-x" is not a valid name`}},
		{"weight 0", func(m *oc.P4Mesh_P4Mesh) {
			m.LoadBalancers.GetLoadBalancer("red-web").Backends.GetBackend("red-vm1").Config.Weight = ygot.Uint32(0)
		}, []string{`/p4mesh/load-balancers/load-balancer[name=red-web]/backends/backend[endpoint=red-vm1]/config/weight: unsigned integer value 0 is outside range 1..4294967295`}},
		{"unknown backend", func(m *oc.P4Mesh_P4Mesh) {
			b, _ := m.LoadBalancers.GetLoadBalancer("red-web").Backends.AppendNewBackend("ghost")
			b.GetOrCreateConfig().Endpoint = ygot.String("ghost")
		}, []string{`/p4mesh/load-balancers/load-balancer[name=red-web]/backends/backend[endpoint=ghost]: endpoint "ghost" is not defined`}},
		{"underlay port", func(m *oc.P4Mesh_P4Mesh) {
			m.Hosts.GetHost("h1").UnderlayRoutes.GetUnderlayRoute("192.168.0.0/24").Config.Port = ygot.Uint16(255)
		}, []string{`/p4mesh/hosts/host[id=h1]/underlay-routes/underlay-route[prefix=192.168.0.0/24]/config/port: switch port 255 is the CPU port`}},
		{"unknown next hop", func(m *oc.P4Mesh_P4Mesh) {
			r, _ := m.Routes.AppendNewRoute("red", "10.9.0.0/16", "ghost")
			r.GetOrCreateConfig().NextHop = ygot.String("ghost")
		}, []string{`/p4mesh/routes/route[vpc=red][prefix=10.9.0.0/16][next-hop=ghost]/config/next-hop: endpoint "ghost" is not defined`}},
		{"drop route", func(m *oc.P4Mesh_P4Mesh) {
			r, _ := m.Routes.AppendNewRoute("red", "10.9.0.0/16", "-")
			r.GetOrCreateConfig().NextHop = ygot.String("-")
		}, nil},
		{"empty next hop", func(m *oc.P4Mesh_P4Mesh) {
			m.Routes.AppendNewRoute("red", "10.9.0.0/16", "")
		}, []string{`/p4mesh/routes/route[vpc=red][prefix=10.9.0.0/16][next-hop=]/next-hop: "" is not a valid next-hop`}},
		{"replica set", func(m *oc.P4Mesh_P4Mesh) {
			c2 := m.Directory.Controllers.GetController("c2").Config
			c2.Address, c2.Replicas = nil, []string{"127.0.0.1:7002", "10.0.0.2:7002", "c2-r3.example:7002"}
		}, nil},
		{"replica listed twice", func(m *oc.P4Mesh_P4Mesh) {
			m.Directory.Controllers.GetController("c2").Config.Replicas = []string{"127.0.0.1:7002", "10.0.0.2:7002", "10.0.0.2:7002"}
		}, []string{`/p4mesh/directory/controllers/controller[name=c2]/config/replicas: 10.0.0.2:7002 is listed twice`}},
		{"replica of another controller", func(m *oc.P4Mesh_P4Mesh) {
			m.Directory.Controllers.GetController("c2").Config.Replicas = []string{"127.0.0.1:7002", "127.0.0.1:7001"}
		}, []string{`/p4mesh/directory/controllers/controller[name=c2]/config/replicas: 127.0.0.1:7001 is also an address of controller c1`}},
		{"address not a replica", func(m *oc.P4Mesh_P4Mesh) {
			m.Directory.Controllers.GetController("c2").Config.Replicas = []string{"10.0.0.2:7002", "10.0.0.3:7002"}
		}, []string{`/p4mesh/directory/controllers/controller[name=c2]/config/address: "127.0.0.1:7002" is not one of replicas`}},
		{"replica without port", func(m *oc.P4Mesh_P4Mesh) {
			m.Directory.Controllers.GetController("c2").Config.Replicas = []string{"127.0.0.1:7002", "10.0.0.2"}
		}, []string{`/p4mesh/directory/controllers/controller[name=c2]/config/replicas: "10.0.0.2" is not a valid host-port`}},
		{"replica with port 0", func(m *oc.P4Mesh_P4Mesh) {
			m.Directory.Controllers.GetController("c2").Config.Replicas = []string{"127.0.0.1:7002", "10.0.0.2:0"}
		}, []string{`/p4mesh/directory/controllers/controller[name=c2]/config/replicas: "10.0.0.2:0" has no valid port`}},
		{"unknown controller", func(m *oc.P4Mesh_P4Mesh) {
			m.Controller.Config.Name = ygot.String("c9")
		}, []string{`/p4mesh/controller/config/name: "c9" has no entry in directory`}},
		{"VPC not owned", func(m *oc.P4Mesh_P4Mesh) {
			m.Directory.Controllers.GetController("c1").Config.Vpcs = []string{"red"}
		}, []string{`/p4mesh/vpcs/vpc[name=green]: not in c1's directory entry`}},
		{"key mismatch", func(m *oc.P4Mesh_P4Mesh) {
			m.Hosts.GetHost("h1").Config.Id = ygot.String("h2")
		}, []string{`/p4mesh/hosts/host[id=h1]/config/id: "h2" differs from the list key "h1"`}},
		{"bad enum", func(m *oc.P4Mesh_P4Mesh) {
			m.Endpoints.GetEndpoint("red-vm1").Config.Kind = oc.E_P4Mesh_EndpointKind(42)
		}, []string{`/p4mesh/endpoints/endpoint[id=red-vm1]/config/kind: `}},
		{"BGP", func(m *oc.P4Mesh_P4Mesh) {
			n, _ := m.GetOrCreateBgp().GetOrCreateNeighbors().AppendNewNeighbor("red", "10.1.0.1")
			n.GetOrCreateConfig().Vpc, n.Config.Address = ygot.String("red"), ygot.String("10.1.0.1")
			n.Config.Attachment, n.Config.PeerAs = ygot.String("red-vm1"), ygot.Uint32(65001)
			m.Bgp.GetOrCreateConfig().RouterId = ygot.String("10.255.0.1")
		}, []string{
			`/p4mesh/bgp/config/local-as: local AS is required`,
			`/p4mesh/bgp/neighbors/neighbor[vpc=red][address=10.1.0.1]/config/attachment: endpoint red-vm1 is of kind vm; a BGP neighbor needs a vpn or interconnect endpoint`,
		}},
		{"BGP router id per VPC", func(m *oc.P4Mesh_P4Mesh) {
			c := m.GetOrCreateBgp().GetOrCreateConfig()
			c.RouterId, c.LocalAs = ygot.String("10.255.0.1"), ygot.Uint32(64512)
			v, _ := m.Bgp.GetOrCreateVpcs().AppendNewVpc("red")
			v.GetOrCreateConfig().RouterId = ygot.String("0.0.0.0")
		}, []string{`/p4mesh/bgp/vpcs/vpc[vpc=red]/config/router-id: router id 0.0.0.0 is not a valid BGP identifier`}},
		{"several at once", func(m *oc.P4Mesh_P4Mesh) {
			m.Vpcs.GetVpc("green").Config.Vni = ygot.Uint32(100)
			m.Endpoints.GetEndpoint("red-vm1").Config.Host = ygot.String("h9")
		}, []string{
			`/p4mesh/vpcs/vpc[name=green]/config/vni: 100 is also the VNI of red`,
			`/p4mesh/endpoints/endpoint[id=red-vm1]/config/host: host "h9" is not defined`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := fromConfig(t, load(t, redBlue))
			tc.change(d.P4Mesh)
			snapshot, err := ygot.DeepCopy(d)
			if err != nil {
				t.Fatal(err)
			}
			err = Validate(d)
			if diff, derr := ygot.Diff(snapshot, d); derr != nil || len(diff.GetUpdate())+len(diff.GetDelete()) > 0 {
				t.Errorf("Validate changed the device: %v %v", diff, derr)
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted it; want %q", tc.want)
			}
			lines := strings.Split(err.Error(), "\n")
			// Every path is one a gNMI client can use (an empty key, the
			// mistake of one case, is the exception).
			for _, l := range lines {
				path, _, _ := strings.Cut(l, ": ")
				if _, perr := ygot.StringToStructuredPath(path); perr != nil && !strings.Contains(path, "=]") {
					t.Errorf("%q is no gNMI path: %v", path, perr)
				}
			}
			for _, w := range tc.want {
				found := false
				for _, l := range lines {
					found = found || strings.HasPrefix(l, w)
				}
				if !found {
					t.Errorf("Validate error lacks %q; got:\n%v", w, err)
				}
			}
		})
	}
}

func TestToConfigDefaultsAndKeys(t *testing.T) {
	// What a client may send: keys without the config leaves that repeat
	// them, weights and priorities omitted.
	in := `{
  "p4mesh:p4mesh": {
    "controller": {"config": {"name": "c1"}},
    "directory": {"controllers": {"controller": [
      {"name": "c1", "config": {"address": "127.0.0.1:7001", "vpcs": ["red"]}}
    ]}},
    "vpcs": {"vpc": [{"name": "red", "config": {"vni": 100, "subnets": ["10.1.0.0/16"]}}]},
    "hosts": {"host": [{"id": "h1", "config": {"underlay-ip": "192.168.0.1", "mac": "02:aa:00:00:00:01", "uplink-port": 1}}]},
    "endpoints": {"endpoint": [{"id": "e1", "config": {"vpc": "red", "kind": "vm", "ip": "10.1.0.10", "mac": "02:01:00:00:00:0a", "host": "h1", "port": 2}}]},
    "load-balancers": {"load-balancer": [{"name": "lb", "config": {"vpc": "red", "vip": "10.1.0.100", "protocol": "tcp", "port": 80},
      "backends": {"backend": [{"endpoint": "e1"}]}}]},
    "routes": {"route": [
      {"vpc": "red", "prefix": "10.9.0.0/16", "next-hop": "-"},
      {"vpc": "red", "prefix": "10.8.0.0/16", "next-hop": "-", "state": {"origin": "bgp", "chosen": true}}
    ]}
  }
}`
	d, err := UnmarshalIETF([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(d); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	got, err := ToConfig(d)
	if err != nil {
		t.Fatal(err)
	}
	want := parse(t, `
controller: c1
directory: [{name: c1, address: "127.0.0.1:7001", vpcs: [red]}]
vpcs: [{name: red, vni: 100, subnets: [10.1.0.0/16]}]
hosts: [{id: h1, underlay_ip: 192.168.0.1, mac: "02:aa:00:00:00:01", uplink_port: 1}]
endpoints: [{id: e1, vpc: red, kind: vm, ip: 10.1.0.10, mac: "02:01:00:00:00:0a", host: h1, port: 2}]
load_balancers: [{name: lb, vpc: red, vip: 10.1.0.100, protocol: tcp, port: 80, backends: [{endpoint: e1}]}]
routes: [{vpc: red, prefix: 10.9.0.0/16}]
`)
	sameConfig(t, got, want)
}

func TestUnmarshalIETFErrors(t *testing.T) {
	for name, in := range map[string]string{
		"not JSON":       `{`,
		"unknown member": `{"p4mesh:p4mesh": {"nope": {}}}`,
		"wrong type":     `{"p4mesh:p4mesh": {"vpcs": {"vpc": [{"name": "red", "config": {"name": "red", "vni": "many"}}]}}}`,
		"bad enum":       `{"p4mesh:p4mesh": {"endpoints": {"endpoint": [{"id": "e", "config": {"id": "e", "kind": "vmx"}}]}}}`,
		"duplicate key":  `{"p4mesh:p4mesh": {"vpcs": {"vpc": [{"name": "red"}, {"name": "red"}]}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := UnmarshalIETF([]byte(in)); err == nil {
				t.Error("UnmarshalIETF accepted it")
			}
		})
	}
}

func TestWithState(t *testing.T) {
	c := load(t, redBlue)
	d := fromConfig(t, c)
	d.P4Mesh.GetOrCreateBgp().GetOrCreateNeighbors()
	n, _ := d.P4Mesh.Bgp.Neighbors.AppendNewNeighbor("red", "10.1.255.1")
	n.GetOrCreateConfig().AuthPassword = ygot.String("secret")
	n.Config.PeerAs = ygot.Uint32(65001)
	WithState(d, []controller.PeeringStatus{
		{VPC: "red", PeerVPC: "blue", Active: true},
		{VPC: "red", PeerVPC: "elsewhere", Active: false, Reason: "not configured here"},
	}, controller.Stats{PublishedServices: 2, Subscribers: 7, Peerings: 1, ActivePeerings: 1})

	m := d.P4Mesh
	if s := m.GetState(); s.GetPublishedServices() != 2 || s.GetWatchSubscribers() != 7 || s.GetPeerings() != 1 || s.GetActivePeerings() != 1 {
		t.Errorf("p4mesh state = %+v", s)
	}
	ps := m.Peerings.GetPeering("red", "blue").GetState()
	if !ps.GetActive() || ps.Reason != nil || ps.GetExportPolicy() != "all" || ps.GetPreference() != 100 {
		t.Errorf("peering state = active %v reason %v policy %q preference %d", ps.GetActive(), ps.Reason, ps.GetExportPolicy(), ps.GetPreference())
	}
	vs := m.Vpcs.GetVpc("red").GetState()
	if vs.GetVni() != 100 || len(vs.GetSubnets()) != 1 || vs.GetSubnets()[0] != "10.1.0.0/16" {
		t.Errorf("vpc state = %+v", vs)
	}
	// State is a copy: changing config afterwards leaves it alone.
	m.Vpcs.GetVpc("red").Config.Subnets[0] = "10.7.0.0/16"
	*m.Vpcs.GetVpc("red").Config.Vni = 7
	if vs.GetSubnets()[0] != "10.1.0.0/16" || vs.GetVni() != 100 {
		t.Error("state shares memory with config")
	}
	if w := m.LoadBalancers.GetLoadBalancer("red-web").Backends.GetBackend("red-vm2").GetState().GetWeight(); w != 2 {
		t.Errorf("backend state weight = %d, want 2", w)
	}
	if ur := m.Hosts.GetHost("h1").UnderlayRoutes.GetUnderlayRoute("192.168.0.0/24").GetState(); ur.GetDstMac() != "02:fe:00:00:00:01" {
		t.Errorf("underlay route state = %+v", ur)
	}
	if r := m.Routes.GetRoute("red", "172.16.0.0/12", "red-router").GetState(); r.GetOrigin() != oc.P4Mesh_RouteOrigin_static || r.GetPriority() != 100 {
		t.Errorf("route state = %+v", r)
	}
	if ns := n.GetState(); ns.GetPeerAs() != 65001 {
		t.Errorf("neighbor state = %+v", ns)
	}
	b, err := MarshalIETF(d)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(b, []byte("secret")) != 1 {
		t.Errorf("the BGP password must appear once, in config:\n%s", b)
	}
}

// FuzzUnmarshalIETF feeds arbitrary JSON to the path a gNMI Set takes:
// nothing may panic, and what is accepted must convert back.
func FuzzUnmarshalIETF(f *testing.F) {
	for _, p := range []string{"testdata/tiny.json", "testdata/tiny-state.json"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"p4mesh:p4mesh": {"routes": {"route": [{"vpc": "a", "prefix": "x", "next-hop": "-"}]}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := UnmarshalIETF(b)
		if err != nil {
			return
		}
		if Validate(d) != nil {
			return
		}
		c, err := ToConfig(d)
		if err != nil {
			t.Fatalf("Validate accepted what ToConfig refuses: %v", err)
		}
		d2, err := FromConfig(c)
		if err != nil {
			t.Fatalf("FromConfig of a valid configuration: %v", err)
		}
		c2, err := ToConfig(d2)
		if err != nil || !c2.Equal(c) {
			t.Fatalf("round trip of a valid configuration: %v", err)
		}
	})
}
