package controller

import (
	"fmt"
	"hash/maphash"
)

// posIndex is an index of positions in an ordered list by a key of the
// item at each position: the list's own index by id (ordered.at) and the
// model's endpoints by IP, MAC and port.
type posIndex[K comparable] interface {
	get(k K) (int32, bool)
	set(k K, p int32)
	del(k K)
	// move makes the positions follow a compaction of the list, which
	// moved position p to moved[p].
	move(moved []int32)
	len() int
}

// mapIndex is a posIndex in a map, for lists of a few thousand items.
type mapIndex[K comparable] map[K]int32

func (m mapIndex[K]) get(k K) (int32, bool) { p, ok := m[k]; return p, ok }
func (m mapIndex[K]) set(k K, p int32)      { m[k] = p }
func (m mapIndex[K]) del(k K)               { delete(m, k) }
func (m mapIndex[K]) len() int              { return len(m) }

func (m mapIndex[K]) move(moved []int32) {
	for k, p := range m {
		m[k] = moved[p]
	}
}

// keyIndex is a posIndex that stores only the positions, 4 bytes a slot
// of an open-addressed table at most 3/4 full: 5 to 11 bytes an item,
// where a Go map of the key and an int32 is 28 to 40 (at a million
// endpoints, four such maps were a quarter of the model). The key of a
// slot is read from the item at its position (keyAt): a lookup reads the
// items it probes, a few, which costs nothing next to what a change does
// with the item it finds.
//
// keyAt(p) must be the key p was set with for as long as p is in the
// index: an item's key may change only once its entry is deleted (the
// model unindexes an endpoint before it replaces it), and the index then
// holds at most one position per key, as a map would.
type keyIndex[K comparable] struct {
	slots []int32 // position+1; 0 is an empty slot
	n     int
	seed  maphash.Seed
	keyAt func(p int32) K
}

func newKeyIndex[K comparable](n int, keyAt func(int32) K) *keyIndex[K] {
	size := 8
	for size*3 < n*4 {
		size *= 2
	}
	return &keyIndex[K]{slots: make([]int32, size), seed: maphash.MakeSeed(), keyAt: keyAt}
}

func (x *keyIndex[K]) home(k K) int {
	return int(maphash.Comparable(x.seed, k) & uint64(len(x.slots)-1))
}

// find is k's slot, or the empty slot where it would go.
func (x *keyIndex[K]) find(k K) (int, bool) {
	mask := len(x.slots) - 1
	for i := x.home(k); ; i = (i + 1) & mask {
		s := x.slots[i]
		if s == 0 {
			return i, false
		}
		if x.keyAt(s-1) == k {
			return i, true
		}
	}
}

func (x *keyIndex[K]) get(k K) (int32, bool) {
	i, ok := x.find(k)
	if !ok {
		return 0, false
	}
	return x.slots[i] - 1, true
}

func (x *keyIndex[K]) set(k K, p int32) {
	i, ok := x.find(k)
	if !ok && (x.n+1)*4 > len(x.slots)*3 {
		x.grow()
		i, _ = x.find(k)
	}
	if !ok {
		x.n++
	}
	x.slots[i] = p + 1
}

func (x *keyIndex[K]) grow() {
	old := x.slots
	x.slots = make([]int32, 2*len(old))
	for _, s := range old {
		if s != 0 {
			i, _ := x.find(x.keyAt(s - 1))
			x.slots[i] = s
		}
	}
}

// del deletes k, moving back the slots after it that probed past it, so
// that a lookup still stops at the first empty slot (linear probing's
// deletion without tombstones).
func (x *keyIndex[K]) del(k K) {
	i, ok := x.find(k)
	if !ok {
		return
	}
	x.n--
	mask := len(x.slots) - 1
	for j := (i + 1) & mask; x.slots[j] != 0; j = (j + 1) & mask {
		h := x.home(x.keyAt(x.slots[j] - 1))
		// The slot at j stays if its home is cyclically in (i, j].
		if (i < j && i < h && h <= j) || (j < i && (i < h || h <= j)) {
			continue
		}
		x.slots[i] = x.slots[j]
		i = j
	}
	x.slots[i] = 0
}

func (x *keyIndex[K]) move(moved []int32) {
	for i, s := range x.slots {
		if s != 0 {
			p := moved[s-1]
			if p < 0 {
				panic(fmt.Sprintf("controller: an index holds position %d, deleted", s-1))
			}
			x.slots[i] = p + 1
		}
	}
}

func (x *keyIndex[K]) len() int { return x.n }

// deleteAt deletes k from x if it is at position p.
func deleteAt[K comparable](x posIndex[K], k K, p int32) {
	if q, ok := x.get(k); ok && q == p {
		x.del(k)
	}
}
