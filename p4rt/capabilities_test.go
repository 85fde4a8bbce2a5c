package p4rt

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/p4mesh/p4mesh/p4"
)

// capsP4Info is a P4Info shaped as p4c writes one, with ports of the given
// header field text (bitwidth, or type_name) and controller-header
// annotations.
func capsP4Info(t *testing.T, arch, portField, annotations, typeInfo string) *p4configv1.P4Info {
	t.Helper()
	text := `
pkg_info { arch: "` + arch + `" }
tables { preamble { id: 33554433 name: "VpcIngress.port_vnet" alias: "port_vnet" } size: 1024 }
tables { preamble { id: 33554434 name: "VpcIngress.vnet_route" alias: "vnet_route" } size: 16384 }
tables { preamble { id: 33554435 name: "VpcIngress.unsized" alias: "unsized" } }
action_profiles { preamble { id: 285212673 name: "VpcIngress.gateway_selector" alias: "gateway_selector" } table_ids: 33554434 with_selector: true size: 1024 max_group_size: 16 }
controller_packet_metadata {
  preamble { id: 80671331 name: "packet_in" alias: "packet_in" annotations: "@controller_header(\"packet_in\")" ` + annotations + ` }
  metadata { id: 1 name: "ingress_port" ` + portField + ` }
}
controller_packet_metadata {
  preamble { id: 75327753 name: "packet_out" alias: "packet_out" annotations: "@controller_header(\"packet_out\")" }
  metadata { id: 1 name: "egress_port" ` + portField + ` }
}
` + typeInfo
	info := &p4configv1.P4Info{}
	if err := prototext.Unmarshal([]byte(text), info); err != nil {
		t.Fatal(err)
	}
	return info
}

const tnaPortType = `type_info { new_types { key: "FabricPortId_t" value { translated_type { uri: "tna/PortId_t" sdn_bitwidth: 32 } } } }`

func TestCapabilitiesFromP4Info(t *testing.T) {
	c, err := FromP4Info(capsP4Info(t, "v1model", "bitwidth: 9", `annotations: "@p4mesh_cpu_port(255)"`, ""))
	if err != nil {
		t.Fatal(err)
	}
	if c.PortBits != 9 || c.PortTranslation != "" || !c.HasCPUPort || c.CPUPort != 255 || !c.OneShotSelectors {
		t.Errorf("caps = %+v; want 9-bit untranslated ports, CPU port 255, one-shot", c)
	}
	if c.TableSize["VpcIngress.vnet_route"] != 16384 || c.ProfileSize["VpcIngress.gateway_selector"] != 1024 || c.MaxGroupSize["VpcIngress.gateway_selector"] != 16 {
		t.Errorf("sizes = %v %v %v; want the P4Info's", c.TableSize, c.ProfileSize, c.MaxGroupSize)
	}
	for _, tc := range []struct {
		port uint64
		want string
	}{{3, ""}, {511, ""}, {255, "is the CPU port"}, {512, "does not fit the pipeline's 9-bit ports"}} {
		err := c.CheckPort(tc.port)
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckPort(%d) = %v; want %q", tc.port, err, tc.want)
		}
	}

	// Hex works too, and without the annotation there is no CPU port.
	c, err = FromP4Info(capsP4Info(t, "v1model", "bitwidth: 9", `annotations: "@p4mesh_cpu_port(0x1FE)"`, ""))
	if err != nil || c.CPUPort != 510 {
		t.Errorf("@p4mesh_cpu_port(0x1FE) = %+v, %v; want CPU port 510", c, err)
	}
	c, err = FromP4Info(capsP4Info(t, "v1model", "bitwidth: 9", `annotations: "@p4mesh_cpu_port_note(\"x\")"`, ""))
	if err != nil || c.HasCPUPort || c.CheckPort(255) != nil {
		t.Errorf("without the annotation: %+v, %v; want no CPU port", c, err)
	}
}

