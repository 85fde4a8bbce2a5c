package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p4mesh/p4mesh/controller"
)

// TestWriteLab lays out deploy/mininet/example: configurations that load
// and validate with the addresses moved, every VM cabled, and the pings
// its peerings and export policies promise.
func TestWriteLab(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	ex := "../../deploy/mininet/example/"
	if err := writeLab(dir, []string{ex + "c1.yaml", ex + "c2.yaml"}, &out); err != nil {
		t.Fatal(err)
	}
	var lab labTopology
	b, err := os.ReadFile(filepath.Join(dir, "topology.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &lab); err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{}
	for _, c := range lab.Controllers {
		addrs[c.Name] = c.Address
	}
	for _, c := range lab.Controllers {
		cfg, err := controller.LoadFile(filepath.Join(dir, c.Config))
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		for _, d := range cfg.Directory {
			if d.Address != addrs[d.Name] || !strings.HasPrefix(d.Address, "127.0.0.1:") || d.Address == "127.0.0.1:7101" {
				t.Errorf("%s: %s at %s; want the lab's %s", c.Config, d.Name, d.Address, addrs[d.Name])
			}
		}
	}
	if len(lab.Hosts) != 2 || len(lab.VMs) != 5 || len(lab.Pings) != 10 {
		t.Fatalf("hosts %d, VMs %d, pings %d; want 2, 5, 10", len(lab.Hosts), len(lab.VMs), len(lab.Pings))
	}
	want := map[string]bool{
		"red-1 red-2": true, "blue-1 red-1": true, "blue-2 red-1": false, "blue-1 green-1": false, "green-1 red-1": false,
	}
	for _, p := range lab.Pings {
		if w, ok := want[p.From+" "+p.To]; ok && w != p.Reply {
			t.Errorf("%s → %s: reply %v (%s); want %v", p.From, p.To, p.Reply, p.Why, w)
		}
	}
	for _, v := range lab.VMs {
		if v.ID == "blue-1" && (v.Host != "h1" || v.Port != 3 || v.PrefixLen != 16 || v.Gateway == "") {
			t.Errorf("blue-1 cabled as %+v", v)
		}
	}
}

func TestWriteLabRefuses(t *testing.T) {
	ex := "../../deploy/mininet/example/"
	err := writeLab(t.TempDir(), []string{ex + "c1.yaml"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "no --config is given for it") {
		t.Errorf("one controller of two: %v", err)
	}
}
