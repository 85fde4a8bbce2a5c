package p4rt

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/targetsv1"
)

// Tofino is the target config of Stratum's stratum_bfrt on Intel Tofino:
// the serialized BfPipelineConfig (stratum/hal/lib/barefoot/bf.proto) that
// Stratum's bf_pipeline_builder makes from bf-p4c's outputs, and the only
// format stratum_bfrt parses (bf_pipeline_utils.cc, ExtractBfPipelineConfig).
//
// bf-p4c -o OUT writes, and Conf names:
//
//	OUT/<program>.conf             the manifest: program-name, bfrt-config,
//	                               p4_pipelines[{p4_pipeline_name, context,
//	                               config, pipe_scope}]
//	OUT/bfrt.json                  the BF-Runtime schema ("bfrt-config")
//	OUT/<pipe>/context.json        per pipeline profile ("context")
//	OUT/<pipe>/tofino.bin          per profile ("config"; tofino2.bin on T2)
//
// A relative path in the .conf is read from the .conf's directory, else
// from the working directory. Stratum's legacy packed format (name, tofino.bin and
// context.json, each after a little-endian uint32 length) is not made: it
// was the PI-based stratum_bf's, which Stratum removed in 2022 (commit
// b951c5d1, "Remove Stratum-bf"); stratum_bfrt refuses it.
type Tofino struct {
	// Conf is bf-p4c's .conf, or the output directory holding it.
	Conf string
	// P4Info, when set, is the P4Info the config will be pushed with; it
	// must be of the same program (its tables in bfrt.json).
	P4Info *p4configv1.P4Info
}

// tofinoMaxPipes is how many pipes a Tofino has at most: Stratum accepts a
// profile's scope of up to the SDE's MAX_P4_PIPELINES (bf_sde_wrapper.cc
// AddDevice) and maps recirculation ports for kTnaMaxNumPipes, both 4.
const tofinoMaxPipes = 4

var tofinoFlavor = compilerFlavor{
	target:   "tofino",
	compiler: "bf-p4c",
	binary:   "tofino.bin",
	contexts: []string{"tofino", "tofino2", "tofino3"},
	checkBinary: func(b []byte) error {
		if len(b) == 0 {
			return errors.New("empty: not a tofino.bin")
		}
		return nil
	},
}

// Name implements Target.
func (Tofino) Name() string { return "tofino" }