// TestCapabilitiesEmbedded reads the pipeline p4mesh ships: every table's
// budget is its P4Info size, and ports are as wide as its packet_out says.
func TestCapabilitiesEmbedded(t *testing.T) {
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bmv2", "p4mesh"} {
		tp, err := LookupTarget(name)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tp.Capabilities(info)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, tb := range info.GetTables() {
			if got := c.TableSize[tb.GetPreamble().GetName()]; got != tb.GetSize() {
				t.Errorf("%s: budget of %s = %d; want its size %d", name, tb.GetPreamble().GetName(), got, tb.GetSize())
			}
		}
		for _, h := range info.GetControllerPacketMetadata() {
			for _, m := range h.GetMetadata() {
				if strings.HasSuffix(m.GetName(), "_port") && m.GetBitwidth() != c.PortBits {
					t.Errorf("%s: port width %d; %s.%s is %d", name, c.PortBits, h.GetPreamble().GetName(), m.GetName(), m.GetBitwidth())
				}
			}
		}
		if !c.OneShotSelectors {
			t.Errorf("%s: no one-shot selectors; PI and p4mesh-switch take them", name)
		}
	}
}

func TestCapabilitiesTargets(t *testing.T) {
	tna := capsP4Info(t, "tna", `bitwidth: 9 type_name { name: "FabricPortId_t" }`, "", tnaPortType)
	tofino, err := LookupTarget("tofino")
	if err != nil {
		t.Fatal(err)
	}
	c, err := tofino.Capabilities(tna)
	if err != nil {
		t.Fatal(err)
	}
	// Stratum's translation: 32-bit SDN port numbers, its own CPU port
	// number, and members and groups instead of one-shot.
	if c.PortBits != 32 || c.PortTranslation != "tna/PortId_t" || c.CPUPort != 0xFFFFFFFD || !c.HasCPUPort || c.OneShotSelectors || c.Target != "tofino" {
		t.Errorf("tofino caps = %+v", c)
	}
	if err := c.CheckPort(260); err != nil {
		t.Errorf("an SDN port above 511: %v", err)
	}
	// The same program untranslated writes the chip's 9-bit ports.
	c, err = tofino.Capabilities(capsP4Info(t, "tna", "bitwidth: 9", "", ""))
	if err != nil || c.PortBits != 9 || c.HasCPUPort {
		t.Errorf("untranslated TNA = %+v, %v; want 9-bit ports, no CPU port known", c, err)
	}
	dpdk, _ := LookupTarget("dpdk")
	c, err = dpdk.Capabilities(capsP4Info(t, "pna", "bitwidth: 32", "", ""))
	if err != nil || c.PortBits != 32 || c.OneShotSelectors {
		t.Errorf("dpdk caps = %+v, %v; want 32-bit PNA ports, no one-shot", c, err)
	}

	for _, tc := range []struct {
		target string
		info   *p4configv1.P4Info
		want   string
	}{
		{"bmv2", tna, `the P4Info is for "tna", and bmv2 runs v1model programs`},
		{"tofino", capsP4Info(t, "v1model", "bitwidth: 9", "", ""), `the P4Info is for "v1model", and tofino runs tna or t2na programs`},
		{"dpdk", capsP4Info(t, "pna", `bitwidth: 32 type_name { name: "FabricPortId_t" }`, "", tnaPortType), "translated as tna/PortId_t, which dpdk does not translate"},
	} {
		tp, err := LookupTarget(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tp.Capabilities(tc.info); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v; want %q", tc.target, err, tc.want)
		}
	}
	if _, err := LookupTarget("tofino3"); err == nil || !strings.Contains(err.Error(), "bmv2, p4mesh, tofino, dpdk") {
		t.Errorf("LookupTarget(tofino3) = %v; want the known targets listed", err)
	}
}

