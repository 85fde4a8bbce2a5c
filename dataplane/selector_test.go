package dataplane

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
)

// TestGroupSlotsFollowBMv2 checks that a group's members are laid out as
// BMv2 under PI lays them out, so a selector hash picks the same member on
// both targets: members get handles lowest-free-first, a member of weight w
// gets w-1 copies (made in ascending member id), and the group is indexed
// in ascending handle order.
func TestGroupSlotsFollowBMv2(t *testing.T) {
	s := newCommitted(t)
	member := func(typ p4v1.Update_Type, id uint32) *p4v1.Update {
		return &p4v1.Update{Type: typ, Entity: &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: &p4v1.ActionProfileMember{
			ActionProfileId: pSelector, MemberId: id,
			Action: &p4v1.Action{ActionId: aEncap, Params: []*p4v1.Action_Param{{ParamId: 1, Value: []byte{1}}, {ParamId: 2, Value: []byte{1}}, {ParamId: 3, Value: []byte{1}}}},
		}}}}
	}
	group := func(typ p4v1.Update_Type, id uint32, weights ...int32) *p4v1.Update {
		g := &p4v1.ActionProfileGroup{ActionProfileId: pSelector, GroupId: id}
		for i := 0; i < len(weights); i += 2 {
			g.Members = append(g.Members, &p4v1.ActionProfileGroup_Member{MemberId: uint32(weights[i]), Weight: weights[i+1]})
		}
		return &p4v1.Update{Type: typ, Entity: &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileGroup{ActionProfileGroup: g}}}
	}
	write := func(us ...*p4v1.Update) {
		t.Helper()
		if _, err := s.Write(nil, &p4v1.WriteRequest{DeviceId: 1, Updates: us}); err != nil {
			t.Fatal(err)
		}
	}
	slots := func(gid uint32) []uint32 {
		var ids []uint32
		for _, m := range s.Store().Group(pSelector, gid).slots {
			ids = append(ids, m.ID)
		}
		return ids
	}

	write(member(p4v1.Update_INSERT, 1), member(p4v1.Update_INSERT, 2), member(p4v1.Update_INSERT, 3))
	// Handles 0, 1, 2; member 1's weight copy gets 3.
	write(group(p4v1.Update_INSERT, 10, 1, 2, 2, 1, 3, 1))
	if got, want := slots(10), []uint32{1, 2, 3, 1}; !slices.Equal(got, want) {
		t.Errorf("slots = %v; want %v", got, want)
	}
	// Lower the weights: the copy goes, and its handle is reused lowest
	// first by the next member.
	write(group(p4v1.Update_MODIFY, 10, 1, 1, 2, 1, 3, 1))
	if got, want := slots(10), []uint32{1, 2, 3}; !slices.Equal(got, want) {
		t.Errorf("slots after modify = %v; want %v", got, want)
	}
	write(member(p4v1.Update_INSERT, 4), group(p4v1.Update_INSERT, 11, 4, 1, 2, 2))
	// Member 4 takes handle 3; member 2's copy takes 4: slots by handle
	// are 2 (h1), 4 (h3), 2 (h4).
	if got, want := slots(11), []uint32{2, 4, 2}; !slices.Equal(got, want) {
		t.Errorf("slots of group 11 = %v; want %v", got, want)
	}
	for h, want := range map[uint64]uint32{0: 2, 1: 4, 2: 2, 3: 2} {
		if m := s.Store().Group(pSelector, 11).Select(h); m.ID != want {
			t.Errorf("Select(%d) = member %d; want %d", h, m.ID, want)
		}
	}
}

// TestDigestAckOnlyFromPrimary: a backup's DigestListAck is refused with a
// stream error (the stream stays open), so it cannot release lists the
// primary has not acknowledged.
func TestDigestAckOnlyFromPrimary(t *testing.T) {
	s := newCommitted(t)
	c := startGRPC(t, s)
	primary := open(t, c, "", id(2))
	if got := primary.status(); got != codes.OK {
		t.Fatalf("primary arbitration = %s", got)
	}
	backup := open(t, c, "", id(1))
	if got := backup.status(); got != codes.AlreadyExists {
		t.Fatalf("backup arbitration = %s", got)
	}
	ack := &p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_DigestAck{DigestAck: &p4v1.DigestListAck{DigestId: dDigest, ListId: 1}}}
	if err := backup.sc.Send(ack); err != nil {
		t.Fatal(err)
	}
	for {
		m := backup.next()
		if e := m.GetError(); e != nil {
			if codes.Code(e.GetCanonicalCode()) != codes.PermissionDenied {
				t.Errorf("backup ack error = %s (%s); want PermissionDenied", codes.Code(e.GetCanonicalCode()), e.GetMessage())
			}
			break
		}
	}
	// The primary's ack of a known digest is accepted without error.
	if err := primary.sc.Send(ack); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-primary.in:
		if m.GetError() != nil {
			t.Errorf("primary ack refused: %v", m.GetError())
		}
	case <-time.After(200 * time.Millisecond):
	}
}
