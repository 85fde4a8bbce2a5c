package dataplane

import (
	"context"
	"os"
	"testing"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/p4mesh/p4mesh/p4rt"
)

// Table and action ids of testdata/unit.p4info.txtpb.
const (
	tACL      = 33554433
	tRoute    = 33554434
	tPool     = 33554435
	tPortVnet = 33554436
	tDest     = 33554437
	aPermit   = 16777217
	aDrop     = 16777218
	aEncap    = 16777219
	aMiss     = 16777220
	aSetVnet  = 16777221
	pSelector = 285212673
	dDigest   = 385875969
)

func unitInfo(t testing.TB) *p4configv1.P4Info {
	t.Helper()
	b, err := os.ReadFile("testdata/unit.p4info.txtpb")
	if err != nil {
		t.Fatal(err)
	}
	info := &p4configv1.P4Info{}
	if err := prototext.Unmarshal(b, info); err != nil {
		t.Fatal(err)
	}
	return info
}

func unitSchema(t testing.TB) *p4rt.Schema {
	t.Helper()
	s, err := p4rt.NewSchema(unitInfo(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newCommitted returns a server with the unit pipeline committed and no
// controller connected, so Writes without an election id are admitted.
func newCommitted(t testing.TB) *Server {
	t.Helper()
	info := unitInfo(t)
	s, err := NewServer(Options{P4Info: info})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(&p4v1.ForwardingPipelineConfig{P4Info: info, Cookie: &p4v1.ForwardingPipelineConfig_Cookie{Cookie: 7}}); err != nil {
		t.Fatal(err)
	}
	return s
}

func exact(id uint32, v ...byte) *p4v1.FieldMatch {
	return &p4v1.FieldMatch{FieldId: id, FieldMatchType: &p4v1.FieldMatch_Exact_{Exact: &p4v1.FieldMatch_Exact{Value: v}}}
}

func lpm(id uint32, plen int32, v ...byte) *p4v1.FieldMatch {
	return &p4v1.FieldMatch{FieldId: id, FieldMatchType: &p4v1.FieldMatch_Lpm{Lpm: &p4v1.FieldMatch_LPM{Value: v, PrefixLen: plen}}}
}

func ternary(id uint32, v, m []byte) *p4v1.FieldMatch {
	return &p4v1.FieldMatch{FieldId: id, FieldMatchType: &p4v1.FieldMatch_Ternary_{Ternary: &p4v1.FieldMatch_Ternary{Value: v, Mask: m}}}
}

func rng(id uint32, lo, hi []byte) *p4v1.FieldMatch {
	return &p4v1.FieldMatch{FieldId: id, FieldMatchType: &p4v1.FieldMatch_Range_{Range: &p4v1.FieldMatch_Range{Low: lo, High: hi}}}
}

func optional(id uint32, v ...byte) *p4v1.FieldMatch {
	return &p4v1.FieldMatch{FieldId: id, FieldMatchType: &p4v1.FieldMatch_Optional_{Optional: &p4v1.FieldMatch_Optional{Value: v}}}
}

func act(id uint32, params ...[]byte) *p4v1.TableAction {
	a := &p4v1.Action{ActionId: id}
	for i, p := range params {
		a.Params = append(a.Params, &p4v1.Action_Param{ParamId: uint32(i + 1), Value: p})
	}
	return &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: a}}
}

func encap(vni, ip uint32, mac byte) *p4v1.TableAction {
	return act(aEncap, be(uint64(vni)), be(uint64(ip)), []byte{mac})
}

// be is the canonical bytestring of v.
func be(v uint64) []byte {
	b, err := p4rt.EncodeUint(v, 64)
	if err != nil {
		panic(err)
	}
	return b
}

func upd(typ p4v1.Update_Type, msg any) *p4v1.Update {
	u, err := p4rt.Update(typ, msg)
	if err != nil {
		panic(err)
	}
	return u
}

// write sends updates without an election id and returns the code of each.
func write(t testing.TB, s *Server, us ...*p4v1.Update) []codes.Code {
	t.Helper()
	_, err := s.Write(context.Background(), &p4v1.WriteRequest{DeviceId: 1, Updates: us})
	return updateCodes(t, err, len(us))
}

// updateCodes decodes the per-update codes of a Write error.
func updateCodes(t testing.TB, err error, n int) []codes.Code {
	t.Helper()
	out := make([]codes.Code, n)
	if err == nil {
		return out
	}
	st := status.Convert(err)
	if st.Code() != codes.Unknown {
		t.Fatalf("write: %v (want UNKNOWN with details)", err)
	}
	ds := st.Details()
	if len(ds) != n {
		t.Fatalf("write: %d details for %d updates: %v", len(ds), n, err)
	}
	for i, d := range ds {
		pe, ok := d.(*p4v1.Error)
		if !ok {
			t.Fatalf("detail %d is %T", i, d)
		}
		out[i] = codes.Code(pe.GetCanonicalCode())
	}
	return out
}

func must(t testing.TB, s *Server, us ...*p4v1.Update) {
	t.Helper()
	for i, c := range write(t, s, us...) {
		if c != codes.OK {
			t.Fatalf("update %d: %v", i, c)
		}
	}
}

// readAll runs one Read in process and returns the entities.
func readAll(t testing.TB, s *Server, qs ...*p4v1.Entity) ([]*p4v1.Entity, error) {
	t.Helper()
	rs := &readSink{}
	err := s.Read(&p4v1.ReadRequest{DeviceId: 1, Entities: qs}, rs)
	return rs.out, err
}

type readSink struct {
	p4v1.P4Runtime_ReadServer
	out []*p4v1.Entity
}

func (r *readSink) Send(m *p4v1.ReadResponse) error {
	r.out = append(r.out, m.GetEntities()...)
	return nil
}

func (r *readSink) Context() context.Context { return context.Background() }

func te(table uint32, prio int32, a *p4v1.TableAction, ms ...*p4v1.FieldMatch) *p4v1.TableEntry {
	return &p4v1.TableEntry{TableId: table, Priority: prio, Action: a, Match: ms}
}
