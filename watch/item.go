package watch

import "google.golang.org/protobuf/proto"

// Equaler is an item that tells whether it equals another item (as
// proto.Equal would) without reflection. An owner whose items stand for
// messages they build on demand (a compact record of one endpoint, whose
// ProtoReflect makes the message it stands for) implements it: a table
// compares what it holds with every put, and at a million items proto.Equal
// of two such records would build two messages per put.
//
// EqualItem must agree with proto.Equal: a table that took a put for a
// no-op, or the reverse, would send clients a change that is none or miss
// one.
type Equaler interface {
	proto.Message
	EqualItem(other proto.Message) bool
}

// equal is proto.Equal, through EqualItem where either item has it.
func equal(a, b proto.Message) bool {
	if e, ok := a.(Equaler); ok {
		return e.EqualItem(b)
	}
	if e, ok := b.(Equaler); ok {
		return e.EqualItem(a)
	}
	return proto.Equal(a, b)
}
