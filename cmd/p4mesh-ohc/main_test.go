package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--host is required"},
		{[]string{"--host", "h1"}, "at least one --controller"},
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1", "--log-level", "loud"}, "--log-level"},
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1", "--device-config", "/nonexistent"}, "/nonexistent"},
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1", "--source-grace", "soon"}, "flag -source-grace"},
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1", "--source-grace", "0s"}, "--source-grace"},
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1,10.0.0.2"}, `invalid value "127.0.0.1:1,10.0.0.2" for flag -controller: replica 2 of "127.0.0.1:1,10.0.0.2": "10.0.0.2" is not host:port`},
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1,127.0.0.1:1"}, "127.0.0.1:1 is also replica 1"},
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1,127.0.0.1:2", "--controller", "127.0.0.1:2"}, "127.0.0.1:2 is already in --controller 127.0.0.1:1,127.0.0.1:2"},
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), tc.args, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("run(%q) = %d, %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

func TestTargetFlags(t *testing.T) {
	dir := t.TempDir()
	bmv2JSON := filepath.Join(dir, "vpc_peering.json")
	os.WriteFile(bmv2JSON, []byte(`{"header_types": [], "pipelines": [{"name": "ingress"}]}`), 0o644)
	tofinoCfg, err := p4rt.Tofino{Conf: "../../p4rt/testdata/bf-p4c"}.DeviceConfig()
	if err != nil {
		t.Fatal(err)
	}
	tofinoPath := filepath.Join(dir, "vpc_peering.tofino.pb.bin")
	os.WriteFile(tofinoPath, tofinoCfg, 0o644)

	base := []string{"--host", "h1", "--controller", "127.0.0.1:1"}
	// Cancelled: a case that wrongly passes the flags returns at once
	// instead of running an OHC.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--target", "nope"}, `--target: unknown target "nope": want one of bmv2, p4mesh, tofino, dpdk`},
		// The embedded pipeline is v1model: Tofino and DPDK need their
		// own programs (p4/tna, p4/pna; issue 12).
		{[]string{"--target", "tofino", "--device-config", tofinoPath}, `--target tofino: the embedded pipeline does not run there: capabilities: the P4Info is for "v1model", and tofino runs tna or t2na programs`},
		{[]string{"--target", "dpdk"}, `the P4Info is for "v1model", and dpdk runs pna or psa programs`},
		{[]string{"--target", "bmv2"}, "--target bmv2: BMv2 simple_switch_grpc (PI) needs --device-config (p4meshctl pipeline pack --target bmv2)"},
		{[]string{"--target", "p4mesh", "--device-config", bmv2JSON}, "--target p4mesh: p4mesh-switch takes no --device-config"},
		{[]string{"--target", "bmv2", "--device-config", tofinoPath}, "--device-config " + tofinoPath + " is no bmv2 device config: bmv2: not JSON"},
		// Without --target a device config is BMv2's, as before.
		{[]string{"--device-config", tofinoPath}, "is no bmv2 device config"},
	} {
		var stderr bytes.Buffer
		args := append(append([]string{}, base...), tc.args...)
		if code := run(ctx, args, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("run(%q) = %d, %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}

	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target, devConfig string
		wantTarget        string
		wantConfig        bool
	}{
		{"", "", "p4mesh", false},
		{"", bmv2JSON, "bmv2", true},
		{"bmv2", bmv2JSON, "bmv2", true},
		{"p4mesh", "", "p4mesh", false},
	} {
		caps, cfg, err := targetConfig(tc.target, tc.devConfig, info)
		if err != nil {
			t.Errorf("targetConfig(%q, %q): %v", tc.target, tc.devConfig, err)
			continue
		}
		if caps.Target != tc.wantTarget || (cfg != nil) != tc.wantConfig {
			t.Errorf("targetConfig(%q, %q) = target %s, %d config bytes; want %s, config %v", tc.target, tc.devConfig, caps.Target, len(cfg), tc.wantTarget, tc.wantConfig)
		}
		if tc.wantConfig {
			if want, _ := os.ReadFile(tc.devConfig); !bytes.Equal(cfg, want) {
				t.Errorf("targetConfig(%q, %q): the config is not the file's", tc.target, tc.devConfig)
			}
		}
	}
}
