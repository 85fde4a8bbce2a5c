package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/test/vectors"
)

// TestRetargetFlags: --arch picks the program pushed, --port-map is applied
// to every case, and what a target cannot run is skipped by name.
func TestRetargetFlags(t *testing.T) {
	dir := "../../test/vectors/testdata"
	all, err := vectors.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		arch    string
		portMap vectors.PortMap
		skipped int
		port    uint16 // the first case's first port
	}{
		{p4.V1Model, nil, 0, all[0].Ports()[0]},
		{p4.V1Model, vectors.PortMap{1: 5}, 0, 5},
		{p4.TNA, vectors.PortMap{1: 101}, 0, 101},
		{p4.PNA, vectors.PortMap{1: 7}, 2, 7},
	} {
		cases, info, skipped, err := retarget(config{dir: dir, arch: tc.arch, portMap: tc.portMap})
		if err != nil {
			t.Fatalf("%s: %v", tc.arch, err)
		}
		if info.GetPkgInfo().GetArch() != tc.arch || len(skipped) != tc.skipped || len(cases)+len(skipped) != len(all) {
			t.Errorf("%s: arch %s, %d cases, skipped %v", tc.arch, info.GetPkgInfo().GetArch(), len(cases), skipped)
		}
		if got := cases[0].Ports()[0]; got != tc.port {
			t.Errorf("%s: first port %d; want %d", tc.arch, got, tc.port)
		}
		for _, s := range skipped {
			if !strings.Contains(s, "07-gateway-pool") && !strings.Contains(s, "15-pool-path-peer") || !strings.Contains(s, "no digest gateway_digest_t") {
				t.Errorf("%s: skipped %q", tc.arch, s)
			}
		}
	}
	for _, args := range [][]string{
		{"--arch", "psa", "--port", "1=x"},
		{"--port-map", "1"},
		{"--port-map", "1=2", "--port-map", "1=3"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code == 0 {
			t.Errorf("run(%q) = 0; stderr %q", args, errb.String())
		}
	}
}