// DeviceConfig implements Target: it reads bf-p4c's outputs, checks them,
// and returns them as a serialized BfPipelineConfig.
func (t Tofino) DeviceConfig() ([]byte, error) {
	p, err := loadCompilerOutput(t.Conf, tofinoFlavor)
	if err != nil {
		return nil, err
	}
	if err := checkP4InfoAgainstBfrt(t.P4Info, p.name, p.bfrt); err != nil {
		return nil, fmt.Errorf("tofino: %s: %w", p.conf, err)
	}
	if err := checkPipeScopes(p.pipes); err != nil {
		return nil, fmt.Errorf("tofino: %s: %w", p.conf, err)
	}
	msg := &targetsv1.BfPipelineConfig{P4Name: p.name, BfruntimeInfo: p.bfrt}
	for _, pipe := range p.pipes {
		msg.Profiles = append(msg.Profiles, &targetsv1.BfPipelineConfig_Profile{
			ProfileName: pipe.name, Context: pipe.context, Binary: pipe.binary, PipeScope: pipe.scope,
		})
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(msg)
}

// checkPipeScopes checks that the profiles share out the pipes: each pipe
// exists and runs one profile. An empty scope means every pipe to the
// SDE, so only a lone profile may have one.
func checkPipeScopes(pipes []compiledPipe) error {
	owner := map[uint32]string{}
	for _, p := range pipes {
		if len(p.scope) == 0 && len(pipes) > 1 {
			return fmt.Errorf("pipeline %s has an empty pipe_scope (every pipe) beside %d other pipelines", p.name, len(pipes)-1)
		}
		if len(p.scope) > tofinoMaxPipes {
			return fmt.Errorf("pipeline %s: pipe_scope lists %d pipes; a Tofino has at most %d", p.name, len(p.scope), tofinoMaxPipes)
		}
		for _, s := range p.scope {
			if s >= tofinoMaxPipes {
				return fmt.Errorf("pipeline %s: pipe %d is not a Tofino pipe (0..%d)", p.name, s, tofinoMaxPipes-1)
			}
			if o, ok := owner[s]; ok {
				return fmt.Errorf("pipe %d is in the scope of both pipeline %s and %s", s, o, p.name)
			}
			owner[s] = p.name
		}
	}
	return nil
}

// ParseTofinoDeviceConfig decodes a Tofino device config (a serialized
// BfPipelineConfig) and checks it has what stratum_bfrt loads: a program
// name, a bfrt.json and at least one profile with a name, a context.json
// and a binary. Give it what `p4meshctl pipeline pack --target tofino`
// wrote, to check a file before pushing it.
func ParseTofinoDeviceConfig(b []byte) (*targetsv1.BfPipelineConfig, error) {
	var msg targetsv1.BfPipelineConfig
	if err := proto.Unmarshal(b, &msg); err != nil {
		return nil, fmt.Errorf("tofino: not a BfPipelineConfig: %w", err)
	}
	if err := checkPacked("tofino", msg.GetP4Name(), msg.GetBfruntimeInfo(), msg.GetProfiles()); err != nil {
		return nil, err
	}
	return &msg, nil
}

// DPDK is the target config of IPDK's infrap4d on P4-DPDK (the DPDK SWX
// pipeline): the serialized stratum.hal.tdi.BfPipelineConfig
// (ipdk-io/stratum-dev, stratum/hal/lib/tdi/tdi.proto) that IPDK's
// tdi_pipeline_builder makes from p4c-dpdk's outputs (the .pb.bin), and the
// only format infrap4d parses (tdi_pipeline_utils.cc).
//
// p4c-dpdk --arch pna (or psa), run as IPDK's examples do, writes:
//
//	p4c-dpdk --arch pna --p4runtime-files OUT/p4info.txt \
//	    --bf-rt-schema OUT/bf-rt.json --context OUT/pipe/context.json \
//	    --tdi-builder-conf OUT/<program>.conf -o OUT/pipe/<program>.spec <program>.p4
//
//	OUT/<program>.conf             the manifest, as for Tofino, with the
//	                               .spec as the pipeline's "config" and
//	                               optional "pktio-args" (packet I/O ports)
//	OUT/bf-rt.json                 the BF-Runtime schema ("bfrt-config")
//	OUT/pipe/context.json          ("context")
//	OUT/pipe/<program>.spec        the SWX pipeline spec ("config")
//
// Conf names the .conf or the directory holding it. A .conf written by
// hand (IPDK's examples ship one per program) works the same.
type DPDK struct {
	// Conf is the .conf (p4c-dpdk --tdi-builder-conf), or its directory.
	Conf string
	// P4Info, when set, must be of the same program (its tables in
	// bf-rt.json).
	P4Info *p4configv1.P4Info
}

var dpdkFlavor = compilerFlavor{
	target:   "dpdk",
	compiler: "p4c-dpdk --tdi-builder-conf",
	binary:   ".spec file",
	contexts: []string{"DPDK"},
	checkBinary: func(b []byte) error {
		// A SWX pipeline spec is text, and p4c-dpdk always ends it with
		// the pipeline's apply block (the program's instructions).
		if !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 {
			return errors.New("not text: not a DPDK pipeline .spec")
		}
		if !slices.ContainsFunc(bytes.Split(b, []byte("\n")), func(l []byte) bool {
			return bytes.HasPrefix(bytes.TrimSpace(l), []byte("apply"))
		}) {
			return errors.New("no apply block: not a DPDK pipeline .spec")
		}
		return nil
	},
}

// Name implements Target.
func (DPDK) Name() string { return "dpdk" }

// DeviceConfig implements Target: it reads p4c-dpdk's outputs, checks
// them, and returns them as a serialized stratum.hal.tdi.BfPipelineConfig:
// the message tdi_pipeline_builder writes for the same inputs.
func (d DPDK) DeviceConfig() ([]byte, error) {
	p, err := loadCompilerOutput(d.Conf, dpdkFlavor)
	if err != nil {
		return nil, err
	}
	if err := checkP4InfoAgainstBfrt(d.P4Info, p.name, p.bfrt); err != nil {
		return nil, fmt.Errorf("dpdk: %s: %w", p.conf, err)
	}
	// p4-dpdk-target builds one SWX pipeline per device, the first
	// (lld_dpdk_init: "now only one pipeline is created"); a second would
	// be packed and silently never run.
	if len(p.pipes) != 1 {
		return nil, fmt.Errorf("dpdk: %s: %d p4_pipelines; P4-DPDK runs exactly one", p.conf, len(p.pipes))
	}
	msg := &targetsv1.TdiPipelineConfig{P4Name: p.name, BfruntimeInfo: p.bfrt}
	for _, pipe := range p.pipes {
		msg.Profiles = append(msg.Profiles, &targetsv1.BfPipelineConfig_Profile{
			ProfileName: pipe.name, Context: pipe.context, Binary: pipe.binary, PipeScope: pipe.scope,
		})
	}
	if p.pktio != nil {
		msg.PacketIoConfig = &targetsv1.PacketIoConfig{Ports: p.pktio.ports, NbRxqs: p.pktio.nbRxqs, NbTxqs: p.pktio.nbTxqs}
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(msg)
}

// ParseDPDKDeviceConfig decodes a DPDK device config (a serialized
// stratum.hal.tdi.BfPipelineConfig) and checks it has what infrap4d loads.
func ParseDPDKDeviceConfig(b []byte) (*targetsv1.TdiPipelineConfig, error) {
	var msg targetsv1.TdiPipelineConfig
	if err := proto.Unmarshal(b, &msg); err != nil {
		return nil, fmt.Errorf("dpdk: not a TDI BfPipelineConfig: %w", err)
	}
	if err := checkPacked("dpdk", msg.GetP4Name(), msg.GetBfruntimeInfo(), msg.GetProfiles()); err != nil {
		return nil, err
	}
	return &msg, nil
}

// checkPacked checks a decoded device config. Protobuf decodes many byte
// strings that are no BfPipelineConfig (a BMv2 JSON, say) into a message
// with nothing in it, so it is the content that tells.
func checkPacked(target, name string, bfrt []byte, profiles []*targetsv1.BfPipelineConfig_Profile) error {
	if name == "" {
		return fmt.Errorf("%s: device config has no p4_name: not a packed pipeline (p4meshctl pipeline pack --target %s)", target, target)
	}
	if err := checkBfrtJSON(bfrt); err != nil {
		return fmt.Errorf("%s: device config of %s: bfruntime_info: %w", target, name, err)
	}
	if len(profiles) == 0 {
		return fmt.Errorf("%s: device config of %s has no profiles", target, name)
	}
	for i, p := range profiles {
		switch {
		case p.GetProfileName() == "":
			return fmt.Errorf("%s: device config of %s: profile %d has no name", target, name, i)
		case len(p.GetContext()) == 0:
			return fmt.Errorf("%s: device config of %s: profile %s has no context.json", target, name, p.GetProfileName())
		case len(p.GetBinary()) == 0:
			return fmt.Errorf("%s: device config of %s: profile %s has no binary", target, name, p.GetProfileName())
		}
	}
	return nil
}