func TestCapabilitiesP4InfoErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		info *p4configv1.P4Info
		want string
	}{
		{"nil", nil, "no P4Info"},
		{"no controller headers", &p4configv1.P4Info{PkgInfo: &p4configv1.PkgInfo{Arch: "v1model"}}, "does not say how wide a port is"},
		{"bad annotation", capsP4Info(t, "v1model", "bitwidth: 9", `annotations: "@p4mesh_cpu_port(cpu)"`, ""), "annotation @p4mesh_cpu_port(cpu): want @p4mesh_cpu_port(N)"},
		{"CPU port too wide", capsP4Info(t, "v1model", "bitwidth: 9", `annotations: "@p4mesh_cpu_port(512)"`, ""), "CPU port 512 does not fit the 9-bit port"},
		{"undeclared type", capsP4Info(t, "tna", `bitwidth: 9 type_name { name: "PortId_t" }`, "", ""), "has type PortId_t, which the P4Info's type_info does not declare"},
		{"string ports", capsP4Info(t, "tna", `type_name { name: "P" }`, "", `type_info { new_types { key: "P" value { translated_type { uri: "u" sdn_string {} } } } }`), "translated to strings"},
		{"zero width", capsP4Info(t, "v1model", "", "", ""), "is 0 bits wide"},
	} {
		if _, err := FromP4Info(tc.info); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v; want %q", tc.name, err, tc.want)
		}
	}
	// packet_in and packet_out must agree.
	info := capsP4Info(t, "v1model", "bitwidth: 9", "", "")
	info.ControllerPacketMetadata[1].Metadata[0].Bitwidth = 16
	if _, err := FromP4Info(info); err == nil || !strings.Contains(err.Error(), "packet_in.ingress_port (9 bits) and packet_out.egress_port (16 bits) disagree") {
		t.Errorf("disagreeing headers: %v", err)
	}
}

func TestCheckBudget(t *testing.T) {
	c, err := FromP4Info(capsP4Info(t, "v1model", "bitwidth: 9", "", ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckBudget(map[string]int{"VpcIngress.port_vnet": 1024, "VpcIngress.unsized": 1 << 20}, map[string]int{"VpcIngress.gateway_selector": 1024}); err != nil {
		t.Errorf("at the sizes exactly (and unsized): %v", err)
	}
	err = c.CheckBudget(
		map[string]int{"VpcIngress.vnet_route": 16385, "VpcIngress.port_vnet": 1025},
		map[string]int{"VpcIngress.gateway_selector": 2000})
	var be *BudgetError
	if !errors.As(err, &be) {
		t.Fatalf("over budget = %v; want a *BudgetError", err)
	}
	want := []TableOverBudget{
		{"VpcIngress.gateway_selector", 2000, 1024, true},
		{"VpcIngress.port_vnet", 1025, 1024, false},
		{"VpcIngress.vnet_route", 16385, 16384, false},
	}
	if len(be.Over) != len(want) {
		t.Fatalf("over = %+v; want %+v", be.Over, want)
	}
	for i := range want {
		if be.Over[i] != want[i] {
			t.Errorf("over[%d] = %+v; want %+v", i, be.Over[i], want[i])
		}
	}
	if !strings.Contains(err.Error(), "VpcIngress.port_vnet needs 1025 entries, its size is 1024") ||
		!strings.Contains(err.Error(), "VpcIngress.gateway_selector needs 2000 members") {
		t.Errorf("message %q does not say what is over", err)
	}
	if err := c.CheckBudget(map[string]int{"VpcIngress.nope": 1}, nil); err == nil || !strings.Contains(err.Error(), `no table "VpcIngress.nope"`) {
		t.Errorf("unknown table: %v", err)
	}
}

func TestTargetDeviceConfigChecks(t *testing.T) {
	tofinoCfg, err := Tofino{Conf: "testdata/bf-p4c"}.DeviceConfig()
	if err != nil {
		t.Fatal(err)
	}
	dpdkCfg, err := DPDK{Conf: "testdata/p4c-dpdk"}.DeviceConfig()
	if err != nil {
		t.Fatal(err)
	}
	bmv2Cfg := []byte(`{"header_types": [], "pipelines": [{"name": "ingress"}]}`)
	for _, tc := range []struct {
		target string
		cfg    []byte
		ok     bool
	}{
		{"bmv2", bmv2Cfg, true}, {"bmv2", tofinoCfg, false},
		{"tofino", tofinoCfg, true}, {"tofino", bmv2Cfg, false},
		{"dpdk", dpdkCfg, true}, {"dpdk", bmv2Cfg, false},
	} {
		tp, _ := LookupTarget(tc.target)
		if err := tp.CheckDeviceConfig(tc.cfg, nil); (err == nil) != tc.ok {
			t.Errorf("%s: check = %v; want ok %v", tc.target, err, tc.ok)
		}
	}
	// With the P4Info it will be pushed with, the config must be of the
	// same program.
	same, other := fixtureP4Info(t, "VpcIngress.port_vnet"), fixtureP4Info(t, "SwitchIngress.forward")
	for target, cfg := range map[string][]byte{"tofino": tofinoCfg, "dpdk": dpdkCfg} {
		tp, _ := LookupTarget(target)
		if err := tp.CheckDeviceConfig(cfg, same); err != nil {
			t.Errorf("%s with its P4Info: %v", target, err)
		}
		if err := tp.CheckDeviceConfig(cfg, other); err == nil || !strings.Contains(err.Error(), target+": the P4Info's tables SwitchIngress.forward are not in bfrt.json") {
			t.Errorf("%s with another program's P4Info: %v", target, err)
		}
	}
	if tp, _ := LookupTarget("p4mesh"); tp.CheckDeviceConfig != nil {
		t.Error("p4mesh-switch takes no device config")
	}
}

func TestBMv2DeviceConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		content, want string
	}{
		{`{"pipelines": [{"name": "ingress"}]}`, ""},
		{`pipelines:`, "bmv2: not JSON"},
		{`{"header_types": []}`, `bmv2: no "pipelines": not a p4c-bm2-ss output`},
	} {
		path := dir + "/prog.json"
		if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := BMv2{JSONPath: path}.DeviceConfig()
		switch {
		case tc.want == "" && (err != nil || string(b) != tc.content):
			t.Errorf("%s: %q, %v; want the file", tc.content, b, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path)):
			t.Errorf("%s: %v; want %q naming %s", tc.content, err, tc.want, path)
		}
	}
}

