package p4rt

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
)

// Capabilities is what the switch running a pipeline can take, as far as a
// writer of its tables must respect it. Most of it is the pipeline's own,
// read from its P4Info (FromP4Info); the rest is the target's, from its
// TargetProfile (TargetProfile.Capabilities). A compiler of table entries
// asks these fields and methods, never the target's name: two targets
// with the same capabilities get the same entries.
type Capabilities struct {
	// Target names the TargetProfile applied; empty for FromP4Info alone.
	Target string
	// Arch is the P4Info's architecture (pkg_info.arch: v1model, tna,
	// t2na, pna, psa).
	Arch string
	// PortBits is the width of a port number as P4Runtime carries it: the
	// width of the packet_out header's egress_port (or packet_in's
	// ingress_port), or the translated width when that field's type is
	// @p4runtime_translation'd.
	PortBits int32
	// PortTranslation is the URI of the port type's P4Runtime translation
	// ("tna/PortId_t"): the server maps the numbers the controller writes
	// (Stratum's singleton port ids) to the data plane's. Empty when the
	// controller writes the data plane's own numbers.
	PortTranslation string
	// CPUPort is the port number, as P4Runtime carries it, that sends a
	// packet to the controller; meaningful only when HasCPUPort.
	CPUPort    uint64
	HasCPUPort bool
	// TableSize is each table's P4Info size by name: the budget of
	// entries a writer may hold in it (CheckBudget).
	TableSize map[string]int64
	// ProfileSize and MaxGroupSize are each action profile's P4Info size
	// (members) and max_group_size (members of one group; 0 is no limit
	// but size), by name.
	ProfileSize  map[string]int64
	MaxGroupSize map[string]int32
	// OneShotSelectors says whether the target takes action selectors
	// programmed one-shot (TableAction.action_profile_action_set). The
	// spec makes one-shot mandatory; Stratum's stratum_bfrt and IPDK's
	// infrap4d answer it UNIMPLEMENTED. Without it, program members and
	// groups.
	OneShotSelectors bool
}

// CPUPortAnnotation is the P4 annotation by which a program states its CPU
// port, on its packet_in or packet_out header:
//
//	@controller_header("packet_in") @p4mesh_cpu_port(255)
//	header packet_in_t { ... }
//
// p4c copies a controller header's annotations into the P4Info, which
// otherwise cannot say which port is the CPU's (it is a constant, or a
// switch flag such as simple_switch_grpc --cpu-port).
const CPUPortAnnotation = "p4mesh_cpu_port"

var cpuPortRE = regexp.MustCompile(`^@` + CPUPortAnnotation + `\(\s*([0-9]+|0x[0-9a-fA-F]+)\s*\)$`)

// FromP4Info reads the pipeline's capabilities from its P4Info, for a
// target that implements the P4Runtime spec whole (one-shot selectors
// included). Errors name what the P4Info lacks or contradicts.
func FromP4Info(info *p4configv1.P4Info) (*Capabilities, error) {
	if info == nil {
		return nil, errors.New("capabilities: no P4Info")
	}
	c := &Capabilities{
		Arch:             info.GetPkgInfo().GetArch(),
		TableSize:        map[string]int64{},
		ProfileSize:      map[string]int64{},
		MaxGroupSize:     map[string]int32{},
		OneShotSelectors: true,
	}
	for _, t := range info.GetTables() {
		c.TableSize[t.GetPreamble().GetName()] = t.GetSize()
	}
	for _, p := range info.GetActionProfiles() {
		c.ProfileSize[p.GetPreamble().GetName()] = p.GetSize()
		c.MaxGroupSize[p.GetPreamble().GetName()] = p.GetMaxGroupSize()
	}
	if err := c.readPorts(info); err != nil {
		return nil, fmt.Errorf("capabilities: %w", err)
	}
	return c, nil
}

