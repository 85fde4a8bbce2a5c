package conformance

import (
	"slices"
	"testing"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/p4rt"
)

// pickSelectorTable finds the first table implemented by an action
// selector whose match fields are all exact, and an action its entries can
// run (one with parameters if it has one). It returns nil when the P4Info
// has none.
func pickSelectorTable(s *p4rt.Schema) (*p4rt.Table, *p4configv1.Action) {
	for _, t := range s.Tables() {
		if t.Profile == nil || !t.Profile.GetWithSelector() || len(t.GetMatchFields()) == 0 || t.GetIsConstTable() {
			continue
		}
		if slices.ContainsFunc(t.GetMatchFields(), func(f *p4configv1.MatchField) bool {
			return f.GetMatchType() != p4configv1.MatchField_EXACT
		}) {
			continue
		}
		var pick *p4configv1.Action
		for _, ref := range t.GetActionRefs() {
			if ref.GetScope() == p4configv1.ActionRef_DEFAULT_ONLY {
				continue
			}
			a, err := s.ActionByID(ref.GetId())
			if err != nil {
				continue
			}
			if pick == nil || (len(pick.GetParams()) == 0 && len(a.GetParams()) > 0) {
				pick = a.Action
			}
		}
		if pick != nil {
			return t, pick
		}
	}
	return nil, nil
}

// oneShotWeights are the weights of a two-action set (one action if the
// selector's groups hold only one) that fits the profile's max_group_size.
func oneShotWeights(p *p4rt.ActionProfile) []int32 {
	mg := p.GetMaxGroupSize()
	switch {
	case p.GetSumOfMembers() != nil && (mg == 0 || mg >= 2):
		return []int32{1, 1}
	case mg == 0 || mg >= 3:
		return []int32{2, 1}
	case mg == 2:
		return []int32{1, 1}
	default:
		return []int32{1}
	}
}

// oneShotReadBack checks spec §9.2.3's read-write symmetry for one-shot
// action selector programming: an entry written with an
// action_profile_action_set reads back with that set, not a desugared
// member or group, before and after a MODIFY. It runs only when the
// P4Info has a selector table whose key is all exact.
func (s *suite) oneShotReadBack(t *testing.T) {
	tbl, action := pickSelectorTable(s.schema)
	if tbl == nil {
		t.Skip("the P4Info has no action selector table with an exact key")
	}
	p := s.fresh(t, 19)
	weights := oneShotWeights(tbl.Profile)
	entry := func(base uint64) *p4v1.TableEntry {
		e := &p4v1.TableEntry{TableId: tbl.ID()}
		fields := slices.Clone(tbl.GetMatchFields())
		slices.SortFunc(fields, func(a, b *p4configv1.MatchField) int { return int(a.GetId()) - int(b.GetId()) })
		for _, f := range fields {
			e.Match = append(e.Match, &p4v1.FieldMatch{FieldId: f.GetId(), FieldMatchType: &p4v1.FieldMatch_Exact_{Exact: &p4v1.FieldMatch_Exact{Value: value(1, f.GetBitwidth())}}})
		}
		set := &p4v1.ActionProfileActionSet{}
		for i, w := range weights {
			a := &p4v1.Action{ActionId: action.GetPreamble().GetId()}
			for _, prm := range action.GetParams() {
				a.Params = append(a.Params, &p4v1.Action_Param{ParamId: prm.GetId(), Value: value(base+uint64(i), prm.GetBitwidth())})
			}
			set.ActionProfileActions = append(set.ActionProfileActions, &p4v1.ActionProfileAction{Action: a, Weight: w})
		}
		e.Action = &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileActionSet{ActionProfileActionSet: set}}
		return e
	}
	check := func(what string, want *p4v1.TableEntry) {
		t.Helper()
		if got := s.read(t, tableQuery(&p4v1.TableEntry{TableId: want.TableId, Match: want.Match})); len(got) != 1 || !proto.Equal(got[0].GetTableEntry(), want) {
			t.Errorf("%s: read back %v,\nwrote %v", what, got, want)
		}
		if got := s.read(t, tableQuery(&p4v1.TableEntry{TableId: want.TableId})); len(got) != 1 || !proto.Equal(got[0].GetTableEntry(), want) {
			t.Errorf("%s: wildcard read %v,\nwrote %v", what, got, want)
		}
	}
	e := entry(2)
	s.mustWrite(t, p, update(p4v1.Update_INSERT, e))
	check("after INSERT", e)
	e = entry(7)
	slices.Reverse(e.GetAction().GetActionProfileActionSet().ActionProfileActions)
	s.mustWrite(t, p, update(p4v1.Update_MODIFY, e))
	check("after MODIFY", e)
	s.mustWrite(t, p, update(p4v1.Update_DELETE, e))
	if got := s.read(t, tableQuery(&p4v1.TableEntry{TableId: e.TableId})); len(got) != 0 {
		t.Errorf("after DELETE the table has %d entries, want 0", len(got))
	}
}
