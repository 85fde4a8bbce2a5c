// Package p4 is the embedded p4mesh pipeline: the P4_16 source of the host
// pipeline for each P4 architecture p4mesh runs on, and the P4Info that the
// architecture's p4c backend emits for it, committed so that the rest of
// p4mesh builds and tests without a P4 compiler:
//
//	v1model/vpc_peering.p4   BMv2 simple_switch_grpc, p4mesh-switch (p4c-bm2-ss)
//	tna/vpc_peering.p4       Tofino under Stratum (bf-p4c --p4runtime-force-std-externs)
//	pna/vpc_peering.p4       P4-DPDK under IPDK infrap4d (p4c-dpdk --arch pna)
//	common/*.p4              the headers and parser states all three include
//
// each with its P4Info in <arch>/build/vpc_peering.p4info.txtpb.
//
// The P4Info is the control-plane contract: the client, the software switch
// and the on-host controller resolve every table, action, field and parameter
// by name through it, never by a hard-coded ID. The three programs expose the
// same tables, actions, parameters and action profiles by name (alias);
// where an architecture forces a difference (port width and translation, CPU
// port, selector limits, counters, digest) the P4Info says so, and code reads
// it from there (p4rt.Capabilities). Regenerate the P4Infos with p4/compile.sh
// (make p4) after editing a program; the package tests check that each still
// agrees with its source.
//
// P4Info, P4InfoText and Source are the v1model program's, which p4mesh-switch
// implements and the packet vectors specify.
//
// The package imports nothing else of p4mesh.
package p4

import (
	"bytes"
	"embed"
	"fmt"
	"path"
	"regexp"
	"strings"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	"google.golang.org/protobuf/encoding/prototext"
)

// The architectures, as the P4Info's pkg_info.arch names them.
const (
	V1Model = "v1model"
	TNA     = "tna"
	PNA     = "pna"
)

// Archs lists the architectures p4mesh has a program for.
func Archs() []string { return []string{V1Model, TNA, PNA} }

//go:embed common/*.p4
//go:embed v1model/vpc_peering.p4 v1model/build/vpc_peering.p4info.txtpb
//go:embed tna/vpc_peering.p4 tna/build/vpc_peering.p4info.txtpb
//go:embed pna/vpc_peering.p4 pna/build/vpc_peering.p4info.txtpb
var files embed.FS

func read(name string) []byte {
	b, err := files.ReadFile(name)
	if err != nil {
		panic("p4: embedded file missing: " + err.Error()) // the embed patterns list it
	}
	return b
}

func checkArch(arch string) error {
	for _, a := range Archs() {
		if a == arch {
			return nil
		}
	}
	return fmt.Errorf("p4: no program for architecture %q (have %s)", arch, strings.Join(Archs(), ", "))
}

// P4Info parses the embedded v1model P4Info. Every call returns a fresh
// message that the caller may keep or modify.
func P4Info() (*p4configv1.P4Info, error) { return P4InfoFor(V1Model) }

// P4InfoFor parses the embedded P4Info of the architecture's program. Every
// call returns a fresh message that the caller may keep or modify.
func P4InfoFor(arch string) (*p4configv1.P4Info, error) {
	text, err := P4InfoTextFor(arch)
	if err != nil {
		return nil, err
	}
	info := &p4configv1.P4Info{}
	if err := prototext.Unmarshal(text, info); err != nil {
		return nil, fmt.Errorf("p4: parse embedded %s P4Info: %w", arch, err)
	}
	return info, nil
}

// P4InfoText returns the embedded v1model P4Info in protobuf text format, as
// p4c wrote it. The slice is a copy.
func P4InfoText() []byte {
	b, _ := P4InfoTextFor(V1Model)
	return b
}

// P4InfoTextFor returns the embedded P4Info of the architecture's program in
// protobuf text format. The slice is a copy.
func P4InfoTextFor(arch string) ([]byte, error) {
	if err := checkArch(arch); err != nil {
		return nil, err
	}
	return append([]byte(nil), read(arch+"/build/vpc_peering.p4info.txtpb")...), nil
}

// Source returns the P4_16 source of the v1model pipeline as the file reads
// (its #include "../common/..." lines unexpanded). The slice is a copy.
func Source() []byte {
	return append([]byte(nil), read(V1Model+"/vpc_peering.p4")...)
}

var includeRE = regexp.MustCompile(`(?m)^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$`)

// SourceFor returns the architecture's program with its local includes
// (#include "../common/headers.p4") replaced by the files' text, as the C
// preprocessor p4c runs would, each once; the architecture's own
// (#include <tna.p4>) and the other directives stay. The result is one
// program a reader (or a test) can take whole.
func SourceFor(arch string) ([]byte, error) {
	if err := checkArch(arch); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var expand func(name string, depth int) ([]byte, error)
	expand = func(name string, depth int) ([]byte, error) {
		if depth > 8 {
			return nil, fmt.Errorf("p4: %s: includes nest too deep", name)
		}
		src, err := files.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("p4: %w", err)
		}
		var out bytes.Buffer
		last := 0
		for _, m := range includeRE.FindAllSubmatchIndex(src, -1) {
			out.Write(src[last:m[0]])
			last = m[1]
			inc := path.Clean(path.Join(path.Dir(name), string(src[m[2]:m[3]])))
			if seen[inc] {
				continue // every shared file has an include guard or is included once
			}
			seen[inc] = true
			b, err := expand(inc, depth+1)
			if err != nil {
				return nil, fmt.Errorf("p4: %s includes %s: %w", name, inc, err)
			}
			out.Write(bytes.TrimRight(b, "\n"))
		}
		out.Write(src[last:])
		return out.Bytes(), nil
	}
	return expand(arch+"/vpc_peering.p4", 0)
}