// readPorts sets the port width, translation and CPU port from the
// controller headers: the one place a P4Info types a port as the
// controller sees it.
func (c *Capabilities) readPorts(info *p4configv1.P4Info) error {
	type portField struct {
		header, field string
		md            *p4configv1.ControllerPacketMetadata_Metadata
	}
	var ports []portField
	for _, h := range info.GetControllerPacketMetadata() {
		want := map[string]string{"packet_out": "egress_port", "packet_in": "ingress_port"}[h.GetPreamble().GetName()]
		for _, m := range h.GetMetadata() {
			if want != "" && m.GetName() == want {
				ports = append(ports, portField{h.GetPreamble().GetName(), m.GetName(), m})
			}
		}
		for _, a := range h.GetPreamble().GetAnnotations() {
			if name, _, _ := strings.Cut(a, "("); strings.TrimSpace(name) != "@"+CPUPortAnnotation {
				continue
			}
			m := cpuPortRE.FindStringSubmatch(a)
			if m == nil {
				return fmt.Errorf("%s: annotation %s: want @%s(N)", h.GetPreamble().GetName(), a, CPUPortAnnotation)
			}
			p, err := strconv.ParseUint(m[1], 0, 64)
			if err != nil {
				return fmt.Errorf("%s: annotation %s: %w", h.GetPreamble().GetName(), a, err)
			}
			if c.HasCPUPort && c.CPUPort != p {
				return fmt.Errorf("the controller headers disagree on the CPU port: %d and %d", c.CPUPort, p)
			}
			c.CPUPort, c.HasCPUPort = p, true
		}
	}
	if len(ports) == 0 {
		return errors.New("no packet_out egress_port or packet_in ingress_port: the P4Info does not say how wide a port is")
	}
	for i, p := range ports {
		bits, uri := p.md.GetBitwidth(), ""
		if tn := p.md.GetTypeName().GetName(); tn != "" {
			nt, ok := info.GetTypeInfo().GetNewTypes()[tn]
			if !ok {
				return fmt.Errorf("%s.%s has type %s, which the P4Info's type_info does not declare", p.header, p.field, tn)
			}
			if tr := nt.GetTranslatedType(); tr != nil {
				if _, ok := tr.GetSdnType().(*p4configv1.P4NewTypeTranslation_SdnString_); ok {
					return fmt.Errorf("%s.%s is translated to strings (%s); p4mesh numbers ports", p.header, p.field, tr.GetUri())
				}
				bits, uri = tr.GetSdnBitwidth(), tr.GetUri()
			}
		}
		if bits <= 0 || bits > 64 {
			return fmt.Errorf("%s.%s is %d bits wide; a port number is 1 to 64", p.header, p.field, bits)
		}
		if i > 0 && (bits != c.PortBits || uri != c.PortTranslation) {
			return fmt.Errorf("%s.%s (%d bits%s) and %s.%s (%d bits%s) disagree on what a port is",
				ports[0].header, ports[0].field, c.PortBits, via(c.PortTranslation), p.header, p.field, bits, via(uri))
		}
		c.PortBits, c.PortTranslation = bits, uri
	}
	if c.HasCPUPort && c.PortTranslation == "" && c.PortBits < 64 && c.CPUPort >= 1<<c.PortBits {
		return fmt.Errorf("CPU port %d does not fit the %d-bit port", c.CPUPort, c.PortBits)
	}
	return nil
}

func via(uri string) string {
	if uri == "" {
		return ""
	}
	return ", translated as " + uri
}

// CheckPort checks that p can be written as a port on this target, for an
// endpoint or an uplink: it fits the port width and is not the CPU port.
func (c *Capabilities) CheckPort(p uint64) error {
	if c.PortBits < 64 && p >= 1<<c.PortBits {
		return fmt.Errorf("port %d does not fit the pipeline's %d-bit ports", p, c.PortBits)
	}
	if c.HasCPUPort && p == c.CPUPort {
		return fmt.Errorf("port %d is the CPU port", p)
	}
	return nil
}

// BudgetError is CheckBudget's error: the tables that would hold more
// entries than their size. A caller may branch on it (errors.As) to spill
// entries rather than fail.
type BudgetError struct {
	// Over lists the tables over budget, by name.
	Over []TableOverBudget
}

// TableOverBudget is one table over its budget.
type TableOverBudget struct {
	Table       string
	Want, Size  int64
	ProfileSize bool // an action profile's members rather than a table's entries
}

func (e *BudgetError) Error() string {
	var parts []string
	for _, o := range e.Over {
		what := "entries"
		if o.ProfileSize {
			what = "members"
		}
		parts = append(parts, fmt.Sprintf("%s needs %d %s, its size is %d", o.Table, o.Want, what, o.Size))
	}
	return "over the pipeline's table sizes: " + strings.Join(parts, "; ")
}

// CheckBudget checks counts of entries (by table name) and of members (by
// action profile name) against the P4Info's sizes, and returns a
// *BudgetError naming every one over. A name the P4Info does not have is
// an error too: a count for a table that does not exist is a bug. A size
// of 0 (p4c's "no size given") is no limit.
func (c *Capabilities) CheckBudget(entries, members map[string]int) error {
	var over []TableOverBudget
	check := func(counts map[string]int, sizes map[string]int64, profile bool) error {
		for name, n := range counts {
			size, ok := sizes[name]
			if !ok {
				kind := "table"
				if profile {
					kind = "action profile"
				}
				return fmt.Errorf("budget: the P4Info has no %s %q", kind, name)
			}
			if size > 0 && int64(n) > size {
				over = append(over, TableOverBudget{Table: name, Want: int64(n), Size: size, ProfileSize: profile})
			}
		}
		return nil
	}
	if err := check(entries, c.TableSize, false); err != nil {
		return err
	}
	if err := check(members, c.ProfileSize, true); err != nil {
		return err
	}
	if len(over) == 0 {
		return nil
	}
	sort.Slice(over, func(i, j int) bool { return over[i].Table < over[j].Table })
	return &BudgetError{Over: over}
}

