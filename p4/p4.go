// Package p4 is the embedded p4mesh pipeline: the P4_16 source of the host
// pipeline (v1model/vpc_peering.p4) and the P4Info that p4c emits for it
// (v1model/build/vpc_peering.p4info.txtpb), committed so that the rest of p4mesh builds
// and tests without a P4 compiler.
//
// The P4Info is the control-plane contract: the client, the software switch
// and the on-host controller resolve every table, action, field and parameter
// by name through it, never by a hard-coded ID. Regenerate it with
// p4/compile.sh (make p4) after editing the program; the package tests check
// that the two still agree.
//
// The package imports nothing else of p4mesh.
package p4

import (
	_ "embed"
	"fmt"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	"google.golang.org/protobuf/encoding/prototext"
)

//go:embed v1model/build/vpc_peering.p4info.txtpb
var p4infoText []byte

//go:embed v1model/vpc_peering.p4
var source []byte

// P4Info parses the embedded P4Info. Every call returns a fresh message that
// the caller may keep or modify.
func P4Info() (*p4configv1.P4Info, error) {
	info := &p4configv1.P4Info{}
	if err := prototext.Unmarshal(p4infoText, info); err != nil {
		return nil, fmt.Errorf("p4: parse embedded P4Info: %w", err)
	}
	return info, nil
}

// P4InfoText returns the embedded P4Info in protobuf text format, as p4c wrote
// it. The slice is a copy.
func P4InfoText() []byte {
	return append([]byte(nil), p4infoText...)
}

// Source returns the P4_16 source of the pipeline. The slice is a copy.
func Source() []byte {
	return append([]byte(nil), source...)
}
