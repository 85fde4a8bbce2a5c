package p4rt

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
)

// compilerConf is the .conf file the Tofino and DPDK compilers write beside
// their outputs: bf-p4c always (<program>.conf in its -o directory),
// p4c-dpdk with --tdi-builder-conf FILE (backends/dpdk/tdiConf.cpp). It
// is what Stratum's bf_pipeline_builder and IPDK's tdi_pipeline_builder
// read (-p4c_conf_file), and what bf_switchd loads directly, so packing
// from it packs exactly the files those tools would. Only the keys the
// builders read are declared; the rest (chip_list, eal-args, mempools,
// agent0, path, core_id, ...) configure the SDE, not the pipeline.
type compilerConf struct {
	P4Devices []struct {
		// PktioArgs is IPDK's packet I/O configuration (DPDK only).
		PktioArgs *struct {
			Ports  []uint32 `json:"ports"`
			NbRxqs uint32   `json:"nb_rxqs"`
			NbTxqs uint32   `json:"nb_txqs"`
		} `json:"pktio-args"`
		P4Programs []struct {
			ProgramName string `json:"program-name"`
			BfrtConfig  string `json:"bfrt-config"`
			P4Pipelines []struct {
				Name      string   `json:"p4_pipeline_name"`
				Context   string   `json:"context"`
				Config    string   `json:"config"`
				PipeScope []uint32 `json:"pipe_scope"`
			} `json:"p4_pipelines"`
		} `json:"p4_programs"`
	} `json:"p4_devices"`
}

// compiledProgram is one program's compiler output, read and checked.
type compiledProgram struct {
	conf  string // the .conf it was read from, for errors
	name  string
	bfrt  []byte
	pipes []compiledPipe
	pktio *compilerPktio
}

type compiledPipe struct {
	name    string
	context []byte
	binary  []byte
	scope   []uint32
}

type compilerPktio struct {
	ports          []uint32
	nbRxqs, nbTxqs uint32
}

// compilerFlavor is what differs between bf-p4c's and p4c-dpdk's outputs
// for the checks loadCompilerOutput makes.
type compilerFlavor struct {
	target   string   // "tofino", "dpdk": prefixes every error
	compiler string   // who writes the outputs, for hints
	binary   string   // what the pipeline's "config" file is, for errors
	contexts []string // context.json "target" values this flavor accepts
	// checkBinary checks the pipeline's "config" file.
	checkBinary func(data []byte) error
}

// findConf returns the .conf at path: path itself, or the only .conf in
// the directory path.
func findConf(path string, f compilerFlavor) (string, error) {
	if path == "" {
		return "", fmt.Errorf("%s: no compiler output given: name the .conf %s wrote, or its output directory", f.target, f.compiler)
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", f.target, err)
	}
	if !st.IsDir() {
		return path, nil
	}
	confs, err := filepath.Glob(filepath.Join(path, "*.conf"))
	if err != nil {
		return "", fmt.Errorf("%s: %w", f.target, err)
	}
	switch len(confs) {
	case 0:
		return "", fmt.Errorf("%s: no .conf in %s: %s writes one there (see docs/targets.md), or name it directly", f.target, path, f.compiler)
	case 1:
		return confs[0], nil
	}
	return "", fmt.Errorf("%s: %d .conf files in %s (%s): name the one to pack", f.target, len(confs), path, strings.Join(confs, ", "))
}

