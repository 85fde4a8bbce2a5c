package p4rt

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/targetsv1"
)

// The fixtures under testdata/bf-p4c and testdata/p4c-dpdk are laid out as
// the compilers write them (see Tofino and DPDK), with the keys the real
// files have, cut down to two tables.

// copyTree copies testdata/src into a fresh directory, for tests that
// break a file.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(filepath.Join("testdata", src), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join("testdata", src), path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func readFixture(t *testing.T, path ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{"testdata"}, path...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// editConf rewrites the .conf in dir through f, on its generic JSON form.
func editConf(t *testing.T, conf string, f func(prog, pipe map[string]any, dev map[string]any)) {
	t.Helper()
	var c map[string]any
	if err := json.Unmarshal(mustRead(t, conf), &c); err != nil {
		t.Fatal(err)
	}
	dev := c["p4_devices"].([]any)[0].(map[string]any)
	prog := dev["p4_programs"].([]any)[0].(map[string]any)
	pipe := prog["p4_pipelines"].([]any)[0].(map[string]any)
	f(prog, pipe, dev)
	b, _ := json.Marshal(c)
	if err := os.WriteFile(conf, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fixtureP4Info(t *testing.T, tables ...string) *p4configv1.P4Info {
	t.Helper()
	info := &p4configv1.P4Info{PkgInfo: &p4configv1.PkgInfo{Arch: "tna"}}
	for i, n := range tables {
		info.Tables = append(info.Tables, &p4configv1.Table{Preamble: &p4configv1.Preamble{Id: uint32(0x02000001 + i), Name: n}})
	}
	return info
}

func TestTofinoRoundTrip(t *testing.T) {
	// Given the directory or the .conf itself, the same config.
	var configs [][]byte
	for _, in := range []string{"testdata/bf-p4c", "testdata/bf-p4c/vpc_peering.conf"} {
		b, err := Tofino{Conf: in, P4Info: fixtureP4Info(t, "VpcIngress.port_vnet", "VpcIngress.vnet_route")}.DeviceConfig()
		if err != nil {
			t.Fatalf("pack %s: %v", in, err)
		}
		configs = append(configs, b)
	}
	// A .conf whose relative paths are from the working directory (as
	// Stratum's bf_pipeline_builder reads them) packs the same too.
	elsewhere := filepath.Join(t.TempDir(), "vpc_peering.conf")
	os.WriteFile(elsewhere, mustRead(t, "testdata/bf-p4c/vpc_peering.conf"), 0o644)
	editConf(t, elsewhere, func(prog, pipe, _ map[string]any) {
		prog["bfrt-config"] = "testdata/bf-p4c/bfrt.json"
		pipe["context"] = "testdata/bf-p4c/pipe/context.json"
		pipe["config"] = "testdata/bf-p4c/pipe/tofino.bin"
	})
	lone := copyTree(t, "bf-p4c")
	editConf(t, filepath.Join(lone, "vpc_peering.conf"), func(_, pipe, _ map[string]any) { delete(pipe, "pipe_scope") })
	if b, err := (Tofino{Conf: lone}).DeviceConfig(); err != nil {
		t.Errorf("a lone profile without pipe_scope: %v", err)
	} else if c, err := ParseTofinoDeviceConfig(b); err != nil || len(c.GetProfiles()[0].GetPipeScope()) != 0 {
		t.Errorf("a lone profile without pipe_scope packs %v, %v; want an empty scope (every pipe)", c, err)
	}
	b, err := Tofino{Conf: elsewhere}.DeviceConfig()
	if err != nil {
		t.Fatalf("pack with paths from the working directory: %v", err)
	}
	configs = append(configs, b)
	for i := range configs[1:] {
		if !bytes.Equal(configs[0], configs[i+1]) {
			t.Errorf("packing input %d differs from packing the directory", i+1)
		}
	}
	got, err := ParseTofinoDeviceConfig(configs[0])
	if err != nil {
		t.Fatal(err)
	}
	if got.GetP4Name() != "vpc_peering" {
		t.Errorf("p4_name %q; want vpc_peering", got.GetP4Name())
	}
	if !bytes.Equal(got.GetBfruntimeInfo(), readFixture(t, "bf-p4c", "bfrt.json")) {
		t.Error("bfruntime_info is not bfrt.json")
	}
	if n := len(got.GetProfiles()); n != 1 {
		t.Fatalf("%d profiles; want 1", n)
	}
	p := got.GetProfiles()[0]
	if p.GetProfileName() != "pipe" ||
		!bytes.Equal(p.GetContext(), readFixture(t, "bf-p4c", "pipe", "context.json")) ||
		!bytes.Equal(p.GetBinary(), readFixture(t, "bf-p4c", "pipe", "tofino.bin")) ||
		!slices.Equal(p.GetPipeScope(), []uint32{0, 1, 2, 3}) {
		t.Errorf("profile %q scope %v does not hold pipe/context.json and pipe/tofino.bin for pipes 0-3", p.GetProfileName(), p.GetPipeScope())
	}
}

// TestTofinoWireFormat reads the packed config field by field, without the
// generated code, against the field numbers of Stratum's bf.proto: that
// is what stratum_bfrt parses, whatever our .proto says.
func TestTofinoWireFormat(t *testing.T) {
	dir := copyTree(t, "bf-p4c")
	// Two profiles over two pipes each, as a program with per-pipe
	// programs compiles (pipe_scope splits the chip).
	if err := os.MkdirAll(filepath.Join(dir, "pipe1"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx1 := bytes.Replace(mustRead(t, filepath.Join(dir, "pipe", "context.json")), []byte(`"tables": []`), []byte(`"tables": [{"name": "pipe1.t"}]`), 1)
	bin1 := []byte{0xde, 0xad, 0xbe, 0xef}
	os.WriteFile(filepath.Join(dir, "pipe1", "context.json"), ctx1, 0o644)
	os.WriteFile(filepath.Join(dir, "pipe1", "tofino.bin"), bin1, 0o644)
	conf := filepath.Join(dir, "vpc_peering.conf")
	var c map[string]any
	json.Unmarshal(mustRead(t, conf), &c)
	prog := c["p4_devices"].([]any)[0].(map[string]any)["p4_programs"].([]any)[0].(map[string]any)
	prog["p4_pipelines"] = []any{
		map[string]any{"p4_pipeline_name": "pipe0", "context": "pipe/context.json", "config": "pipe/tofino.bin", "pipe_scope": []int{0, 1}},
		map[string]any{"p4_pipeline_name": "pipe1", "context": "pipe1/context.json", "config": "pipe1/tofino.bin", "pipe_scope": []int{2, 3}},
	}
	b, _ := json.Marshal(c)
	os.WriteFile(conf, b, 0o644)

	packed, err := Tofino{Conf: dir}.DeviceConfig()
	if err != nil {
		t.Fatal(err)
	}
	type profile struct {
		name            string
		context, binary []byte
		scope           []uint32
	}
	var name string
	var bfrt []byte
	var profiles []profile
	fields(t, packed, func(num protowire.Number, typ protowire.Type, v []byte) {
		switch num {
		case 1: // string p4_name = 1
			name = string(v)
		case 2: // bytes bfruntime_info = 2
			bfrt = v
		case 3: // repeated Profile profiles = 3
			var p profile
			fields(t, v, func(num protowire.Number, typ protowire.Type, v []byte) {
				switch num {
				case 1: // string profile_name = 1
					p.name = string(v)
				case 2: // bytes context = 2
					p.context = v
				case 3: // bytes binary = 3
					p.binary = v
				case 4: // repeated uint32 pipe_scope = 4, packed
					for len(v) > 0 {
						x, n := protowire.ConsumeVarint(v)
						if n < 0 {
							t.Fatal("bad pipe_scope")
						}
						p.scope = append(p.scope, uint32(x))
						v = v[n:]
					}
				default:
					t.Errorf("Profile has field %d, which Stratum's bf.proto does not", num)
				}
			})
			profiles = append(profiles, p)
		default:
			t.Errorf("BfPipelineConfig has field %d, which Stratum's bf.proto does not", num)
		}
	})
	want := []profile{
		{"pipe0", readFixture(t, "bf-p4c", "pipe", "context.json"), readFixture(t, "bf-p4c", "pipe", "tofino.bin"), []uint32{0, 1}},
		{"pipe1", ctx1, bin1, []uint32{2, 3}},
	}
	if name != "vpc_peering" || !bytes.Equal(bfrt, readFixture(t, "bf-p4c", "bfrt.json")) {
		t.Errorf("p4_name %q, bfruntime_info %d bytes; want vpc_peering and bfrt.json", name, len(bfrt))
	}
	if !slices.EqualFunc(profiles, want, func(a, b profile) bool {
		return a.name == b.name && bytes.Equal(a.context, b.context) && bytes.Equal(a.binary, b.binary) && slices.Equal(a.scope, b.scope)
	}) {
		t.Errorf("profiles on the wire differ from the compiler output: got %d, names %v", len(profiles), func() (n []string) {
			for _, p := range profiles {
				n = append(n, p.name)
			}
			return
		}())
	}
}

// fields walks the length-delimited fields of a message; any other wire
// type is an error, since every field of these messages is one.
func fields(t *testing.T, b []byte, f func(protowire.Number, protowire.Type, []byte)) {
	t.Helper()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType {
			t.Fatalf("field %d has wire type %d; every field here is length-delimited", num, typ)
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			t.Fatalf("field %d: %v", num, protowire.ParseError(n))
		}
		f(num, typ, v)
		b = b[n:]
	}
}

func TestTofinoErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, dir string)
		info   *p4configv1.P4Info
		want   string
	}{
		{"no input", nil, nil, "no compiler output given"},
		{"conf not JSON", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "vpc_peering.conf"), []byte("p4_devices:\n"), 0o644)
		}, nil, "is not a compiler .conf (JSON)"},
		{"no conf in dir", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "vpc_peering.conf"))
		}, nil, "no .conf in"},
		{"two confs", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "other.conf"), mustRead(t, filepath.Join(dir, "vpc_peering.conf")), 0o644)
		}, nil, "2 .conf files"},
		{"bfrt.json not JSON", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "bfrt.json"), []byte("{tables"), 0o644)
		}, nil, "bfrt.json: not a BF-Runtime schema (JSON)"},
		{"bfrt.json without tables", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "bfrt.json"), []byte(`{"schema_version": "1.0.0"}`), 0o644)
		}, nil, `no "tables"`},
		{"bfrt.json missing", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "bfrt.json"))
		}, nil, `bfrt-config: "bfrt.json" is neither in the .conf's directory`},
		{"context.json missing", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "pipe", "context.json"))
		}, nil, `pipeline pipe: context: "pipe/context.json" is neither in the .conf's directory`},
		{"no context key", func(t *testing.T, dir string) {
			editConf(t, filepath.Join(dir, "vpc_peering.conf"), func(_, pipe, _ map[string]any) { delete(pipe, "context") })
		}, nil, `pipeline pipe: no "context" (its context.json)`},
		{"context.json not JSON", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "pipe", "context.json"), []byte("\x00"), 0o644)
		}, nil, "not a context.json (JSON)"},
		{"context.json of another program", func(t *testing.T, dir string) {
			editConf(t, filepath.Join(dir, "vpc_peering.conf"), func(prog, _, _ map[string]any) { prog["program-name"] = "tna_exact_match" })
		}, nil, `compiled from program "vpc_peering", not "tna_exact_match"`},
		{"context.json of DPDK", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "pipe", "context.json"), readFixture(t, "p4c-dpdk", "pipe", "context.json"), 0o644)
		}, nil, `compiled for target "DPDK", not tofino or tofino2 or tofino3`},
		{"empty tofino.bin", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "pipe", "tofino.bin"), nil, 0o644)
		}, nil, "empty: not a tofino.bin"},
		{"no pipe_scope beside another profile", func(t *testing.T, dir string) {
			editConf(t, filepath.Join(dir, "vpc_peering.conf"), func(prog, pipe, _ map[string]any) {
				delete(pipe, "pipe_scope")
				other := map[string]any{"p4_pipeline_name": "pipe1", "context": pipe["context"], "config": pipe["config"], "pipe_scope": []int{3}}
				prog["p4_pipelines"] = []any{pipe, other}
			})
		}, nil, "pipeline pipe has an empty pipe_scope (every pipe) beside 1 other"},
		{"pipe 4", func(t *testing.T, dir string) {
			editConf(t, filepath.Join(dir, "vpc_peering.conf"), func(_, pipe, _ map[string]any) { pipe["pipe_scope"] = []int{4} })
		}, nil, "pipe 4 is not a Tofino pipe (0..3)"},
		{"pipe in two profiles", func(t *testing.T, dir string) {
			editConf(t, filepath.Join(dir, "vpc_peering.conf"), func(prog, pipe, _ map[string]any) {
				other := map[string]any{"p4_pipeline_name": "pipe1", "context": pipe["context"], "config": pipe["config"], "pipe_scope": []int{3}}
				prog["p4_pipelines"] = []any{pipe, other}
			})
		}, nil, "pipe 3 is in the scope of both pipeline pipe and pipe1"},
		{"every pipe beside another profile", func(t *testing.T, dir string) {
			editConf(t, filepath.Join(dir, "vpc_peering.conf"), func(prog, pipe, _ map[string]any) {
				pipe["pipe_scope"] = []int{}
				other := map[string]any{"p4_pipeline_name": "pipe1", "context": pipe["context"], "config": pipe["config"], "pipe_scope": []int{3}}
				prog["p4_pipelines"] = []any{pipe, other}
			})
		}, nil, "pipeline pipe has an empty pipe_scope (every pipe) beside 1 other"},
		{"profile name a path", func(t *testing.T, dir string) {
			editConf(t, filepath.Join(dir, "vpc_peering.conf"), func(_, pipe, _ map[string]any) { pipe["p4_pipeline_name"] = "../pipe" })
		}, nil, `"../pipe" is not a plain name`},
		{"two devices", func(t *testing.T, dir string) {
			var c map[string]any
			json.Unmarshal(mustRead(t, filepath.Join(dir, "vpc_peering.conf")), &c)
			d := c["p4_devices"].([]any)
			c["p4_devices"] = append(d, d[0])
			b, _ := json.Marshal(c)
			os.WriteFile(filepath.Join(dir, "vpc_peering.conf"), b, 0o644)
		}, nil, "has 2 p4_devices"},
		{"P4Info of another program", nil, fixtureP4Info(t, "VpcIngress.port_vnet", "SwitchIngress.forward"),
			"the P4Info's tables SwitchIngress.forward are not in bfrt.json"},
		{"P4Info named otherwise", nil, &p4configv1.P4Info{PkgInfo: &p4configv1.PkgInfo{Name: "fabric"}},
			`the P4Info is of program "fabric" (pkg_info.name), the compiler output of "vpc_peering"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := ""
			if tc.name != "no input" {
				in = copyTree(t, "bf-p4c")
			}
			if tc.break_ != nil {
				tc.break_(t, in)
			}
			_, err := Tofino{Conf: in, P4Info: tc.info}.DeviceConfig()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "tofino: ") {
				t.Errorf("got %v; want a tofino error with %q", err, tc.want)
			}
		})
	}
}

func TestDPDKRoundTrip(t *testing.T) {
	// p4c-dpdk --tdi-builder-conf writes absolute paths; the fixture's
	// are relative, as in a hand-written .conf. Both must pack the same.
	abs := copyTree(t, "p4c-dpdk")
	editConf(t, filepath.Join(abs, "vpc_peering.conf"), func(prog, pipe, _ map[string]any) {
		prog["bfrt-config"] = filepath.Join(abs, "bf-rt.json")
		pipe["context"] = filepath.Join(abs, "pipe", "context.json")
		pipe["config"] = filepath.Join(abs, "pipe", "vpc_peering.spec")
	})
	var configs [][]byte
	for _, in := range []string{"testdata/p4c-dpdk", abs} {
		b, err := DPDK{Conf: in, P4Info: fixtureP4Info(t, "VpcIngress.port_vnet")}.DeviceConfig()
		if err != nil {
			t.Fatalf("pack %s: %v", in, err)
		}
		configs = append(configs, b)
	}
	if !bytes.Equal(configs[0], configs[1]) {
		t.Error("relative and absolute paths pack differently")
	}
	got, err := ParseDPDKDeviceConfig(configs[0])
	if err != nil {
		t.Fatal(err)
	}
	want := &targetsv1.TdiPipelineConfig{
		P4Name:        "vpc_peering",
		BfruntimeInfo: readFixture(t, "p4c-dpdk", "bf-rt.json"),
		Profiles: []*targetsv1.BfPipelineConfig_Profile{{
			ProfileName: "pipe",
			Context:     readFixture(t, "p4c-dpdk", "pipe", "context.json"),
			Binary:      readFixture(t, "p4c-dpdk", "pipe", "vpc_peering.spec"),
			PipeScope:   []uint32{0},
		}},
		PacketIoConfig: &targetsv1.PacketIoConfig{Ports: []uint32{0, 1}, NbRxqs: 1, NbTxqs: 1},
	}
	if g, w := prototext.Format(got), prototext.Format(want); g != w {
		t.Errorf("unpacked:\n%s\nwant the compiler output:\n%s", g, w)
	}
	// packet_io_config is field 4, as in IPDK's tdi.proto.
	var sawPktio bool
	fields(t, configs[0], func(num protowire.Number, _ protowire.Type, v []byte) {
		if num == 4 {
			sawPktio = true
		}
	})
	if !sawPktio {
		t.Error("no field 4 (packet_io_config) on the wire")
	}
	// A Tofino device config is no DPDK one, and the other way round:
	// each names its own target's compiler output.
	if _, err := (Tofino{Conf: "testdata/p4c-dpdk"}).DeviceConfig(); err == nil || !strings.Contains(err.Error(), `compiled for target "DPDK"`) {
		t.Errorf("packing p4c-dpdk's output for Tofino = %v; want the context.json's target named", err)
	}
}

func TestDPDKErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, dir string)
		want   string
	}{
		{"spec not text", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "pipe", "vpc_peering.spec"), readFixture(t, "bf-p4c", "pipe", "tofino.bin"), 0o644)
		}, "not text: not a DPDK pipeline .spec"},
		{"spec without apply", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "pipe", "vpc_peering.spec"), []byte("struct ethernet_t {\n}\n"), 0o644)
		}, "no apply block"},
		{"spec missing", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "pipe", "vpc_peering.spec"))
		}, `pipeline pipe: config: "pipe/vpc_peering.spec" is neither in the .conf's directory`},
		{"context of Tofino", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "pipe", "context.json"), readFixture(t, "bf-p4c", "pipe", "context.json"), 0o644)
		}, `compiled for target "tofino", not DPDK`},
		{"no bfrt-config", func(t *testing.T, dir string) {
			editConf(t, filepath.Join(dir, "vpc_peering.conf"), func(prog, _, _ map[string]any) { delete(prog, "bfrt-config") })
		}, `program vpc_peering: no "bfrt-config"`},
		{"two pipelines", func(t *testing.T, dir string) {
			editConf(t, filepath.Join(dir, "vpc_peering.conf"), func(prog, pipe, _ map[string]any) {
				other := map[string]any{}
				for k, v := range pipe {
					other[k] = v
				}
				other["p4_pipeline_name"] = "pipe2"
				prog["p4_pipelines"] = []any{pipe, other}
			})
		}, "2 p4_pipelines; P4-DPDK runs exactly one"},
		{"duplicate pipeline", func(t *testing.T, dir string) {
			editConf(t, filepath.Join(dir, "vpc_peering.conf"), func(prog, pipe, _ map[string]any) { prog["p4_pipelines"] = []any{pipe, pipe} })
		}, `pipeline "pipe" appears twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyTree(t, "p4c-dpdk")
			tc.break_(t, dir)
			_, err := DPDK{Conf: dir}.DeviceConfig()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "dpdk: ") {
				t.Errorf("got %v; want a dpdk error with %q", err, tc.want)
			}
		})
	}
}

func TestParsePackedErrors(t *testing.T) {
	bmv2 := []byte(`{"pipelines": []}`)
	for _, tc := range []struct {
		name  string
		parse func([]byte) error
		in    []byte
		want  string
	}{
		{"tofino: BMv2 JSON", func(b []byte) error { _, err := ParseTofinoDeviceConfig(b); return err }, bmv2, "tofino: not a BfPipelineConfig"},
		{"tofino: empty", func(b []byte) error { _, err := ParseTofinoDeviceConfig(b); return err }, nil, "no p4_name"},
		{"dpdk: BMv2 JSON", func(b []byte) error { _, err := ParseDPDKDeviceConfig(b); return err }, bmv2, "dpdk: not a TDI BfPipelineConfig"},
		{"tofino: no profiles", func(b []byte) error { _, err := ParseTofinoDeviceConfig(b); return err },
			mustMarshal(t, &targetsv1.BfPipelineConfig{P4Name: "p", BfruntimeInfo: []byte(`{"tables": []}`)}), "device config of p has no profiles"},
		{"tofino: no binary", func(b []byte) error { _, err := ParseTofinoDeviceConfig(b); return err },
			mustMarshal(t, &targetsv1.BfPipelineConfig{P4Name: "p", BfruntimeInfo: []byte(`{"tables": []}`), Profiles: []*targetsv1.BfPipelineConfig_Profile{{ProfileName: "pipe", Context: []byte("{}")}}}),
			"profile pipe has no binary"},
	} {
		if err := tc.parse(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v; want %q", tc.name, err, tc.want)
		}
	}
}

func mustMarshal(t *testing.T, m *targetsv1.BfPipelineConfig) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
