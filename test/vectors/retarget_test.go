package vectors_test

import (
	"errors"
	"math/big"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
	"github.com/p4mesh/p4mesh/test/vectors"
)

// TestRetarget takes every v1model vector to the TNA and PNA programs
// through a port map, and checks that the map is applied everywhere a port
// is (updates, frames, packet-outs, packet-ins), that every id is the
// target's, that the updates encode for the target's P4Info, and that
// taking TNA's back gives the vectors again.
func TestRetarget(t *testing.T) {
	cases, err := vectors.Load("testdata")
	if err != nil {
		t.Fatal(err)
	}
	from, err := p4.P4InfoFor(p4.V1Model)
	if err != nil {
		t.Fatal(err)
	}
	// Ports 1..8 to Stratum-like ids 101..108; 10 (an uplink) to 300,
	// beyond v1model's 9 bits.
	ports := vectors.PortMap{}
	back := vectors.PortMap{}
	for p := uint16(1); p <= 12; p++ {
		q := 100 + p
		if p == 10 {
			q = 300
		}
		ports[p], back[q] = q, p
	}
	for _, arch := range []string{p4.TNA, p4.PNA} {
		to, err := p4.P4InfoFor(arch)
		if err != nil {
			t.Fatal(err)
		}
		s, err := p4rt.NewSchema(to)
		if err != nil {
			t.Fatal(err)
		}
		mapped, skipped := 0, 0
		for _, c := range cases {
			r, err := c.Retarget(from, to, ports)
			if errors.Is(err, vectors.ErrNotOnTarget) {
				skipped++
				if arch != p4.PNA || len(c.Digests) == 0 {
					t.Errorf("%s %s: %v", arch, c.Name, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s %s: %v", arch, c.Name, err)
			}
			mapped++
			for _, p := range r.Ports() {
				if p < 100 {
					t.Errorf("%s %s: port %d not mapped", arch, c.Name, p)
				}
			}
			for i, s2 := range r.Steps {
				if s2.PacketIn != nil && s2.PacketIn.IngressPort < 100 {
					t.Errorf("%s %s step %d: packet-in port %d not mapped", arch, c.Name, i, s2.PacketIn.IngressPort)
				}
			}
			for i, u := range r.UpdateMessages() {
				checkUpdate(t, s, arch+" "+c.Name, i, u)
			}
			if arch == p4.TNA {
				again, err := r.Retarget(to, from, back)
				if err != nil {
					t.Fatalf("%s back: %v", c.Name, err)
				}
				for i, u := range again.UpdateMessages() {
					if !proto.Equal(u, c.UpdateMessages()[i]) {
						t.Errorf("%s: update %d does not come back:\n got %v\nwant %v", c.Name, i, u, c.UpdateMessages()[i])
					}
				}
				if len(again.Steps) != len(c.Steps) || again.Ports()[0] != c.Ports()[0] {
					t.Errorf("%s: the steps do not come back", c.Name)
				}
			}
		}
		if mapped == 0 || (arch == p4.PNA && skipped != 2) || (arch == p4.TNA && skipped != 0) {
			t.Errorf("%s: %d cases mapped, %d not on the target", arch, mapped, skipped)
		}
	}

	// A port the target cannot number is refused, not wrapped.
	tna, _ := p4.P4InfoFor(p4.TNA)
	if _, err := cases[1].Retarget(from, from, vectors.PortMap{1: 600, 2: 601}); err == nil {
		t.Error("v1model port 600: no error")
	}
	if _, err := cases[1].Retarget(from, tna, vectors.PortMap{1: 600, 2: 601}); err != nil {
		t.Errorf("TNA port 600: %v", err)
	}
}

// checkUpdate: every id is in the target's schema, every port field and
// parameter decodes to a mapped port that fits its width.
func checkUpdate(t *testing.T, s *p4rt.Schema, what string, i int, u *p4v1.Update) {
	t.Helper()
	port := func(v []byte, w int32) {
		n := new(big.Int).SetBytes(v)
		if n.Uint64() < 100 || n.BitLen() > int(w) {
			t.Errorf("%s update %d: port %v (width %d) not mapped", what, i, n, w)
		}
	}
	checkAction := func(a *p4v1.Action) {
		act, err := s.ActionByID(a.GetActionId())
		if err != nil {
			t.Errorf("%s update %d: %v", what, i, err)
			return
		}
		for _, p := range a.GetParams() {
			for _, q := range act.GetParams() {
				if q.GetId() == p.GetParamId() && q.GetName() == "port" {
					port(p.GetValue(), q.GetBitwidth())
				}
			}
		}
	}
	switch x := u.GetEntity().GetEntity().(type) {
	case *p4v1.Entity_TableEntry:
		tbl, err := s.TableByID(x.TableEntry.GetTableId())
		if err != nil {
			t.Errorf("%s update %d: %v", what, i, err)
			return
		}
		for _, f := range x.TableEntry.GetMatch() {
			for _, mf := range tbl.GetMatchFields() {
				if mf.GetId() == f.GetFieldId() && mf.GetName() == "ingress_port" {
					port(f.GetExact().GetValue(), mf.GetBitwidth())
				}
			}
		}
		if a := x.TableEntry.GetAction().GetAction(); a != nil {
			checkAction(a)
		}
	case *p4v1.Entity_ActionProfileMember:
		if _, err := s.ActionProfileByID(x.ActionProfileMember.GetActionProfileId()); err != nil {
			t.Errorf("%s update %d: %v", what, i, err)
		}
		checkAction(x.ActionProfileMember.GetAction())
	case *p4v1.Entity_ActionProfileGroup:
		if _, err := s.ActionProfileByID(x.ActionProfileGroup.GetActionProfileId()); err != nil {
			t.Errorf("%s update %d: %v", what, i, err)
		}
	}
}
