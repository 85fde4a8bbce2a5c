package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

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
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1", "--table-budget", "vnet_destination"}, "want table=entries"},
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1", "--table-budget", "vnet_destination=lots"}, `"lots" is not a number of entries`},
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1", "--table-budget", "vnet_destination=0"}, `"0" is not a number of entries`},
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1", "--table-budget", "vnet_destination=5", "--table-budget", "vnet_destination=6"}, "vnet_destination given twice"},
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1", "--table-budget", "no_such_table=5"}, `no_such_table`},
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
		// Tofino and DPDK run p4/tna and p4/pna: the fixture's bfrt.json
		// (two tables) is not of that program, and DPDK needs a config.
		{[]string{"--target", "tofino", "--device-config", tofinoPath}, "is no tofino device config for p4/tna: tofino: the P4Info's tables VpcIngress.vm_source_guard, "},
		{[]string{"--target", "dpdk"}, "--target dpdk: IPDK infrap4d (P4-DPDK) needs --device-config (p4meshctl pipeline pack --target dpdk)"},
		{[]string{"--target", "bmv2"}, "--target bmv2: BMv2 simple_switch_grpc (PI) needs --device-config (p4meshctl pipeline pack --target bmv2)"},
		{[]string{"--target", "p4mesh", "--device-config", bmv2JSON}, "--target p4mesh: p4mesh-switch takes no --device-config"},
		{[]string{"--target", "bmv2", "--device-config", tofinoPath}, "--device-config " + tofinoPath + " is no bmv2 device config for p4/v1model: bmv2: not JSON"},
		// Without --target a device config is BMv2's, as before.
		{[]string{"--device-config", tofinoPath}, "is no bmv2 device config"},
	} {
		var stderr bytes.Buffer
		args := append(append([]string{}, base...), tc.args...)
		if code := run(ctx, args, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("run(%q) = %d, %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
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
		info, caps, cfg, err := targetConfig(tc.target, tc.devConfig)
		if err != nil {
			t.Errorf("targetConfig(%q, %q): %v", tc.target, tc.devConfig, err)
			continue
		}
		if want, _ := p4.P4Info(); !proto.Equal(info, want) {
			t.Errorf("targetConfig(%q, %q): not the v1model P4Info", tc.target, tc.devConfig)
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

// TestTargetConfigHardware: --target tofino and dpdk run p4/tna and p4/pna,
// with a device config of that program (the compiler fixtures, their
// BF-Runtime schema listing the program's tables), and the capabilities
// their P4Infos say.
func TestTargetConfigHardware(t *testing.T) {
	for _, tc := range []struct {
		target, fixture, bfrt, arch string
		portBits                    int32
		cpuPort                     uint64
		pack                        func(conf string) ([]byte, error)
	}{
		{"tofino", "bf-p4c", "bfrt.json", "tna", 32, 0xFFFFFFFD, func(c string) ([]byte, error) { return p4rt.Tofino{Conf: c}.DeviceConfig() }},
		{"dpdk", "p4c-dpdk", "bf-rt.json", "pna", 32, 255, func(c string) ([]byte, error) { return p4rt.DPDK{Conf: c}.DeviceConfig() }},
	} {
		t.Run(tc.target, func(t *testing.T) {
			want, err := p4.P4InfoFor(tc.arch)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(filepath.Join("../../p4rt/testdata", tc.fixture))); err != nil {
				t.Fatal(err)
			}
			// The fixture's schema with every table of the program, as
			// the compiler names them ("pipe." and the P4Info name).
			var tables []string
			for _, tb := range want.GetTables() {
				n := tb.GetPreamble().GetName()
				if !strings.HasPrefix(n, "pipe.") {
					n = "pipe." + n
				}
				tables = append(tables, `{"name": "`+n+`"}`)
			}
			bfrt := `{"schema_version": "1.0.0", "tables": [` + strings.Join(tables, ",") + `], "learn_filters": []}`
			if err := os.WriteFile(filepath.Join(dir, tc.bfrt), []byte(bfrt), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := tc.pack(dir)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "config.pb.bin")
			os.WriteFile(path, cfg, 0o644)
			info, caps, got, err := targetConfig(tc.target, path)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(info, want) || caps.Arch != tc.arch || caps.PortBits != tc.portBits || caps.CPUPort != tc.cpuPort || caps.OneShotSelectors || !bytes.Equal(got, cfg) {
				t.Errorf("targetConfig(%s) = arch %s, caps %+v", tc.target, info.GetPkgInfo().GetArch(), caps)
			}
		})
	}
}