// TestCapabilitiesEachArch reads the three programs p4mesh ships with the
// targets that run them: what differs is in each P4Info, and nothing else.
func TestCapabilitiesEachArch(t *testing.T) {
	tests := []struct {
		arch, target string
		portBits     int32
		translation  string
		cpuPort      uint64
		oneShot      bool
		maxGroup     int32 // lb_selector's max_group_size
	}{
		{"v1model", "bmv2", 9, "", 255, true, 0},
		{"v1model", "p4mesh", 9, "", 255, true, 0},
		{"tna", "tofino", 32, "tna/PortId_t", 0xFFFFFFFD, false, 128},
		{"pna", "dpdk", 32, "", 255, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.arch+"/"+tc.target, func(t *testing.T) {
			info, err := p4.P4InfoFor(tc.arch)
			if err != nil {
				t.Fatal(err)
			}
			tp, err := LookupTarget(tc.target)
			if err != nil {
				t.Fatal(err)
			}
			c, err := tp.Capabilities(info)
			if err != nil {
				t.Fatal(err)
			}
			if c.PortBits != tc.portBits || c.PortTranslation != tc.translation || !c.HasCPUPort || c.CPUPort != tc.cpuPort ||
				c.OneShotSelectors != tc.oneShot || c.Arch != tc.arch {
				t.Errorf("caps = %+v", c)
			}
			if err := c.CheckPort(tc.cpuPort); err == nil {
				t.Errorf("CheckPort(CPU port %d): no error", tc.cpuPort)
			}
			if err := c.CheckPort(1); err != nil {
				t.Errorf("CheckPort(1): %v", err)
			}
			if got := c.MaxGroupSize[profileName(info, "lb_selector")]; got != tc.maxGroup {
				t.Errorf("lb_selector max_group_size %d; want %d", got, tc.maxGroup)
			}
			for _, tb := range info.GetTables() {
				if got := c.TableSize[tb.GetPreamble().GetName()]; got != tb.GetSize() || got == 0 {
					t.Errorf("budget of %s = %d; want its size %d", tb.GetPreamble().GetName(), got, tb.GetSize())
				}
			}
			// Every other target refuses the architecture.
			for _, other := range TargetNames() {
				otp, _ := LookupTarget(other)
				if slices.Contains(otp.Archs, tc.arch) {
					continue
				}
				if _, err := otp.Capabilities(info); err == nil {
					t.Errorf("%s takes the %s program", other, tc.arch)
				}
			}
		})
	}
}

func profileName(info *p4configv1.P4Info, alias string) string {
	for _, p := range info.GetActionProfiles() {
		if p.GetPreamble().GetAlias() == alias {
			return p.GetPreamble().GetName()
		}
	}
	return ""
}
