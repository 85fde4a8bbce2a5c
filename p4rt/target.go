package p4rt

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	"google.golang.org/protobuf/proto"
)

// Target packs the device config that SetForwardingPipelineConfig carries
// for one kind of switch: BMv2 takes p4c's JSON, Stratum on Tofino and IPDK
// on P4-DPDK take protobufs of their compiler's outputs (Tofino, DPDK).
// The rest of p4mesh sees only this interface.
type Target interface {
	// Name names the target in logs and errors ("bmv2").
	Name() string
	// DeviceConfig returns the p4_device_config bytes for the pipeline.
	DeviceConfig() ([]byte, error)
}

// BMv2 is the target config of BMv2's simple_switch_grpc: the JSON p4c-bm2-ss
// writes beside the P4Info.
type BMv2 struct {
	// JSONPath is the file p4c wrote (p4/v1model/build/vpc_peering.json).
	JSONPath string
}

// Name implements Target.
func (BMv2) Name() string { return "bmv2" }

// DeviceConfig implements Target. It checks that the file is a BMv2 JSON
// program, since simple_switch_grpc answers a wrong file with a bare error.
func (b BMv2) DeviceConfig() ([]byte, error) {
	if b.JSONPath == "" {
		return nil, errors.New("bmv2: no p4c JSON file given (run `make p4` to build p4/v1model/build/vpc_peering.json)")
	}
	data, err := os.ReadFile(b.JSONPath)
	if err != nil {
		return nil, fmt.Errorf("bmv2: %w", err)
	}
	if err := checkBMv2JSON(data); err != nil {
		return nil, fmt.Errorf("%w (%s)", err, b.JSONPath)
	}
	return data, nil
}

// checkBMv2JSON checks that data is a BMv2 JSON program.
func checkBMv2JSON(data []byte) error {
	var prog struct {
		Pipelines json.RawMessage `json:"pipelines"`
	}
	if err := json.Unmarshal(data, &prog); err != nil {
		return fmt.Errorf("bmv2: not JSON: %w", err)
	}
	if prog.Pipelines == nil {
		return errors.New(`bmv2: no "pipelines": not a p4c-bm2-ss output`)
	}
	return nil
}

// Cookie fingerprints a pipeline (P4Info and device config). Pushing with it
// lets a client skip the push, and so keep the switch's state, when the
// switch already runs the same pipeline.
func Cookie(info *p4configv1.P4Info, deviceConfig []byte) (uint64, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(info)
	if err != nil {
		return 0, fmt.Errorf("cookie: %w", err)
	}
	h := fnv.New64a()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
	h.Write(deviceConfig)
	return h.Sum64(), nil
}
