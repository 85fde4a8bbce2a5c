package controller

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// example returns a fresh copy of testdata/red-blue.yaml, the valid base
// every validation case breaks one rule of.
func example(t testing.TB) *Config {
	t.Helper()
	c, err := LoadFile("testdata/red-blue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

func mustMAC(s string) MAC {
	m, err := ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// vpcOf returns a pointer to c's VPC name, to change it in place.
func vpcOf(c *Config, name string) *VPC {
	for i := range c.VPCs {
		if c.VPCs[i].Name == name {
			return &c.VPCs[i]
		}
	}
	panic("no VPC " + name)
}

func endpointOf(c *Config, id string) *Endpoint {
	for i := range c.Endpoints {
		if c.Endpoints[i].ID == id {
			return &c.Endpoints[i]
		}
	}
	panic("no endpoint " + id)
}

func hostOf(c *Config, id string) *Host {
	for i := range c.Hosts {
		if c.Hosts[i].ID == id {
			return &c.Hosts[i]
		}
	}
	panic("no host " + id)
}

func TestExampleIsValid(t *testing.T) {
	if err := example(t).Validate(); err != nil {
		t.Fatalf("testdata/red-blue.yaml: %v", err)
	}
}

// TestValidateAccepts covers what looks suspicious but is allowed.
func TestValidateAccepts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
	}{
		{"same MAC in two VPCs", func(c *Config) { endpointOf(c, "green-vm1").MAC = endpointOf(c, "red-vm1").MAC }},
		{"same IP in two VPCs", func(c *Config) {
			vpcOf(c, "green").Subnets = []netip.Prefix{pfx("10.1.0.0/16")}
			vpcOf(c, "green").GatewayIP = ip("10.1.0.254")
			endpointOf(c, "green-vm1").IP = ip("10.1.0.10")
		}},
		{"overlapping VPCs that are not peered", func(c *Config) {
			vpcOf(c, "green").Subnets = []netip.Prefix{pfx("10.1.0.0/24")}
			vpcOf(c, "green").GatewayIP = netip.Addr{}
			endpointOf(c, "green-vm1").IP = ip("10.1.0.20")
		}},
		{"one-sided peering between two local VPCs", func(c *Config) {
			c.Peerings = append(c.Peerings, Peering{VPC: "red", PeerVPC: "green", ExportPolicy: "all"})
		}},
		{"two peerings share a policy", func(c *Config) {
			c.Peerings = append(c.Peerings, Peering{VPC: "green", PeerVPC: "blue", ExportPolicy: "all"})
		}},
		{"/32 subnet with an explicit gateway elsewhere", func(c *Config) {
			vpcOf(c, "green").Subnets = append(vpcOf(c, "green").Subnets, pfx("10.4.0.7/32"))
			endpointOf(c, "green-vm1").IP = ip("10.4.0.7")
		}},
		{"drop route", func(c *Config) { c.Routes = append(c.Routes, Route{VPC: "red", Prefix: pfx("10.99.0.0/16")}) }},
		{"an attachment with its router MAC", func(c *Config) {
			e := endpointOf(c, "red-router")
			e.Kind, e.RouterMAC = KindInterconnect, mustMAC("02:fe:00:00:00:09")
		}},
		{"protocol numbers", func(c *Config) { c.ExportPolicies[0].Protocols = []string{"tcp", "47", "icmp"} }},
		{"a replica set", func(c *Config) {
			c.Directory[1].Address = ""
			c.Directory[1].Replicas = []string{"127.0.0.1:7002", "10.0.0.2:7002", "[fd00::3]:7002", "c2-r4.example:7002"}
		}},
		{"a replica set with address one of its replicas", func(c *Config) {
			c.Directory[1].Replicas = []string{"10.0.0.1:7002", "127.0.0.1:7002"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := example(t)
			tc.mutate(c)
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
		want   []string // each a line of the error: path, colon, reason
	}{
		// controller and directory
		{"controller name required", func(c *Config) { c.Controller = "" },
			[]string{"controller: this controller's name is required"}},
		{"controller not in directory", func(c *Config) { c.Controller = "c9" },
			[]string{`controller: "c9" has no entry in directory`}},
		{"controller defined twice", func(c *Config) {
			c.Directory = append(c.Directory, ControllerEntry{Name: "c2", Address: "10.0.0.9:1"})
		}, []string{"directory[c2]: controller defined twice (entries 1 and 2)"}},
		{"controller name with a slash", func(c *Config) { c.Directory[1].Name = "c/2" },
			[]string{`directory[c/2]: name "c/2" must start with a letter or digit`}},
		{"address without port", func(c *Config) { c.Directory[1].Address = "nowhere" },
			[]string{`directory[c2].address: "nowhere" is not host:port`}},
		{"address with port 0", func(c *Config) { c.Directory[1].Address = "h:0" },
			[]string{`directory[c2].address: "h:0" has no valid port`}},
		{"address of another controller", func(c *Config) { c.Directory[1].Address = "127.0.0.1:7001" },
			[]string{"directory[c2].address: 127.0.0.1:7001 is also an address of controller c1"}},
		{"bad replica", func(c *Config) { c.Directory[1].Replicas = []string{"127.0.0.1:7002", "10.0.0.2", "h:0"} },
			[]string{`directory[c2].replicas[1]: "10.0.0.2" is not host:port`, `directory[c2].replicas[2]: "h:0" has no valid port`}},
		{"replica listed twice", func(c *Config) {
			c.Directory[1].Replicas = []string{"127.0.0.1:7002", "10.0.0.2:7002", "127.0.0.1:7002"}
		}, []string{"directory[c2].replicas[2]: 127.0.0.1:7002 is listed twice"}},
		{"replica of another controller", func(c *Config) {
			c.Directory[1].Replicas = []string{"127.0.0.1:7002", "127.0.0.1:7001"}
		}, []string{"directory[c2].replicas[1]: 127.0.0.1:7001 is also an address of controller c1"}},
		{"a replica of another controller's replica set", func(c *Config) {
			c.Directory[0].Replicas = []string{"127.0.0.1:7001", "10.0.0.9:7001"}
			c.Directory[1].Replicas = []string{"10.0.0.9:7001", "127.0.0.1:7002"}
		}, []string{"directory[c2].replicas[0]: 10.0.0.9:7001 is also an address of controller c1"}},
		{"address not one of the replicas", func(c *Config) { c.Directory[1].Replicas = []string{"10.0.0.2:7002", "10.0.0.3:7002"} },
			[]string{`directory[c2].address: "127.0.0.1:7002" is not one of replicas: list every replica's address in replicas (address may be left out)`}},
		{"neither address nor replicas", func(c *Config) { c.Directory[1].Address = "" },
			[]string{`directory[c2].address: "" is not host:port`}},
		{"VPC owned by two controllers", func(c *Config) {
			c.Directory[1].VPCs = append(c.Directory[1].VPCs, "red")
		}, []string{`directory[c2].vpcs[1]: VPC "red" is also owned by c1: every VPC has exactly one owner`}},
		{"VPC listed twice by one controller", func(c *Config) {
			c.Directory[1].VPCs = append(c.Directory[1].VPCs, "blue")
		}, []string{`directory[c2].vpcs[1]: VPC "blue" listed twice`}},
		{"owned VPC not defined", func(c *Config) {
			c.Directory[0].VPCs = append(c.Directory[0].VPCs, "yellow")
		}, []string{`directory[c1].vpcs[2]: VPC "yellow" is owned here but not defined in vpcs`}},

		// VPCs
		{"VPC owned by another controller", func(c *Config) {
			c.VPCs = append(c.VPCs, VPC{Name: "blue", VNI: 200, Subnets: []netip.Prefix{pfx("10.2.0.0/16")}})
		}, []string{"vpcs[blue]: owned by c2 in the directory, not by c1"}},
		{"VPC in no directory entry", func(c *Config) {
			c.VPCs = append(c.VPCs, VPC{Name: "pink", VNI: 900, Subnets: []netip.Prefix{pfx("10.9.0.0/16")}})
		}, []string{"vpcs[pink]: not in c1's directory entry"}},
		{"VPC defined twice", func(c *Config) { c.VPCs = append(c.VPCs, c.VPCs[0]) },
			[]string{"vpcs[red]: VPC defined twice"}},
		{"VPC without name", func(c *Config) { c.VPCs[1].Name = "" },
			[]string{"vpcs[1]: name is required"}},
		{"VNI 0", func(c *Config) { vpcOf(c, "red").VNI = 0 },
			[]string{"vpcs[red].vni: 0 is out of range 1..16777215"}},
		{"VNI beyond 24 bits", func(c *Config) { vpcOf(c, "red").VNI = 1 << 24 },
			[]string{"vpcs[red].vni: 16777216 is out of range 1..16777215"}},
		{"duplicate VNI", func(c *Config) { vpcOf(c, "green").VNI = 100 },
			[]string{"vpcs[green].vni: 100 is also the VNI of red"}},
		{"no subnet", func(c *Config) { vpcOf(c, "red").Subnets = nil },
			[]string{"vpcs[red].subnets: a VPC needs at least one subnet"}},
		{"subnet with host bits", func(c *Config) { vpcOf(c, "red").Subnets[0] = pfx("10.1.0.1/16") },
			[]string{"vpcs[red].subnets[0]: 10.1.0.1/16 has host bits set; did you mean 10.1.0.0/16?"}},
		{"IPv6 subnet", func(c *Config) {
			vpcOf(c, "red").Subnets = append(vpcOf(c, "red").Subnets, pfx("fd00::/64"))
		}, []string{"vpcs[red].subnets[1]: fd00::/64 is not IPv4"}},
		{"overlapping subnets", func(c *Config) {
			vpcOf(c, "red").Subnets = append(vpcOf(c, "red").Subnets, pfx("10.1.128.0/17"))
		}, []string{"vpcs[red].subnets[1]: 10.1.128.0/17 overlaps 10.1.0.0/16 (subnets[0])"}},
		{"gateway outside the subnets", func(c *Config) { vpcOf(c, "green").GatewayIP = ip("10.9.0.1") },
			[]string{"vpcs[green].gateway_ip: 10.9.0.1 is not inside any subnet of VPC green"}},
		{"gateway on the broadcast address", func(c *Config) { vpcOf(c, "green").GatewayIP = ip("10.3.255.255") },
			[]string{"vpcs[green].gateway_ip: 10.3.255.255 is the network or broadcast address of 10.3.0.0/16"}},
		{"no room for the default gateway", func(c *Config) {
			vpcOf(c, "green").Subnets = []netip.Prefix{pfx("10.3.0.0/31")}
			vpcOf(c, "green").GatewayIP = netip.Addr{}
			endpointOf(c, "green-vm1").IP = ip("10.3.0.1")
		}, []string{"vpcs[green].gateway_ip: required: the first subnet 10.3.0.0/31 has no host address"}},
		{"multicast gateway MAC", func(c *Config) { vpcOf(c, "green").GatewayMAC = mustMAC("01:00:5e:00:00:01") },
			[]string{"vpcs[green].gateway_mac: gateway MAC 01:00:5e:00:00:01 is a multicast address"}},

		// hosts
		{"host defined twice", func(c *Config) { c.Hosts = append(c.Hosts, c.Hosts[0]) },
			[]string{"hosts[h1]: host defined twice"}},
		{"host without underlay IP", func(c *Config) { hostOf(c, "h2").UnderlayIP = netip.Addr{} },
			[]string{"hosts[h2].underlay_ip: underlay IP is required"}},
		{"duplicate underlay IP", func(c *Config) { hostOf(c, "h2").UnderlayIP = ip("192.168.0.1") },
			[]string{"hosts[h2].underlay_ip: 192.168.0.1 is also the underlay IP of host h1"}},
		{"host without MAC", func(c *Config) { hostOf(c, "h2").MAC = MAC{} },
			[]string{"hosts[h2].mac: MAC is required"}},
		{"uplink on the CPU port", func(c *Config) { hostOf(c, "h2").UplinkPort = 255 },
			[]string{"hosts[h2].uplink_port: switch port 255 is the CPU port"}},
		{"underlay route with host bits", func(c *Config) { hostOf(c, "h3").UnderlayRoutes[0].Prefix = pfx("192.168.0.3/24") },
			[]string{"hosts[h3].underlay_routes[0].prefix: 192.168.0.3/24 has host bits set; did you mean 192.168.0.0/24?"}},
		{"underlay route without destination MAC", func(c *Config) { hostOf(c, "h3").UnderlayRoutes[0].DstMAC = MAC{} },
			[]string{"hosts[h3].underlay_routes[0].dst_mac: destination MAC is required"}},
		{"underlay route on port 511", func(c *Config) { hostOf(c, "h3").UnderlayRoutes[0].Port = 511 },
			[]string{"hosts[h3].underlay_routes[0].port: switch port 511 is out of range 1..510"}},

		// endpoints
		{"endpoint defined twice", func(c *Config) { c.Endpoints = append(c.Endpoints, c.Endpoints[0]) },
			[]string{"endpoints[red-vm1]: endpoint defined twice"}},
		{"endpoint in a VPC of another controller", func(c *Config) { endpointOf(c, "red-vm1").VPC = "blue" },
			[]string{`endpoints[red-vm1].vpc: VPC "blue" is owned by c2, not by this controller`}},
		{"endpoint in an unknown VPC", func(c *Config) { endpointOf(c, "red-vm1").VPC = "pink" },
			[]string{`endpoints[red-vm1].vpc: VPC "pink" is not defined`}},
		{"attachment without router MAC", func(c *Config) { endpointOf(c, "red-router").Kind = KindVPN },
			[]string{"endpoints[red-router].router_mac: router MAC (of the on-prem router behind the vpn attachment) is required"}},
		{"attachment with a multicast router MAC", func(c *Config) {
			e := endpointOf(c, "red-router")
			e.Kind, e.RouterMAC = KindInterconnect, mustMAC("01:00:5e:00:00:01")
		}, []string{"endpoints[red-router].router_mac: router MAC (of the on-prem router behind the interconnect attachment) 01:00:5e:00:00:01 is a multicast address"}},
		{"router MAC on a VM", func(c *Config) { endpointOf(c, "red-vm1").RouterMAC = mustMAC("02:fe:00:00:00:09") },
			[]string{"endpoints[red-vm1].router_mac: only vpn and interconnect attachments have a router MAC, not a vm endpoint"}},
		{"unknown kind", func(c *Config) { endpointOf(c, "red-vm1").Kind = "container" },
			[]string{`endpoints[red-vm1].kind: "container" is not one of vm, ilb, vpn, interconnect, router`}},
		{"endpoint IP outside the VPC", func(c *Config) { endpointOf(c, "red-vm1").IP = ip("10.3.0.99") },
			[]string{"endpoints[red-vm1].ip: 10.3.0.99 is not inside any subnet of VPC red"}},
		{"endpoint IP on the network address", func(c *Config) { endpointOf(c, "red-vm1").IP = ip("10.1.0.0") },
			[]string{"endpoints[red-vm1].ip: 10.1.0.0 is the network or broadcast address of 10.1.0.0/16"}},
		{"endpoint IP is the default gateway", func(c *Config) { endpointOf(c, "red-vm1").IP = ip("10.1.0.1") },
			[]string{"endpoints[red-vm1].ip: 10.1.0.1 is the gateway address of VPC red"}},
		{"duplicate endpoint IP", func(c *Config) { endpointOf(c, "red-vm2").IP = ip("10.1.0.10") },
			[]string{"endpoints[red-vm2].ip: 10.1.0.10 is also the IP of endpoint red-vm1 in VPC red"}},
		{"duplicate MAC in a VPC", func(c *Config) { endpointOf(c, "red-vm2").MAC = endpointOf(c, "red-vm1").MAC },
			[]string{"endpoints[red-vm2].mac: 02:01:00:00:00:0a is also the MAC of endpoint red-vm1 in VPC red"}},
		{"endpoint MAC is the gateway MAC", func(c *Config) { endpointOf(c, "red-vm2").MAC = DefaultGatewayMAC(100) },
			[]string{"endpoints[red-vm2].mac: 02:00:00:00:00:64 is the gateway MAC of VPC red"}},
		{"endpoint without MAC", func(c *Config) { endpointOf(c, "red-vm2").MAC = MAC{} },
			[]string{"endpoints[red-vm2].mac: MAC is required"}},
		{"endpoint on an unknown host", func(c *Config) { endpointOf(c, "red-vm2").Host = "h9" },
			[]string{`endpoints[red-vm2].host: host "h9" is not defined`}},
		{"two endpoints on one port", func(c *Config) { endpointOf(c, "red-router").Port = 2 },
			[]string{"endpoints[green-vm1].port: port 2 of host h3 is also endpoint red-router's"}},
		{"endpoint on the uplink port", func(c *Config) { endpointOf(c, "red-vm1").Port = 1 },
			[]string{"endpoints[red-vm1].port: port 1 is host h1's uplink port"}},
		{"endpoint on an underlay port", func(c *Config) {
			h := hostOf(c, "h1")
			h.UnderlayRoutes = append(h.UnderlayRoutes, UnderlayRoute{Prefix: pfx("192.168.1.0/24"), Port: 2, SrcMAC: h.MAC, DstMAC: h.MAC})
		}, []string{"endpoints[red-vm1].port: port 2 of host h1 carries underlay routes"}},
		{"endpoint on port 0", func(c *Config) { endpointOf(c, "red-vm1").Port = 0 },
			[]string{"endpoints[red-vm1].port: switch port is required (1..510)"}},
		{"endpoint on the CPU port", func(c *Config) { endpointOf(c, "red-vm1").Port = 255 },
			[]string{"endpoints[red-vm1].port: switch port 255 is the CPU port"}},
		{"endpoint on port 511", func(c *Config) { endpointOf(c, "red-vm1").Port = 511 },
			[]string{"endpoints[red-vm1].port: switch port 511 is out of range 1..510"}},

		// load balancers
		{"load balancer defined twice", func(c *Config) { c.LoadBalancers = append(c.LoadBalancers, c.LoadBalancers[0]) },
			[]string{"load_balancers[red-web]: load balancer defined twice"}},
		{"VIP outside the VPC", func(c *Config) { c.LoadBalancers[0].VIP = ip("10.3.0.100") },
			[]string{"load_balancers[red-web].vip: 10.3.0.100 is not inside any subnet of VPC red"}},
		{"VIP is an endpoint IP", func(c *Config) { c.LoadBalancers[0].VIP = ip("10.1.0.11") },
			[]string{"load_balancers[red-web].vip: 10.1.0.11 is the IP of endpoint red-vm2"}},
		{"protocol not tcp or udp", func(c *Config) { c.LoadBalancers[0].Protocol = "icmp" },
			[]string{`load_balancers[red-web].protocol: "icmp" is not tcp or udp`}},
		{"same frontend twice", func(c *Config) {
			lb := c.LoadBalancers[0]
			lb.Name = "red-web2"
			c.LoadBalancers = append(c.LoadBalancers, lb)
		}, []string{"load_balancers[red-web2]: tcp 10.1.0.100:80 is also load balancer red-web's frontend"}},
		{"no backends", func(c *Config) { c.LoadBalancers[0].Backends = nil },
			[]string{"load_balancers[red-web].backends: a load balancer needs at least one backend"}},
		{"backend in another VPC", func(c *Config) { c.LoadBalancers[0].Backends[1].Endpoint = "green-vm1" },
			[]string{`load_balancers[red-web].backends[green-vm1]: endpoint "green-vm1" is in VPC green, not red`}},
		{"unknown backend", func(c *Config) { c.LoadBalancers[0].Backends[1].Endpoint = "nope" },
			[]string{`load_balancers[red-web].backends[nope]: endpoint "nope" is not defined`}},
		{"backend weight 0", func(c *Config) { c.LoadBalancers[0].Backends[1].Weight = 0 },
			[]string{"load_balancers[red-web].backends[red-vm2].weight: weight must be at least 1"}},
		{"backend listed twice", func(c *Config) { c.LoadBalancers[0].Backends[1].Endpoint = "red-vm1" },
			[]string{"load_balancers[red-web].backends[red-vm1]: backend listed twice"}},

		// routes
		{"route with host bits", func(c *Config) { c.Routes[0].Prefix = pfx("172.16.0.1/12") },
			[]string{"routes[red 172.16.0.1/12].prefix: 172.16.0.1/12 has host bits set; did you mean 172.16.0.0/12?"}},
		{"route to an unknown next hop", func(c *Config) { c.Routes[0].NextHop = "nope" },
			[]string{`routes[red 172.16.0.0/12].next_hop: endpoint "nope" is not defined`}},
		{"route to an endpoint of another VPC", func(c *Config) { c.Routes[0].NextHop = "green-vm1" },
			[]string{`routes[red 172.16.0.0/12].next_hop: endpoint "green-vm1" is in VPC green, not red`}},
		{"route of a VPC of another controller", func(c *Config) { c.Routes[0].VPC = "blue"; c.Routes[0].NextHop = "" },
			[]string{`routes[blue 172.16.0.0/12].vpc: VPC "blue" is owned by c2, not by this controller`}},
		{"route defined twice", func(c *Config) { c.Routes = append(c.Routes, c.Routes[0]) },
			[]string{"routes[red 172.16.0.0/12]: route defined twice"}},

		// export policies
		{"export policy defined twice", func(c *Config) { c.ExportPolicies = append(c.ExportPolicies, c.ExportPolicies[0]) },
			[]string{"export_policies[all]: export policy defined twice"}},
		{"export policy prefix with host bits", func(c *Config) { c.ExportPolicies[0].Prefixes = []netip.Prefix{pfx("10.1.4.1/24")} },
			[]string{"export_policies[all].prefixes[0]: 10.1.4.1/24 has host bits set; did you mean 10.1.4.0/24?"}},
		{"unknown protocol", func(c *Config) { c.ExportPolicies[0].Protocols = []string{"tcp", "sctp!"} },
			[]string{`export_policies[all].protocols[1]: "sctp!" is not tcp, udp, icmp or a protocol number 0..255`}},
		{"protocol listed twice", func(c *Config) { c.ExportPolicies[0].Protocols = []string{"tcp", "6"} },
			[]string{`export_policies[all].protocols[1]: protocol "6" listed twice`}},

		// peerings
		{"peering of a VPC not owned here", func(c *Config) {
			c.Peerings = append(c.Peerings, Peering{VPC: "blue", PeerVPC: "red", ExportPolicy: "all"})
		}, []string{`peerings[blue->red].vpc: VPC "blue" is owned by c2, not by this controller`}},
		{"peer VPC not in the directory", func(c *Config) { c.Peerings[0].PeerVPC = "purple" },
			[]string{`peerings[red->purple].peer_vpc: VPC "purple" is not in the directory`}},
		{"peering with itself", func(c *Config) { c.Peerings[0].PeerVPC = "red" },
			[]string{"peerings[red->red].peer_vpc: a VPC cannot peer with itself"}},
		{"undefined export policy", func(c *Config) { c.Peerings[0].ExportPolicy = "web" },
			[]string{`peerings[red->blue].export_policy: export policy "web" is not defined`}},
		{"no export policy", func(c *Config) { c.Peerings[0].ExportPolicy = "" },
			[]string{"peerings[red->blue].export_policy: export policy is required"}},
		{"peering defined twice", func(c *Config) {
			p := c.Peerings[0]
			p.Preference = 7
			c.Peerings = append(c.Peerings, p)
		}, []string{"peerings[red->blue]: peering defined twice"}},
		{"peered local VPCs overlap", func(c *Config) {
			vpcOf(c, "green").Subnets = []netip.Prefix{pfx("10.3.0.0/16"), pfx("10.1.128.0/17")}
			c.Peerings = append(c.Peerings, Peering{VPC: "red", PeerVPC: "green", ExportPolicy: "all"})
		}, []string{"peerings[red->green]: red subnet 10.1.0.0/16 overlaps green subnet 10.1.128.0/17"}},
		{"two local peers of one VPC overlap", func(c *Config) {
			c.Directory[0].VPCs = append(c.Directory[0].VPCs, "yellow")
			c.VPCs = append(c.VPCs, VPC{Name: "yellow", VNI: 400, Subnets: []netip.Prefix{pfx("10.3.16.0/20")}})
			c.Peerings = append(c.Peerings,
				Peering{VPC: "red", PeerVPC: "green", ExportPolicy: "all"},
				Peering{VPC: "red", PeerVPC: "yellow", ExportPolicy: "all"})
		}, []string{"peerings[red->yellow]: yellow subnet 10.3.16.0/20 overlaps green subnet 10.3.0.0/16, and red peers with both"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := example(t)
			tc.mutate(c)
			before := c.Clone()
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate accepted it; want %q", tc.want)
			}
			lines := strings.Split(err.Error(), "\n")
			for _, w := range tc.want {
				found := false
				for _, l := range lines {
					if strings.HasPrefix(l, w) {
						found = true
					}
				}
				if !found {
					t.Errorf("no line starting with\n\t%s\nin\n\t%s", w, strings.Join(lines, "\n\t"))
				}
			}
			if !reflect.DeepEqual(c, before) {
				t.Errorf("Validate changed the configuration")
			}
		})
	}
}

// TestValidateCollectsAll checks that one call reports every problem, not
// the first.
func TestValidateCollectsAll(t *testing.T) {
	c := example(t)
	vpcOf(c, "green").VNI = 100
	endpointOf(c, "red-vm1").Port = 255
	c.Peerings[0].ExportPolicy = "web"
	err := c.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	if n := len(strings.Split(err.Error(), "\n")); n != 3 {
		t.Errorf("got %d problems, want 3:\n%v", n, err)
	}
}

func TestPeeringConflict(t *testing.T) {
	red := VPC{Name: "red", VNI: 100, Subnets: []netip.Prefix{pfx("10.1.0.0/16"), pfx("10.11.0.0/16")}}
	for _, tc := range []struct {
		name    string
		subnets []netip.Prefix
		vni     uint32
		want    string
	}{
		{"fine", []netip.Prefix{pfx("10.2.0.0/16")}, 200, ""},
		{"adjacent is fine", []netip.Prefix{pfx("10.0.0.0/16"), pfx("10.12.0.0/16")}, 200, ""},
		{"VNI clash", []netip.Prefix{pfx("10.2.0.0/16")}, 100, "peer VNI 100 is also the VNI of red"},
		{"peer inside", []netip.Prefix{pfx("10.2.0.0/16"), pfx("10.11.4.0/24")}, 200, "peer subnet 10.11.4.0/24 overlaps red subnet 10.11.0.0/16"},
		{"peer covers", []netip.Prefix{pfx("10.0.0.0/8")}, 200, "peer subnet 10.0.0.0/8 overlaps red subnet 10.1.0.0/16"},
	} {
		if got := PeeringConflict(red, tc.subnets, tc.vni); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
