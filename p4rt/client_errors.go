package p4rt

import (
	"errors"
	"fmt"
	"strings"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors of the client, for callers that branch on them with
// errors.Is.
var (
	// ErrClosed is returned by methods called after Close, or after Run
	// returned: the client does not reconnect any more.
	ErrClosed = errors.New("p4rt: client closed")
	// ErrNotPrimary is returned by operations the client refuses locally
	// because the switch has not made it the primary controller (PacketOut).
	ErrNotPrimary = errors.New("p4rt: not the primary controller")
	// ErrNotConnected is returned by stream operations (digest acks) while no
	// StreamChannel is open; they make no sense on a later stream.
	ErrNotConnected = errors.New("p4rt: stream channel not open")
)

// UpdateError is the failure of one update of a Write, as the switch reported
// it (or as the client inferred it when the switch gave no per-update detail).
type UpdateError struct {
	// Index is the position of the update in the slice passed to Write, so
	// callers can map failures back to their own desired state across batch
	// boundaries.
	Index int
	// Update is the failed update itself.
	Update *p4v1.Update
	// Code is the canonical gRPC code of the failure.
	Code codes.Code
	// Message is the switch's message for this update.
	Message string
	// Space and SpaceCode are the target-specific error space and code, when
	// the switch set them.
	Space     string
	SpaceCode int32
}

// Error describes the update and why it failed.
func (e UpdateError) Error() string {
	return fmt.Sprintf("update %d (%s): %s: %s", e.Index, describeUpdateForError(e.Update), e.Code, e.Message)
}

// WriteError reports the updates of a Write that did not succeed. Updates not
// listed in Failed were applied (the client always writes with
// CONTINUE_ON_ERROR, so one failure does not undo the others).
type WriteError struct {
	// Failed lists each failed update, in the order of the caller's slice.
	Failed []UpdateError
	// Total is the number of updates passed to Write.
	Total int
	// Err holds the RPC-level errors of batches whose per-update details could
	// not be used (none, or a count that does not match the batch); all
	// updates of such a batch are in Failed with the RPC's code. Nil when
	// every failure came with its own detail.
	Err error
}

// Error lists every failed update with its index, entity and code.
func (e *WriteError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "p4rt: write: %d of %d updates failed", len(e.Failed), e.Total)
	if e.Err != nil {
		fmt.Fprintf(&b, " (%v)", e.Err)
	}
	for i, f := range e.Failed {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "[%d] %s: %s: %s", f.Index, describeUpdateForError(f.Update), f.Code, f.Message)
	}
	return b.String()
}

// Unwrap returns the RPC-level error, if any, so status.Code and errors.Is
// see through the WriteError (e.g. context.DeadlineExceeded).
func (e *WriteError) Unwrap() error { return e.Err }

// Codes counts failures by code; convenient for callers deciding whether a
// write is worth retrying (e.g. all UNAVAILABLE) or needs a resync.
func (e *WriteError) Codes() map[codes.Code]int {
	m := make(map[codes.Code]int)
	for _, f := range e.Failed {
		m[f.Code]++
	}
	return m
}

// decodeWriteStatus turns the error of one Write RPC into per-update failures.
// batch is the slice of updates sent, base the index of batch[0] in the
// caller's slice. It returns the failed updates and, when the per-update
// details were not usable, an error explaining why (which the caller keeps in
// WriteError.Err).
//
// The details of a failed Write are, per the spec (§12), one p4.v1.Error per
// update in request order, OK for those that worked. PINS stops at the first
// failure and reports ABORTED for the rest, which fits the same shape. ONOS
// trusts the details only when their count equals the batch size; so do we:
// otherwise, or with no details at all (PERMISSION_DENIED, FAILED_PRECONDITION,
// a header overflow turned RESOURCE_EXHAUSTED...), every update of the batch is
// reported failed with the RPC's code, since none is known to have applied.
func decodeWriteStatus(err error, batch []*p4v1.Update, base int) ([]UpdateError, error) {
	st := status.Convert(err)
	details := st.Proto().GetDetails()
	perUpdate := make([]*p4v1.Error, 0, len(details))
	usable := len(details) == len(batch)
	for _, d := range details {
		if !usable {
			break
		}
		pe := new(p4v1.Error)
		if d.UnmarshalTo(pe) != nil {
			usable = false
			break
		}
		perUpdate = append(perUpdate, pe)
	}

	var failed []UpdateError
	if usable {
		for i, pe := range perUpdate {
			if codes.Code(pe.GetCanonicalCode()) == codes.OK {
				continue
			}
			failed = append(failed, UpdateError{
				Index:     base + i,
				Update:    batch[i],
				Code:      codes.Code(pe.GetCanonicalCode()),
				Message:   pe.GetMessage(),
				Space:     pe.GetSpace(),
				SpaceCode: pe.GetCode(),
			})
		}
		if len(failed) > 0 {
			return failed, nil
		}
		// Every detail says OK but the RPC failed: the details contradict the
		// status, so trust neither and fail the whole batch below.
	}

	var why error
	switch {
	case len(details) == 0:
		why = fmt.Errorf("updates %d..%d: %w", base, base+len(batch)-1, err)
	case !usable:
		why = fmt.Errorf("updates %d..%d: per-update details not usable (%d details for %d updates): %w",
			base, base+len(batch)-1, len(details), len(batch), err)
	default:
		why = fmt.Errorf("updates %d..%d: details all OK but the write failed: %w", base, base+len(batch)-1, err)
	}
	failed = make([]UpdateError, len(batch))
	for i, u := range batch {
		failed[i] = UpdateError{Index: base + i, Update: u, Code: st.Code(), Message: st.Message()}
	}
	return failed, why
}

