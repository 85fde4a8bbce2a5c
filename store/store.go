package store

import (
	"context"
	"errors"
	"fmt"
	"iter"
)

// Op is one change to one item: Value is the item's new content, or nil to
// delete the item. An empty non-nil Value is an item with empty content,
// not a delete.
type Op struct {
	Key   string
	Value []byte
}

// Delete reports whether op removes its item.
func (op Op) Delete() bool { return op.Value == nil }

// Batch is one committed Commit as a watcher sees it: the revision the
// commit was given and its ops.
type Batch struct {
	Rev uint64
	Ops []Op
}

// Backend is a durable item store. Its methods are safe for concurrent
// use.
type Backend interface {
	// Load returns every item and the revision they are all at: the
	// revision of the last commit the returned items include. Watch
	// from that revision to follow what comes after.
	Load(ctx context.Context) (items map[string][]byte, rev uint64, err error)

	// Commit applies ops atomically, all or none, and returns once they
	// are durable, with the revision they were given. Revisions of
	// successive commits strictly increase. Ops must pass CheckOps; a
	// backend may refuse more (a limit on ops per commit). If Commit
	// returns an error, none of ops was applied, unless the error says
	// the outcome is unknown (ErrUnknownOutcome): a commit whose
	// acknowledgement was lost may have landed.
	Commit(ctx context.Context, ops []Op) (rev uint64, err error)

	// Watch yields the batches committed after afterRev, in revision
	// order, until ctx is done (then it stops without an error) or
	// something fails: the last pair carries the error, such as
	// ErrCompacted when the history after afterRev is gone and the
	// watcher must Load again.
	Watch(ctx context.Context, afterRev uint64) iter.Seq2[Batch, error]

	// Close releases the backend. Commits and watches in flight end
	// with errors.
	Close() error
}

var (
	// ErrCompacted is a Watch from a revision whose history the store
	// no longer keeps. The watcher must Load and watch from there.
	ErrCompacted = errors.New("store: revision compacted")

	// ErrNotLeader is a guarded Commit refused because the replica
	// that made it no longer holds its shard's leadership. Nothing was
	// applied.
	ErrNotLeader = errors.New("store: not the leader")

	// ErrClosed is an operation on a closed backend.
	ErrClosed = errors.New("store: closed")

	// ErrUnknownOutcome is a Commit whose result was lost (the
	// connection to etcd broke after the request was sent): it may or
	// may not have been applied. Load, or watch, to find out.
	ErrUnknownOutcome = errors.New("store: commit outcome unknown")
)

// Limits every backend accepts. They are bounds on one item, not on the
// store: etcd refuses requests over 1.5 MiB by default, and a key is
// meant to name an item, not to carry it.
const (
	MaxKeyLen   = 4096
	MaxValueLen = 1 << 20
)

// OpError is an op that CheckOps refuses.
type OpError struct {
	Index int    // the op's position in the commit
	Key   string // the op's key, cut to 100 bytes
	Why   string
}

func (e *OpError) Error() string {
	return fmt.Sprintf("store: op %d (key %q): %s", e.Index, e.Key, e.Why)
}

// CheckOps returns an error naming the first op that no backend can
// commit: no ops at all, an empty or over-long key, an over-long value, a
// key twice in one commit (which of the two would win is not obvious,
// and etcd refuses it).
func CheckOps(ops []Op) error {
	if len(ops) == 0 {
		return errors.New("store: commit of no ops")
	}
	var seen map[string]struct{}
	if len(ops) > 1 {
		seen = make(map[string]struct{}, len(ops))
	}
	for i, op := range ops {
		bad := func(why string, args ...any) error {
			k := op.Key
			if len(k) > 100 {
				k = k[:100]
			}
			return &OpError{Index: i, Key: k, Why: fmt.Sprintf(why, args...)}
		}
		switch {
		case op.Key == "":
			return bad("empty key")
		case len(op.Key) > MaxKeyLen:
			return bad("key of %d bytes, over the limit of %d", len(op.Key), MaxKeyLen)
		case len(op.Value) > MaxValueLen:
			return bad("value of %d bytes, over the limit of %d", len(op.Value), MaxValueLen)
		}
		if seen != nil {
			if _, dup := seen[op.Key]; dup {
				return bad("key given twice in one commit")
			}
			seen[op.Key] = struct{}{}
		}
	}
	return nil
}
