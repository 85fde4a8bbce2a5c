package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/p4mesh/p4mesh/controller"
)

// TestDemoWrite: the written configurations are valid and name the
// controllers at the addresses asked, and every expected ping is between
// cabled VMs.
func TestDemoWrite(t *testing.T) {
	dir := t.TempDir()
	if err := run(t.Context(), []string{"demo", "--write", dir, "--controller-addrs", "127.0.0.1:17001,127.0.0.1:17002"}, io.Discard, io.Discard); err != nil {
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
	for _, c := range lab.Controllers {
		cfg, err := controller.LoadFile(filepath.Join(dir, c.Config))
		if err != nil {
			t.Fatalf("%s: %v", c.Config, err)
		}
		if cfg.Controller != c.Name {
			t.Errorf("%s is controller %q's, want %q's", c.Config, cfg.Controller, c.Name)
		}
		for _, e := range cfg.Directory {
			if e.Name == c.Name && e.Address != c.Address {
				t.Errorf("%s's directory has %s at %s, want %s", c.Config, c.Name, e.Address, c.Address)
			}
		}
	}
	if lab.Controllers[0].Address != "127.0.0.1:17001" || lab.Controllers[1].Address != "127.0.0.1:17002" {
		t.Errorf("controllers %+v, want c1 at :17001 and c2 at :17002", lab.Controllers)
	}
	vms := map[string]labVM{}
	for _, v := range lab.VMs {
		vms[v.ID] = v
	}
	var silent int
	for _, p := range lab.Pings {
		from, to := vms[p.From], vms[p.To]
		if !from.Configured || !to.Configured || to.IP != p.ToIP {
			t.Errorf("ping %+v: between VMs not configured, or to the wrong address", p)
		}
		if !p.Reply {
			silent++
		}
	}
	if len(lab.Pings) == 0 || silent == 0 {
		t.Errorf("pings %+v: want some, and one that must go unanswered", lab.Pings)
	}
	if err := run(t.Context(), []string{"demo", "--write", dir, "--controller-addrs", "127.0.0.1:1"}, io.Discard, io.Discard); err == nil {
		t.Error("--controller-addrs with one address accepted")
	}
}