// loadCompilerOutput reads the program the .conf at path (or the only one
// in the directory path) describes, with every file it names, and checks
// them as far as their formats are known: what Stratum and the SDE would
// only reject at push time, or load into a switch wrongly, is refused
// here with the file at fault. A relative path in the .conf is taken from
// the .conf's directory first (bf-p4c writes paths relative to its output
// directory, where the .conf is), then from the working directory (from
// where Stratum's and IPDK's builders read them).
func loadCompilerOutput(path string, f compilerFlavor) (*compiledProgram, error) {
	confPath, err := findConf(path, f)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(confPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.target, err)
	}
	var conf compilerConf
	if err := json.Unmarshal(raw, &conf); err != nil {
		return nil, fmt.Errorf("%s: %s is not a compiler .conf (JSON): %w", f.target, confPath, err)
	}
	errf := func(format string, args ...any) error {
		return fmt.Errorf("%s: %s: %s", f.target, confPath, fmt.Sprintf(format, args...))
	}
	// The builders take one device with one program (bf_pipeline_builder.cc,
	// tdi_pipeline_builder.cc): the device config has room for one.
	if n := len(conf.P4Devices); n != 1 {
		return nil, errf("has %d p4_devices; a device config carries exactly one", n)
	}
	dev := conf.P4Devices[0]
	if n := len(dev.P4Programs); n != 1 {
		return nil, errf("p4_devices[0] has %d p4_programs; a device config carries exactly one", n)
	}
	prog := dev.P4Programs[0]
	p := &compiledProgram{conf: confPath, name: prog.ProgramName}
	// Stratum writes the program and each profile to
	// <config dir>/<p4_name>/<profile_name>/ (bf_sde_wrapper.cc AddDevice):
	// the names must be single path elements.
	if err := checkPathName(p.name); err != nil {
		return nil, errf("program-name: %v", err)
	}
	// read reads the file the .conf names under key.
	read := func(key, file string) ([]byte, string, error) {
		if file == "" {
			return nil, "", fmt.Errorf("no %q", key)
		}
		if filepath.IsAbs(file) {
			b, err := os.ReadFile(file)
			return b, file, err
		}
		fromConf := filepath.Join(filepath.Dir(confPath), file)
		b, err := os.ReadFile(fromConf)
		if !errors.Is(err, fs.ErrNotExist) {
			return b, fromConf, err
		}
		if b, cwdErr := os.ReadFile(file); !errors.Is(cwdErr, fs.ErrNotExist) {
			return b, file, cwdErr
		}
		return nil, fromConf, fmt.Errorf("%s: %q is neither in the .conf's directory (%s) nor in the working directory", key, file, fromConf)
	}
	bfrt, bfrtPath, err := read("bfrt-config", prog.BfrtConfig)
	if err != nil {
		return nil, errf("program %s: %v", p.name, err)
	}
	p.bfrt = bfrt
	if err := checkBfrtJSON(p.bfrt); err != nil {
		return nil, errf("bfrt-config %s: %v", bfrtPath, err)
	}
	if len(prog.P4Pipelines) == 0 {
		return nil, errf("program %s has no p4_pipelines", p.name)
	}
	for i, pl := range prog.P4Pipelines {
		if err := checkPathName(pl.Name); err != nil {
			return nil, errf("p4_pipelines[%d].p4_pipeline_name: %v", i, err)
		}
		if slices.ContainsFunc(p.pipes, func(q compiledPipe) bool { return q.name == pl.Name }) {
			return nil, errf("pipeline %q appears twice", pl.Name)
		}
		// Without a pipe_scope the builders pack an empty one, which the
		// SDE takes as every pipe; so does this.
		pipe := compiledPipe{name: pl.Name, scope: slices.Clone(pl.PipeScope)}
		var ctxPath string
		if pipe.context, ctxPath, err = read("context", pl.Context); err != nil {
			return nil, errf("pipeline %s: %v (its context.json)", pl.Name, err)
		}
		if err := checkContextJSON(pipe.context, p.name, f.contexts); err != nil {
			return nil, errf("pipeline %s: context %s: %v", pl.Name, ctxPath, err)
		}
		var binPath string
		if pipe.binary, binPath, err = read("config", pl.Config); err != nil {
			return nil, errf("pipeline %s: %v (its %s)", pl.Name, err, f.binary)
		}
		if err := f.checkBinary(pipe.binary); err != nil {
			return nil, errf("pipeline %s: config %s: %v", pl.Name, binPath, err)
		}
		p.pipes = append(p.pipes, pipe)
	}
	if a := dev.PktioArgs; a != nil {
		p.pktio = &compilerPktio{ports: slices.Clone(a.Ports), nbRxqs: a.NbRxqs, nbTxqs: a.NbTxqs}
	}
	return p, nil
}

