// Package storetest is the behaviour every store.Backend must have, as a
// test suite each backend's tests run against a real instance.
package storetest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/store"
)

// Opener opens the one store a subtest works on; called again after
// Close, it opens the same store, as a restarted process would.
type Opener func() store.Backend

// Run runs the suite. newStore returns an Opener for a fresh, empty
// store; it registers its own clean-up with t.
func Run(t *testing.T, newStore func(t *testing.T) Opener) {
	t.Run("CommitLoad", func(t *testing.T) { testCommitLoad(t, newStore(t)) })
	t.Run("Reopen", func(t *testing.T) { testReopen(t, newStore(t)) })
	t.Run("BadOpsChangeNothing", func(t *testing.T) { testBadOps(t, newStore(t)) })
	t.Run("Watch", func(t *testing.T) { testWatch(t, newStore(t)) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, newStore(t)) })
}

// Deadline bounds every wait in the suite: generous, for -race on a
// loaded machine.
const Deadline = 20 * time.Second

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), Deadline)
	t.Cleanup(cancel)
	return c
}

func mustCommit(t *testing.T, b store.Backend, ops ...store.Op) uint64 {
	t.Helper()
	rev, err := b.Commit(ctx(t), ops)
	if err != nil {
		t.Fatalf("Commit(%v): %v", ops, err)
	}
	return rev
}

// MustLoad loads b or fails t.
func MustLoad(t testing.TB, b store.Backend) (map[string][]byte, uint64) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), Deadline)
	defer cancel()
	items, rev, err := b.Load(c)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return items, rev
}

func put(k, v string) store.Op { return store.Op{Key: k, Value: []byte(v)} }
func del(k string) store.Op    { return store.Op{Key: k} }

// Equal reports the difference between two item sets, or "".
func Equal(got, want map[string][]byte) string {
	var diff []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			diff = append(diff, fmt.Sprintf("missing %q", k))
		case !bytes.Equal(g, w) || (g == nil) != (w == nil):
			diff = append(diff, fmt.Sprintf("%q = %q, want %q", k, g, w))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			diff = append(diff, fmt.Sprintf("extra %q", k))
		}
	}
	if len(diff) > 10 {
		diff = append(diff[:10], fmt.Sprintf("and %d more", len(diff)-10))
	}
	return strings.Join(diff, "; ")
}

func testCommitLoad(t *testing.T, open Opener) {
	b := open()
	defer b.Close()
	items, rev0 := MustLoad(t, b)
	if len(items) != 0 {
		t.Fatalf("new store has %d items", len(items))
	}
	r1 := mustCommit(t, b, put("a", "1"), put("b", "2"), store.Op{Key: "empty", Value: []byte{}})
	r2 := mustCommit(t, b, del("a"), put("b", "3"), put("c", "4"))
	r3 := mustCommit(t, b, del("never-there"))
	if !(rev0 < r1 && r1 < r2 && r2 < r3) {
		t.Errorf("revisions %d (load), %d, %d, %d: want strictly increasing", rev0, r1, r2, r3)
	}
	items, rev := MustLoad(t, b)
	if rev != r3 {
		t.Errorf("Load revision %d, want %d, the last commit's", rev, r3)
	}
	want := map[string][]byte{"b": []byte("3"), "c": []byte("4"), "empty": {}}
	if d := Equal(items, want); d != "" {
		t.Errorf("Load: %s", d)
	}
	if v, ok := items["empty"]; !ok || v == nil {
		t.Errorf("an empty value loads as %v (present %v): want a non-nil empty value, it is not a delete", v, ok)
	}
}

func testReopen(t *testing.T, open Opener) {
	b := open()
	want := map[string][]byte{}
	var last uint64
	for i := range 20 {
		k := fmt.Sprintf("k%02d", i)
		v := fmt.Sprintf("v%d", i)
		ops := []store.Op{put(k, v)}
		want[k] = []byte(v)
		if i%3 == 2 {
			prev := fmt.Sprintf("k%02d", i-1)
			ops = append(ops, del(prev))
			delete(want, prev)
		}
		last = mustCommit(t, b, ops...)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	b = open()
	defer b.Close()
	items, rev := MustLoad(t, b)
	if d := Equal(items, want); d != "" {
		t.Errorf("after reopen: %s", d)
	}
	if rev != last {
		t.Errorf("after reopen at revision %d, want %d", rev, last)
	}
	if r := mustCommit(t, b, put("after", "x")); r <= last {
		t.Errorf("first commit after reopen got revision %d, not above %d", r, last)
	}
}

func testBadOps(t *testing.T, open Opener) {
	b := open()
	defer b.Close()
	mustCommit(t, b, put("keep", "1"))
	before, rev := MustLoad(t, b)
	long := strings.Repeat("k", store.MaxKeyLen+1)
	for _, c := range []struct {
		name string
		ops  []store.Op
		want string
	}{
		{"none", nil, "no ops"},
		{"empty key", []store.Op{put("x", "1"), put("", "2")}, "op 1 (key \"\"): empty key"},
		{"twice", []store.Op{put("keep", "2"), put("y", "1"), del("keep")}, "op 2 (key \"keep\"): key given twice"},
		{"long key", []store.Op{put("x", "1"), {Key: long, Value: []byte("v")}}, "over the limit of 4096"},
		{"long value", []store.Op{del("keep"), {Key: "big", Value: make([]byte, store.MaxValueLen+1)}}, "value of 1048577 bytes"},
	} {
		_, err := b.Commit(ctx(t), c.ops)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Commit error %v, want one saying %q", c.name, err, c.want)
		}
	}
	after, rev2 := MustLoad(t, b)
	if d := Equal(after, before); d != "" || rev2 != rev {
		t.Errorf("refused commits changed the store: revision %d → %d; %s", rev, rev2, d)
	}
}

