package gnmi

import (
	"fmt"

	"github.com/openconfig/ygot/ygot"

	"github.com/p4mesh/p4mesh/gnmi/oc"
)

// MarshalIETF returns d as RFC 7951 JSON (gNMI's JSON_IETF encoding), with
// top-level members qualified by their module ("p4mesh:p4mesh"). It does
// not validate d: what is reported need not be a valid configuration
// (Validate says whether it is).
func MarshalIETF(d *oc.Device) ([]byte, error) {
	s, err := ygot.EmitJSON(d, &ygot.EmitJSONConfig{
		Format:         ygot.RFC7951,
		RFC7951Config:  &ygot.RFC7951JSONConfig{AppendModuleName: true},
		Indent:         "  ",
		SkipValidation: true,
	})
	if err != nil {
		return nil, fmt.Errorf("marshal JSON_IETF: %w", err)
	}
	return []byte(s), nil
}

// UnmarshalIETF parses RFC 7951 JSON of the whole tree, as MarshalIETF
// writes it, into a new Device. Unknown members and values of the wrong
// type are errors; values are not otherwise validated (Validate does).
func UnmarshalIETF(b []byte) (*oc.Device, error) {
	d := &oc.Device{}
	if err := oc.Unmarshal(b, d); err != nil {
		return nil, fmt.Errorf("unmarshal JSON_IETF: %w", err)
	}
	return d, nil
}