func checkPathName(name string) error {
	switch {
	case name == "":
		return errors.New("empty")
	case name == "." || name == ".." || strings.ContainsAny(name, `/\`):
		return fmt.Errorf("%q is not a plain name (Stratum makes a directory of it)", name)
	}
	return nil
}

// bfrtSchema is the part of a BF-Runtime schema (bfrt.json) p4rt reads.
// bf-p4c and p4c-dpdk both write {"schema_version", "tables": [{"name",
// "id", "table_type", "size", "key", "action_specs", "data", ...}],
// "learn_filters": [...]}; table names carry the pipeline's prefix
// ("pipe.VpcIngress.port_vnet").
type bfrtSchema struct {
	Tables *[]bfrtTable `json:"tables"`
}

type bfrtTable struct {
	Name string `json:"name"`
}

func checkBfrtJSON(data []byte) error {
	var s bfrtSchema
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("not a BF-Runtime schema (JSON): %w", err)
	}
	if s.Tables == nil {
		return errors.New(`not a BF-Runtime schema: no "tables"`)
	}
	for i, t := range *s.Tables {
		if t.Name == "" {
			return fmt.Errorf("tables[%d] has no name", i)
		}
	}
	return nil
}

// checkContextJSON checks a pipeline's context.json: JSON with "tables",
// of the program being packed and for this target when it says so (both
// compilers write "program_name" and "target" at the top).
func checkContextJSON(data []byte, program string, targets []string) error {
	var c struct {
		ProgramName *string          `json:"program_name"`
		Target      *string          `json:"target"`
		Tables      *json.RawMessage `json:"tables"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("not a context.json (JSON): %w", err)
	}
	if c.Tables == nil {
		return errors.New(`not a context.json: no "tables"`)
	}
	if c.ProgramName != nil && *c.ProgramName != program {
		return fmt.Errorf("compiled from program %q, not %q: outputs of two compilations mixed", *c.ProgramName, program)
	}
	if c.Target != nil && !slices.ContainsFunc(targets, func(t string) bool { return strings.EqualFold(t, *c.Target) }) {
		return fmt.Errorf("compiled for target %q, not %s", *c.Target, strings.Join(targets, " or "))
	}
	return nil
}

// checkP4InfoAgainstBfrt checks that the P4Info pushed with the device
// config describes the same program: every P4Info table must be a
// BF-Runtime table (whose name is the P4Info's, prefixed with its
// pipeline). A switch given a P4Info and a device config of two programs
// accepts the push and then fails every write, or writes the wrong table.
func checkP4InfoAgainstBfrt(info *p4configv1.P4Info, program string, bfrt []byte) error {
	if info == nil {
		return nil
	}
	// p4c sets the P4Info's name only from the program's @pkginfo(name=):
	// when the program says who it is, the compiler output must agree.
	if n := info.GetPkgInfo().GetName(); n != "" && n != program {
		return fmt.Errorf("the P4Info is of program %q (pkg_info.name), the compiler output of %q", n, program)
	}
	var s bfrtSchema
	if err := json.Unmarshal(bfrt, &s); err != nil || s.Tables == nil {
		return fmt.Errorf("bfrt.json: not a BF-Runtime schema")
	}
	var missing []string
	for _, t := range info.GetTables() {
		name := t.GetPreamble().GetName()
		if !slices.ContainsFunc(*s.Tables, func(b bfrtTable) bool {
			return b.Name == name || strings.HasSuffix(b.Name, "."+name)
		}) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the P4Info's tables %s are not in bfrt.json: P4Info and compiler output are of different programs", strings.Join(missing, ", "))
	}
	return nil
}
