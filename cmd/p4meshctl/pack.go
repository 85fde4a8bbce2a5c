package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/p4rt"
)

const packHelp = `usage: p4meshctl pipeline pack --target bmv2|tofino|dpdk --in PATH --out FILE [--p4info FILE]

Packs a P4 compiler's outputs into the device config that a pipeline push
carries (P4Runtime ForwardingPipelineConfig.p4_device_config) for one kind
of switch. Give the file to p4mesh-ohc --device-config (or any P4Runtime
client); see docs/targets.md.

--in, by target:
  bmv2    the JSON p4c-bm2-ss wrote (p4/v1model/build/vpc_peering.json); it is
          checked and copied as is.
  tofino  bf-p4c's output directory, or the <program>.conf in it. The .conf
          names bfrt.json and, per pipeline profile, context.json and
          tofino.bin (tofino2.bin on Tofino 2) with its pipe_scope. Writes
          Stratum's BfPipelineConfig for stratum_bfrt: what Stratum's
          bf_pipeline_builder makes of the same .conf.
  dpdk    the .conf p4c-dpdk writes with --tdi-builder-conf (or one written
          by hand, as IPDK's examples ship), or its directory. It names
          bf-rt.json, pipe/context.json and the SWX pipeline's .spec, and
          may give "pktio-args". Writes IPDK's TDI BfPipelineConfig for
          infrap4d: what tdi_pipeline_builder makes of it (its .pb.bin).
A relative path in a .conf is taken from the .conf's directory, else from
the working directory (as Stratum's and IPDK's builders read them).

--p4info FILE, the P4Info (text or binary) the config will be pushed with,
checks that both are of one program: its tables must be in bfrt.json.
`

// pipelinePack is `p4meshctl pipeline pack`.
func pipelinePack(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("pipeline pack", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, packHelp)
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	target := fs.String("target", "", "bmv2, tofino or dpdk (required)")
	in := fs.String("in", "", "the compiler output: a file or a directory, by --target (required)")
	out := fs.String("out", "", "where to write the device config (required)")
	p4infoPath := fs.String("p4info", "", "the P4Info the config will be pushed with, to check against the compiler output")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // asked for: the help went to stderr
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: pipeline pack takes no arguments (got %q)", errUsage, fs.Args())
	}
	switch {
	case *target == "":
		return fmt.Errorf("%w: pipeline pack: --target is required (bmv2, tofino or dpdk)", errUsage)
	case *in == "":
		return fmt.Errorf("%w: pipeline pack: --in is required (the compiler output)", errUsage)
	case *out == "":
		return fmt.Errorf("%w: pipeline pack: --out is required", errUsage)
	}
	var info *p4configv1.P4Info
	if *p4infoPath != "" {
		var err error
		if info, err = readP4Info(*p4infoPath); err != nil {
			return err
		}
	}
	var t p4rt.Target
	switch *target {
	case "bmv2":
		t = p4rt.BMv2{JSONPath: *in}
	case "tofino":
		t = p4rt.Tofino{Conf: *in, P4Info: info}
	case "dpdk":
		t = p4rt.DPDK{Conf: *in, P4Info: info}
	default:
		return fmt.Errorf("%w: pipeline pack: --target %q: want bmv2, tofino or dpdk (p4mesh-switch takes no device config)", errUsage, *target)
	}
	cfg, err := t.DeviceConfig()
	if err != nil {
		return err
	}
	// What was packed must read back as the target's config: the check
	// p4mesh-ohc --device-config makes before a push.
	profile, err := p4rt.LookupTarget(t.Name())
	if err != nil {
		return err
	}
	if err := profile.CheckDeviceConfig(cfg, info); err != nil {
		return fmt.Errorf("packed config does not read back: %w", err)
	}
	if err := writeFileAtomic(*out, cfg); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote the %s device config (%d bytes) to %s\n", t.Name(), len(cfg), *out)
	return nil
}

// readP4Info reads a P4Info in text format (p4c's .p4info.txtpb / .txt)
// or binary.
func readP4Info(path string) (*p4configv1.P4Info, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--p4info: %w", err)
	}
	info := &p4configv1.P4Info{}
	textErr := prototext.Unmarshal(b, info)
	if textErr == nil {
		return info, nil
	}
	if bytes.ContainsRune(b, 0) || !strings.ContainsAny(string(b), "{:") {
		info = &p4configv1.P4Info{}
		if err := proto.Unmarshal(b, info); err == nil && (len(info.GetTables()) > 0 || info.GetPkgInfo() != nil) {
			return info, nil
		}
	}
	return nil, fmt.Errorf("--p4info: %s is not a P4Info (text: %v)", path, textErr)
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, so a reader (a running OHC's next start) never sees half.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("--out: %w", err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("--out: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}
