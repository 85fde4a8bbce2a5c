package watch

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
)

// maxSorted is the largest itemSet kept as a sorted slice. A Go map costs
// about 80 bytes an item whatever its size (measured: map[string]any of
// 100 to 2,000 items), a sorted slice 32. A controller holds a table per
// host and per published service, most of them of a few hundred or
// thousand items, and at a million endpoints their maps were a fifth of
// its heap. A slice costs a put or delete O(n) bytes moved, up to 256 KiB
// here (microseconds); beyond, a table (a VPC's million routes) keeps a
// map, whose puts stay O(1).
const maxSorted = 8192

// bulkMerge is how many changes make apply merge them into a new slice
// in one pass rather than insert them one by one.
const bulkMerge = 16

// itemSet is a table's items by key: a slice sorted by key up to
// maxSorted items, a map beyond. Both are exact: the slice holds no
// tombstones, so its length is the set's.
type itemSet struct {
	sorted []item // the items by key, when m is nil
	m      map[string]proto.Message
}

// newItemSet makes a set of items, taking the map itself if it stays one.
func newItemSet(items map[string]proto.Message) itemSet {
	if len(items) > maxSorted {
		return itemSet{m: items}
	}
	s := itemSet{sorted: make([]item, 0, len(items))}
	for k, v := range items {
		s.sorted = append(s.sorted, item{k, v})
	}
	slices.SortFunc(s.sorted, compareItems)
	return s
}

func compareItems(a, b item) int { return strings.Compare(a.key, b.key) }

func (s *itemSet) len() int {
	if s.m != nil {
		return len(s.m)
	}
	return len(s.sorted)
}

// find is where key is or would go in s.sorted.
func (s *itemSet) find(key string) (int, bool) {
	return slices.BinarySearchFunc(s.sorted, key, func(it item, k string) int { return strings.Compare(it.key, k) })
}

func (s *itemSet) get(key string) (proto.Message, bool) {
	if s.m != nil {
		v, ok := s.m[key]
		return v, ok
	}
	if i, ok := s.find(key); ok {
		return s.sorted[i].val, true
	}
	return nil, false
}

// set stores v (not nil) under key, or deletes key if v is nil. The
// caller settles the set after its changes.
func (s *itemSet) set(key string, v proto.Message) {
	if s.m != nil {
		if v == nil {
			delete(s.m, key)
		} else {
			s.m[key] = v
		}
		return
	}
	i, ok := s.find(key)
	switch {
	case ok && v != nil:
		s.sorted[i].val = v
	case ok:
		n := len(s.sorted)
		copy(s.sorted[i:], s.sorted[i+1:])
		s.sorted[n-1] = item{} // release the value to the collector
		s.sorted = s.sorted[:n-1]
		if cap(s.sorted) > 64 && len(s.sorted) < cap(s.sorted)/2 {
			s.sorted = slices.Clip(slices.Clone(s.sorted))
		}
	case v != nil:
		if len(s.sorted) == cap(s.sorted) {
			// Grown by an eighth, not append's doubling: a table
			// grows by the odd item, and a slice twice its length
			// would give back what the slice saves on a map.
			grown := make([]item, len(s.sorted), len(s.sorted)+len(s.sorted)/8+4)
			copy(grown, s.sorted)
			s.sorted = grown
		}
		s.sorted = slices.Insert(s.sorted, i, item{key, v})
	}
}

// apply makes every change of cs (sorted by key, distinct): val stored
// under key, or key deleted if val is nil. n is how many items the set
// holds after them.
func (s *itemSet) apply(cs []change, n int) {
	defer s.settle()
	if s.m != nil || len(cs) < bulkMerge {
		for _, c := range cs {
			s.set(c.key, c.val)
		}
		return
	}
	// One pass over both, into a slice of the exact size.
	out := make([]item, 0, n)
	i := 0
	for _, c := range cs {
		for i < len(s.sorted) && s.sorted[i].key < c.key {
			out = append(out, s.sorted[i])
			i++
		}
		if i < len(s.sorted) && s.sorted[i].key == c.key {
			i++ // replaced or deleted
		}
		if c.val != nil {
			out = append(out, item{c.key, c.val})
		}
	}
	out = append(out, s.sorted[i:]...)
	s.sorted = out
}

// settle makes the slice a map once it is over maxSorted, and the map a
// slice again once it is well under (half, so that a table at the bound
// does not flip at every change).
func (s *itemSet) settle() {
	if s.m != nil && len(s.m) <= maxSorted/2 {
		m := s.m
		*s = newItemSet(m)
		return
	}
	if s.m != nil || len(s.sorted) <= maxSorted {
		return
	}
	s.m = make(map[string]proto.Message, len(s.sorted))
	for _, it := range s.sorted {
		s.m[it.key] = it.val
	}
	s.sorted = nil
}

// all calls f for every item, in key order if the set is a slice.
func (s *itemSet) all(f func(key string, v proto.Message)) {
	if s.m != nil {
		for k, v := range s.m {
			f(k, v)
		}
		return
	}
	for _, it := range s.sorted {
		f(it.key, it.val)
	}
}

// items returns a copy of the items, and whether it is sorted by key:
// a map's are not, and sorting a million of them is left to the caller,
// outside its lock.
func (s *itemSet) items() ([]item, bool) {
	if s.m == nil {
		return slices.Clone(s.sorted), true
	}
	out := make([]item, 0, len(s.m))
	for k, v := range s.m {
		out = append(out, item{k, v})
	}
	return out, false
}