// Collect reads n batches from b's watch after rev, or fails t. It
// calls t.Fatalf: use it only on the test's goroutine; elsewhere use Read.
func Collect(t testing.TB, b store.Backend, after uint64, n int) []store.Batch {
	t.Helper()
	got, err := Read(b, after, n)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// Read reads n batches from b's watch after rev, within Deadline.
func Read(b store.Backend, after uint64, n int) ([]store.Batch, error) {
	c, cancel := context.WithTimeout(context.Background(), Deadline)
	defer cancel()
	var got []store.Batch
	if n == 0 {
		return nil, nil
	}
	for batch, err := range b.Watch(c, after) {
		if err != nil {
			return got, fmt.Errorf("watch after %d, after %d batches: %w", after, len(got), err)
		}
		got = append(got, batch)
		if len(got) == n {
			return got, nil
		}
	}
	return got, fmt.Errorf("watch after %d: %d batches within %v, want %d", after, len(got), Deadline, n)
}

func sameOps(a, b []store.Op) bool {
	if len(a) != len(b) {
		return false
	}
	am := make(map[string][]byte)
	for _, op := range a {
		am[op.Key] = op.Value
	}
	for _, op := range b {
		v, ok := am[op.Key]
		if !ok || !bytes.Equal(v, op.Value) || (v == nil) != (op.Value == nil) {
			return false
		}
	}
	return true
}

func testWatch(t *testing.T, open Opener) {
	b := open()
	defer b.Close()
	mustCommit(t, b, put("before", "0"))
	_, start := MustLoad(t, b)

	live := make(chan []store.Batch, 1)
	ready := make(chan struct{})
	go func() {
		// The watch starts before the commits and after start: it must
		// see all of them, none twice.
		close(ready)
		c, cancel := context.WithTimeout(context.Background(), Deadline)
		defer cancel()
		var got []store.Batch
		for batch, err := range b.Watch(c, start) {
			if err != nil {
				t.Errorf("live watch: %v", err)
				break
			}
			if got = append(got, batch); len(got) == 5 {
				break
			}
		}
		live <- got
	}()
	<-ready
	var want []store.Batch
	for i := range 5 {
		ops := []store.Op{put(fmt.Sprintf("w%d", i), fmt.Sprint(i))}
		if i == 3 {
			ops = append(ops, del("before"), store.Op{Key: "e", Value: []byte{}})
		}
		want = append(want, store.Batch{Rev: mustCommit(t, b, ops...), Ops: ops})
	}
	check := func(name string, got []store.Batch) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d batches, want %d", name, len(got), len(want))
		}
		for i := range want {
			if got[i].Rev != want[i].Rev || !sameOps(got[i].Ops, want[i].Ops) {
				t.Errorf("%s: batch %d = %d %v, want %d %v", name, i, got[i].Rev, got[i].Ops, want[i].Rev, want[i].Ops)
			}
		}
	}
	check("live watch", <-live)
	check("watch from history", Collect(t, b, start, 5))
	if got := Collect(t, b, want[2].Rev, 2); got[0].Rev != want[3].Rev {
		t.Errorf("watch after revision %d starts at %d, want %d", want[2].Rev, got[0].Rev, want[3].Rev)
	}

	// A cancelled watch ends without an error.
	c, cancel := context.WithCancel(context.Background())
	cancel()
	for _, err := range b.Watch(c, want[4].Rev) {
		t.Errorf("cancelled watch yielded %v", err)
	}
}

func testConcurrent(t *testing.T, open Opener) {
	b := open()
	defer b.Close()
	_, start := MustLoad(t, b)
	const writers, each = 64, 8
	var (
		mu   sync.Mutex
		revs = map[uint64]string{}
		want = map[string][]byte{}
		wg   sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				k := fmt.Sprintf("w%02d-%d", w, i)
				rev, err := b.Commit(ctx(t), []store.Op{put(k, k)})
				if err != nil {
					t.Errorf("Commit %s: %v", k, err)
					return
				}
				mu.Lock()
				if other, dup := revs[rev]; dup {
					t.Errorf("revision %d given to %s and %s", rev, other, k)
				}
				revs[rev] = k
				want[k] = []byte(k)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	items, _ := MustLoad(t, b)
	if d := Equal(items, want); d != "" {
		t.Errorf("after concurrent commits: %s", d)
	}
	got := Collect(t, b, start, writers*each)
	for i, batch := range got {
		if i > 0 && batch.Rev <= got[i-1].Rev {
			t.Fatalf("watch: revision %d after %d", batch.Rev, got[i-1].Rev)
		}
		if k := revs[batch.Rev]; len(batch.Ops) != 1 || batch.Ops[0].Key != k {
			t.Errorf("watch: revision %d carries %v, but was acknowledged for %q", batch.Rev, batch.Ops, k)
		}
	}
}