// describeUpdateForError names the entity of an update for error messages: its type
// and the ids that locate it, not the whole (possibly large) message.
func describeUpdateForError(u *p4v1.Update) string {
	if u == nil {
		return "<nil update>"
	}
	return u.GetType().String() + " " + describeEntityForError(u.GetEntity())
}

// describeEntityForError is the entity half of describeUpdateForError.
func describeEntityForError(e *p4v1.Entity) string {
	switch x := e.GetEntity().(type) {
	case *p4v1.Entity_TableEntry:
		te := x.TableEntry
		if te.GetIsDefaultAction() {
			return fmt.Sprintf("table_entry table_id=%d (default)", te.GetTableId())
		}
		return fmt.Sprintf("table_entry table_id=%d", te.GetTableId())
	case *p4v1.Entity_ActionProfileMember:
		return fmt.Sprintf("action_profile_member profile_id=%d member_id=%d",
			x.ActionProfileMember.GetActionProfileId(), x.ActionProfileMember.GetMemberId())
	case *p4v1.Entity_ActionProfileGroup:
		return fmt.Sprintf("action_profile_group profile_id=%d group_id=%d",
			x.ActionProfileGroup.GetActionProfileId(), x.ActionProfileGroup.GetGroupId())
	case *p4v1.Entity_CounterEntry:
		return fmt.Sprintf("counter_entry counter_id=%d", x.CounterEntry.GetCounterId())
	case *p4v1.Entity_DirectCounterEntry:
		return fmt.Sprintf("direct_counter_entry table_id=%d", x.DirectCounterEntry.GetTableEntry().GetTableId())
	case *p4v1.Entity_MeterEntry:
		return fmt.Sprintf("meter_entry meter_id=%d", x.MeterEntry.GetMeterId())
	case *p4v1.Entity_DirectMeterEntry:
		return fmt.Sprintf("direct_meter_entry table_id=%d", x.DirectMeterEntry.GetTableEntry().GetTableId())
	case *p4v1.Entity_RegisterEntry:
		return fmt.Sprintf("register_entry register_id=%d", x.RegisterEntry.GetRegisterId())
	case *p4v1.Entity_DigestEntry:
		return fmt.Sprintf("digest_entry digest_id=%d", x.DigestEntry.GetDigestId())
	case *p4v1.Entity_ValueSetEntry:
		return fmt.Sprintf("value_set_entry value_set_id=%d", x.ValueSetEntry.GetValueSetId())
	case *p4v1.Entity_ExternEntry:
		return fmt.Sprintf("extern_entry type_id=%d id=%d", x.ExternEntry.GetExternTypeId(), x.ExternEntry.GetExternId())
	case *p4v1.Entity_PacketReplicationEngineEntry:
		pre := x.PacketReplicationEngineEntry
		switch {
		case pre.GetMulticastGroupEntry() != nil:
			return fmt.Sprintf("multicast_group_entry group_id=%d", pre.GetMulticastGroupEntry().GetMulticastGroupId())
		case pre.GetCloneSessionEntry() != nil:
			return fmt.Sprintf("clone_session_entry session_id=%d", pre.GetCloneSessionEntry().GetSessionId())
		}
		return "packet_replication_engine_entry"
	case nil:
		return "<no entity>"
	default:
		return fmt.Sprintf("%T", x)
	}
}
