package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p4mesh/p4mesh/p4rt"
)

// The compiler outputs are p4rt's fixtures, laid out as bf-p4c and
// p4c-dpdk write them.
const (
	bfp4cOut   = "../../p4rt/testdata/bf-p4c"
	p4cDPDKOut = "../../p4rt/testdata/p4c-dpdk"
)

func TestPipelinePackRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p4info := filepath.Join(dir, "p4info.txtpb")
	os.WriteFile(p4info, []byte(`pkg_info { arch: "tna" }
tables { preamble { id: 33554433 name: "VpcIngress.port_vnet" alias: "port_vnet" } size: 1024 }
`), 0o644)
	bmv2JSON := filepath.Join(dir, "prog.json")
	os.WriteFile(bmv2JSON, []byte(`{"header_types": [], "pipelines": [{"name": "ingress"}]}`), 0o644)

	for _, tc := range []struct {
		target, in string
		extra      []string
		check      func(t *testing.T, cfg []byte)
	}{
		{"tofino", bfp4cOut, []string{"--p4info", p4info}, func(t *testing.T, cfg []byte) {
			got, err := p4rt.ParseTofinoDeviceConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			bin, _ := os.ReadFile(filepath.Join(bfp4cOut, "pipe", "tofino.bin"))
			bfrt, _ := os.ReadFile(filepath.Join(bfp4cOut, "bfrt.json"))
			if got.GetP4Name() != "vpc_peering" || !bytes.Equal(got.GetBfruntimeInfo(), bfrt) || len(got.GetProfiles()) != 1 || !bytes.Equal(got.GetProfiles()[0].GetBinary(), bin) {
				t.Errorf("unpacked %s, %d profiles: not the compiler output", got.GetP4Name(), len(got.GetProfiles()))
			}
		}},
		{"dpdk", filepath.Join(p4cDPDKOut, "vpc_peering.conf"), nil, func(t *testing.T, cfg []byte) {
			got, err := p4rt.ParseDPDKDeviceConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			spec, _ := os.ReadFile(filepath.Join(p4cDPDKOut, "pipe", "vpc_peering.spec"))
			if got.GetP4Name() != "vpc_peering" || len(got.GetProfiles()) != 1 || !bytes.Equal(got.GetProfiles()[0].GetBinary(), spec) || len(got.GetPacketIoConfig().GetPorts()) != 2 {
				t.Errorf("unpacked %s: not the compiler output", got.GetP4Name())
			}
		}},
		{"bmv2", bmv2JSON, nil, func(t *testing.T, cfg []byte) {
			want, _ := os.ReadFile(bmv2JSON)
			if !bytes.Equal(cfg, want) {
				t.Error("the BMv2 config is not p4c's JSON as is")
			}
		}},
	} {
		t.Run(tc.target, func(t *testing.T) {
			out := filepath.Join(dir, tc.target+".bin")
			var stdout bytes.Buffer
			args := append([]string{"pipeline", "pack", "--target", tc.target, "--in", tc.in, "--out", out}, tc.extra...)
			if err := run(context.Background(), args, &stdout, &bytes.Buffer{}); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(stdout.String(), "wrote the "+tc.target+" device config") {
				t.Errorf("stdout %q", stdout.String())
			}
			cfg, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg)
		})
	}
	// Nothing but the output is left in the directory.
	left, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestPipelinePackErrors(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "cfg.bin")
	other := filepath.Join(dir, "other.txtpb")
	os.WriteFile(other, []byte(`tables { preamble { id: 1 name: "SwitchIngress.forward" } }`), 0o644)
	notP4Info := filepath.Join(dir, "bfrt.json")
	os.WriteFile(notP4Info, []byte(`{"tables": []}`), 0o644)
	for _, tc := range []struct {
		args  []string
		usage bool
		want  string
	}{
		{[]string{"--in", bfp4cOut, "--out", out}, true, "--target is required"},
		{[]string{"--target", "tofino", "--out", out}, true, "--in is required"},
		{[]string{"--target", "tofino", "--in", bfp4cOut}, true, "--out is required"},
		{[]string{"--target", "p4mesh", "--in", bfp4cOut, "--out", out}, true, `--target "p4mesh": want bmv2, tofino or dpdk`},
		{[]string{"--target", "tofino", "--in", bfp4cOut, "--out", out, "extra"}, true, "takes no arguments"},
		{[]string{"--target", "tofino", "--in", p4cDPDKOut, "--out", out}, false, `compiled for target "DPDK"`},
		{[]string{"--target", "dpdk", "--in", bfp4cOut, "--out", out}, false, `compiled for target "tofino", not DPDK`},
		{[]string{"--target", "dpdk", "--in", dir, "--out", out}, false, "dpdk: no .conf in " + dir},
		{[]string{"--target", "tofino", "--in", bfp4cOut, "--out", out, "--p4info", other}, false, "SwitchIngress.forward are not in bfrt.json"},
		{[]string{"--target", "tofino", "--in", bfp4cOut, "--out", out, "--p4info", notP4Info}, false, "is not a P4Info"},
		{[]string{"--target", "tofino", "--in", bfp4cOut, "--out", filepath.Join(dir, "no", "such", "dir", "cfg.bin")}, false, "--out:"},
		{[]string{"--target", "bmv2", "--in", filepath.Join(p4cDPDKOut, "bf-rt.json"), "--out", out}, false, `bmv2: no "pipelines"`},
	} {
		err := run(context.Background(), append([]string{"pipeline", "pack"}, tc.args...), &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, errUsage) != tc.usage {
			t.Errorf("pack %q = %v; want %q (usage error: %v)", tc.args, err, tc.want, tc.usage)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed pack left %s (%v)", out, err)
	}
	var stderr bytes.Buffer
	if err := run(context.Background(), []string{"pipeline", "pack", "--help"}, &bytes.Buffer{}, &stderr); err != nil {
		t.Errorf("--help = %v; want no error", err)
	}
	for _, want := range []string{"tofino  bf-p4c's output directory", "dpdk    the .conf p4c-dpdk writes with --tdi-builder-conf", "bmv2    the JSON p4c-bm2-ss wrote", "-p4info"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, stderr.String())
		}
	}
}