// TargetProfile is what a kind of target adds to a pipeline's
// capabilities and how its device config looks: the one place p4mesh
// knows a target by name.
type TargetProfile struct {
	// Name is the --target name ("tofino").
	Name string
	// Server names the P4Runtime server, for messages and docs.
	Server string
	// Archs are the P4Info architectures (pkg_info.arch) it runs.
	Archs []string
	// OneShotSelectors: see Capabilities.OneShotSelectors.
	OneShotSelectors bool
	// TranslatedCPUPort is the CPU port as P4Runtime carries it when the
	// port type is translated, by translation URI: Stratum numbers it
	// kSdnCpuPortId (stratum/hal/lib/common/constants.h) and maps it to
	// the chip's PCIe CPU port (bfrt_p4runtime_translator.cc).
	TranslatedCPUPort map[string]uint64
	// CheckDeviceConfig checks a packed device config for this target
	// and, when info is not nil, that both are of one program: a switch
	// takes a push of a P4Info and a device config of two programs, and
	// then fails or misplaces every write. Nil when the target takes no
	// device config (p4mesh-switch).
	CheckDeviceConfig func(cfg []byte, info *p4configv1.P4Info) error
}

// stratumSDNCPUPort is Stratum's kSdnCpuPortId.
const stratumSDNCPUPort = 0xFFFFFFFD

var targetProfiles = []TargetProfile{
	{
		Name: "bmv2", Server: "BMv2 simple_switch_grpc (PI)", Archs: []string{"v1model"},
		OneShotSelectors:  true,
		CheckDeviceConfig: func(b []byte, _ *p4configv1.P4Info) error { return checkBMv2JSON(b) },
	},
	{
		Name: "p4mesh", Server: "p4mesh-switch", Archs: []string{"v1model"},
		OneShotSelectors: true,
	},
	{
		// bfrt_table_manager.cc BuildTableData: kActionProfileActionSet is
		// ERR_UNIMPLEMENTED.
		Name: "tofino", Server: "Stratum stratum_bfrt", Archs: []string{"tna", "t2na"},
		OneShotSelectors:  false,
		TranslatedCPUPort: map[string]uint64{"tna/PortId_t": stratumSDNCPUPort},
		CheckDeviceConfig: func(b []byte, info *p4configv1.P4Info) error {
			c, err := ParseTofinoDeviceConfig(b)
			if err != nil {
				return err
			}
			if err := checkP4InfoAgainstBfrt(info, c.GetP4Name(), c.GetBfruntimeInfo()); err != nil {
				return fmt.Errorf("tofino: %w", err)
			}
			return nil
		},
	},
	{
		// ipdk-io/stratum-dev tdi_table_manager.cc: kActionProfileActionSet
		// is ERR_UNIMPLEMENTED, as in Stratum.
		Name: "dpdk", Server: "IPDK infrap4d (P4-DPDK)", Archs: []string{"pna", "psa"},
		OneShotSelectors: false,
		CheckDeviceConfig: func(b []byte, info *p4configv1.P4Info) error {
			c, err := ParseDPDKDeviceConfig(b)
			if err != nil {
				return err
			}
			if err := checkP4InfoAgainstBfrt(info, c.GetP4Name(), c.GetBfruntimeInfo()); err != nil {
				return fmt.Errorf("dpdk: %w", err)
			}
			return nil
		},
	},
}

// TargetNames lists the targets p4rt knows, for flags' help.
func TargetNames() []string {
	var n []string
	for _, p := range targetProfiles {
		n = append(n, p.Name)
	}
	return n
}

// LookupTarget returns the profile of the named target.
func LookupTarget(name string) (TargetProfile, error) {
	for _, p := range targetProfiles {
		if p.Name == name {
			// A copy: the caller may keep or change it.
			p.Archs = slices.Clone(p.Archs)
			p.TranslatedCPUPort = maps.Clone(p.TranslatedCPUPort)
			return p, nil
		}
	}
	return TargetProfile{}, fmt.Errorf("unknown target %q: want one of %s", name, strings.Join(TargetNames(), ", "))
}

// Capabilities reads the pipeline's capabilities from its P4Info and
// narrows them to the target's: it refuses a P4Info of an architecture
// the target does not run, and a translated port type the target does
// not translate.
func (tp TargetProfile) Capabilities(info *p4configv1.P4Info) (*Capabilities, error) {
	c, err := FromP4Info(info)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(tp.Archs, c.Arch) {
		return nil, fmt.Errorf("capabilities: the P4Info is for %q, and %s runs %s programs", c.Arch, tp.Name, strings.Join(tp.Archs, " or "))
	}
	c.Target = tp.Name
	c.OneShotSelectors = c.OneShotSelectors && tp.OneShotSelectors
	if c.PortTranslation != "" {
		cpu, ok := tp.TranslatedCPUPort[c.PortTranslation]
		if !ok {
			return nil, fmt.Errorf("capabilities: the P4Info's ports are translated as %s, which %s does not translate", c.PortTranslation, tp.Name)
		}
		// With translation the controller writes the server's numbers;
		// a CPU port the program annotates is the chip's, not those.
		c.CPUPort, c.HasCPUPort = cpu, true
	}
	return c, nil
}
