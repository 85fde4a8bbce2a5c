package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/p4mesh/p4mesh/demo"
)

// labTopology is topology.json: what a lab other than the demo's own
// fabric (deploy/mininet) needs to cable and check the demo's world. The
// controllers' configurations say the same in their terms; this is the
// cabling (which VM is on which port of which host) and the expectations.
type labTopology struct {
	Controllers []labController `json:"controllers"`
	Hosts       []labHost       `json:"hosts"`
	VMs         []labVM         `json:"vms"`
	Pings       []labPing       `json:"pings"`
}

type labController struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// Config is the configuration file's name, beside topology.json.
	Config string `json:"config"`
}

type labHost struct {
	ID         string `json:"id"`
	IP         string `json:"ip"`
	MAC        string `json:"mac"`
	UplinkPort uint16 `json:"uplink_port"`
	// DeviceID is the P4Runtime device id of the host's switch.
	DeviceID uint64 `json:"device_id"`
}

type labVM struct {
	ID         string `json:"id"`
	VPC        string `json:"vpc"`
	IP         string `json:"ip"`
	PrefixLen  int    `json:"prefix_len"`
	MAC        string `json:"mac"`
	Host       string `json:"host"`
	Port       uint16 `json:"port"`
	Gateway    string `json:"gateway"`
	GatewayMAC string `json:"gateway_mac"`
	// Configured is false for a VM that is cabled but that no controller
	// knows yet (the demo adds blue-2 live).
	Configured bool `json:"configured"`
}

type labPing struct {
	From  string `json:"from"`
	To    string `json:"to"`
	ToIP  string `json:"to_ip"`
	Why   string `json:"why"`
	Reply bool   `json:"reply"`
}

// writeDemo writes the demo's configurations with its controllers at
// addrs, and topology.json, into dir.
func writeDemo(dir, addrs string, stdout io.Writer) error {
	a := strings.Split(addrs, ",")
	if len(a) != 2 {
		return fmt.Errorf("--controller-addrs %q: want c1's and c2's, comma-separated", addrs)
	}
	for _, x := range a {
		if _, _, err := net.SplitHostPort(x); err != nil {
			return fmt.Errorf("--controller-addrs: %w", err)
		}
	}
	topo := demo.DemoTopology([2]string{a[0], a[1]})
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	lab := labTopology{}
	configured := map[string]bool{}
	for i, name := range []string{"c1", "c2"} {
		c := topo.Configs[name]
		file := name + ".yaml"
		if err := c.SaveFile(filepath.Join(dir, file)); err != nil {
			return err
		}
		lab.Controllers = append(lab.Controllers, labController{Name: name, Address: a[i], Config: file})
		for _, e := range c.Endpoints {
			configured[e.ID] = true
		}
	}
	var uplink uint16
	for _, h := range topo.Configs["c1"].Hosts {
		uplink = h.UplinkPort
	}
	for i, h := range topo.Hosts {
		lab.Hosts = append(lab.Hosts, labHost{ID: h.ID, IP: h.IP.String(), MAC: h.MAC.String(), UplinkPort: uplink, DeviceID: uint64(i + 1)})
	}
	for _, v := range topo.VMs {
		lab.VMs = append(lab.VMs, labVM{ID: v.ID, VPC: v.VPC, IP: v.IP.String(), PrefixLen: v.Prefix.Bits(), MAC: v.MAC.String(),
			Host: v.Host, Port: v.Port, Gateway: v.Gateway.String(), GatewayMAC: v.GatewayMAC.String(), Configured: configured[v.ID]})
	}
	for _, p := range demoPings {
		lab.Pings = append(lab.Pings, labPing{From: p.from, To: p.to, ToIP: topo.VM(p.to).IP.String(), Why: p.why, Reply: p.reply})
	}
	b, err := json.MarshalIndent(lab, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "topology.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote c1.yaml, c2.yaml and topology.json to %s\n", dir)
	return nil
}
