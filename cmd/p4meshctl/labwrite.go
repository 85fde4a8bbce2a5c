package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/p4mesh/p4mesh/controller"
)

// configFiles is a repeatable --config flag.
type configFiles []string

func (c *configFiles) String() string     { return strings.Join(*c, ",") }
func (c *configFiles) Set(s string) error { *c = append(*c, s); return nil }

// maxIfName is Linux's longest interface name (IFNAMSIZ - 1).
const maxIfName = 15

// labNode is Mininet's name of a VM: its CLI takes words, so red-1 is
// red1 (deploy/mininet's node_name).
func labNode(id string) string { return strings.ReplaceAll(id, "-", "") }

// writeLab lays out a lab (deploy/mininet) from the user's controller
// configurations, one file per controller, as the controllers read them:
// each configuration again, with every controller's address moved to a
// free loopback port (the lab runs every daemon on this machine), and
// topology.json with the hosts, the VMs cabled to their ports, and the
// pings the configurations promise: every pair of VMs, a reply within a
// VPC and across a peering both sides configure and whose export
// policies let both addresses through, no reply otherwise.
func writeLab(dir string, files []string, stdout io.Writer) error {
	var cfgs []*controller.Config
	byName := map[string]*controller.Config{}
	for _, f := range files {
		c, err := controller.LoadFile(f)
		if err != nil {
			return err
		}
		if err := c.Validate(); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if byName[c.Controller] != nil {
			return fmt.Errorf("%s: a second configuration of controller %s", f, c.Controller)
		}
		byName[c.Controller] = c
		cfgs = append(cfgs, c)
	}
	if len(cfgs) == 0 {
		return fmt.Errorf("--config: no configuration given")
	}
	// Every controller the directories name must be started by the lab:
	// the OHCs and peer controllers dial them all.
	addrs := map[string]string{}
	for _, c := range cfgs {
		for _, d := range c.Directory {
			if len(d.Replicas) > 0 {
				return fmt.Errorf("controller %s: replica sets are not supported in the lab; give it one address", d.Name)
			}
			if byName[d.Name] == nil {
				return fmt.Errorf("controller %s's directory lists controller %s, but no --config is given for it", c.Controller, d.Name)
			}
			if addrs[d.Name] == "" {
				a, err := freeLoopback()
				if err != nil {
					return err
				}
				addrs[d.Name] = a
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	lab := labTopology{}
	hosts := map[string]controller.Host{}
	vms := map[string]controller.Endpoint{}
	var skipped []string
	for _, c := range cfgs {
		c = c.Clone()
		for i := range c.Directory {
			c.Directory[i].Address = addrs[c.Directory[i].Name]
		}
		file := c.Controller + ".yaml"
		if err := c.SaveFile(filepath.Join(dir, file)); err != nil {
			return err
		}
		lab.Controllers = append(lab.Controllers, labController{Name: c.Controller, Address: addrs[c.Controller], Config: file})
		for _, h := range c.Hosts {
			if o, ok := hosts[h.ID]; ok && (o.UnderlayIP != h.UnderlayIP || o.MAC != h.MAC || o.UplinkPort != h.UplinkPort) {
				return fmt.Errorf("host %s differs between configurations (underlay_ip, mac or uplink_port)", h.ID)
			}
			hosts[h.ID] = h
		}
		for _, e := range c.Endpoints {
			if e.Kind != controller.KindVM {
				skipped = append(skipped, fmt.Sprintf("%s (%s)", e.ID, e.Kind))
				continue
			}
			vms[e.ID] = e
		}
	}
	hostIDs := slices.Sorted(mapsKeys(hosts))
	for i, id := range hostIDs {
		h := hosts[id]
		if n := fmt.Sprintf("%s-eth%d", id, 65535); len(n) > maxIfName {
			return fmt.Errorf("host %s: its ports are Linux interfaces %s-ethN, longer than %d characters with large port numbers; use a shorter id", id, id, maxIfName)
		}
		lab.Hosts = append(lab.Hosts, labHost{ID: id, IP: h.UnderlayIP.String(), MAC: h.MAC.String(), UplinkPort: h.UplinkPort, DeviceID: uint64(i + 1)})
	}
	vmIDs := slices.Sorted(mapsKeys(vms))
	nodes := map[string]string{}
	for _, id := range vmIDs {
		e := vms[id]
		node := labNode(id)
		if other, ok := nodes[node]; ok {
			return fmt.Errorf("endpoints %s and %s are both Mininet node %s", other, id, node)
		}
		nodes[node] = id
		if len(node+"-eth0") > maxIfName {
			return fmt.Errorf("endpoint %s: Mininet node %s's interface name is longer than %d characters; use a shorter id", id, node, maxIfName)
		}
		if _, ok := hosts[e.Host]; !ok {
			return fmt.Errorf("endpoint %s: host %s is in no configuration", id, e.Host)
		}
		vpc, owner := vpcOf(cfgs, e.VPC)
		if owner == nil {
			return fmt.Errorf("endpoint %s: VPC %s is owned by no configuration", id, e.VPC)
		}
		bits := 32
		for _, s := range vpc.Subnets {
			if s.Contains(e.IP) {
				bits = s.Bits()
			}
		}
		gw, gwMAC := vpc.Gateway()
		lab.VMs = append(lab.VMs, labVM{ID: id, VPC: e.VPC, IP: e.IP.String(), PrefixLen: bits, MAC: e.MAC.String(),
			Host: e.Host, Port: e.Port, Gateway: gw.String(), GatewayMAC: net.HardwareAddr(gwMAC[:]).String(), Configured: true})
	}
	for i, a := range vmIDs {
		for _, b := range vmIDs[i+1:] {
			reply, why := expectReply(cfgs, vms[a], vms[b])
			lab.Pings = append(lab.Pings, labPing{From: a, To: b, ToIP: vms[b].IP.String(), Why: why, Reply: reply})
		}
	}
	b, err := json.MarshalIndent(lab, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "topology.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	var names []string
	for _, c := range lab.Controllers {
		names = append(names, c.Config)
	}
	fmt.Fprintf(stdout, "wrote %s and topology.json to %s: %d hosts, %d VMs, %d pings\n",
		strings.Join(names, ", "), dir, len(lab.Hosts), len(lab.VMs), len(lab.Pings))
	if len(skipped) > 0 {
		fmt.Fprintf(stdout, "not cabled in the lab (only VMs are): %s\n", strings.Join(skipped, ", "))
	}
	return nil
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func freeLoopback() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// vpcOf is VPC name and the configuration of the controller owning it.
func vpcOf(cfgs []*controller.Config, name string) (controller.VPC, *controller.Config) {
	for _, c := range cfgs {
		if v, ok := c.VPC(name); ok {
			return v, c
		}
	}
	return controller.VPC{}, nil
}

// exports says whether VPC from's owner exports ip to VPC to for ICMP,
// and if not, why.
func exports(cfgs []*controller.Config, from, to string, ip netip.Addr) (bool, string) {
	_, c := vpcOf(cfgs, from)
	if c == nil {
		return false, fmt.Sprintf("%s is owned by no configuration", from)
	}
	i := slices.IndexFunc(c.Peerings, func(p controller.Peering) bool { return p.VPC == from && p.PeerVPC == to })
	if i < 0 {
		return false, fmt.Sprintf("%s has no peering with %s", from, to)
	}
	pol := controller.ExportPolicy{}
	if j := slices.IndexFunc(c.ExportPolicies, func(e controller.ExportPolicy) bool { return e.Name == c.Peerings[i].ExportPolicy }); j >= 0 {
		pol = c.ExportPolicies[j]
	}
	if len(pol.Prefixes) > 0 && !slices.ContainsFunc(pol.Prefixes, func(p netip.Prefix) bool { return p.Contains(ip) }) {
		return false, fmt.Sprintf("%s's export policy %s to %s leaves out %s", from, pol.Name, to, ip)
	}
	if pol.PrivateOnly && !ip.IsPrivate() {
		return false, fmt.Sprintf("%s's export policy %s exports private addresses only, not %s", from, pol.Name, ip)
	}
	if len(pol.Protocols) > 0 && !slices.Contains(pol.Protocols, "icmp") && !slices.Contains(pol.Protocols, "1") {
		return false, fmt.Sprintf("%s's export policy %s does not export ICMP", from, pol.Name)
	}
	return true, ""
}

// expectReply is whether a's ping to b is answered, and why.
func expectReply(cfgs []*controller.Config, a, b controller.Endpoint) (bool, string) {
	if a.VPC == b.VPC {
		return true, "within " + a.VPC
	}
	if ok, why := exports(cfgs, b.VPC, a.VPC, b.IP); !ok {
		return false, why
	}
	if ok, why := exports(cfgs, a.VPC, b.VPC, a.IP); !ok {
		return false, why + " (no way back)"
	}
	return true, a.VPC + " and " + b.VPC + " peered"
}
