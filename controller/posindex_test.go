package controller

import (
	"math/rand/v2"
	"testing"
)

// TestKeyIndexMatchesMap drives a keyIndex and a map through random sets,
// deletes, lookups of absent keys and moves, with few keys and many
// collisions (keys hashed into a small table cluster and wrap around its
// end), growing it from its smallest size; after each step every key must
// be found where the map has it, and no other.
func TestKeyIndexMatchesMap(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 14))
	var recs []uint16 // position → key of the item there
	x := newKeyIndex(0, func(p int32) uint16 { return recs[p] })
	want := map[uint16]int32{}
	check := func(step int) {
		t.Helper()
		if x.len() != len(want) {
			t.Fatalf("step %d: %d keys, want %d", step, x.len(), len(want))
		}
		for k := range uint16(300) {
			p, ok := x.get(k)
			if w, wok := want[k]; ok != wok || p != w {
				t.Fatalf("step %d: get(%d) = %d, %v; want %d, %v", step, k, p, ok, w, wok)
			}
		}
	}
	for step := range 20000 {
		k := uint16(r.IntN(300))
		switch n := r.IntN(10); {
		case n < 5:
			// A new position with key k, as a put appends an item.
			recs = append(recs, k)
			x.set(k, int32(len(recs)-1))
			want[k] = int32(len(recs) - 1)
		case n < 9:
			x.del(k)
			delete(want, k)
		default:
			// A compaction: the items left keep their order.
			moved := make([]int32, len(recs))
			var live []uint16
			for p := range recs {
				moved[p] = -1
			}
			for _, p := range want {
				moved[p] = 0
			}
			for p, key := range recs {
				if moved[p] == 0 {
					moved[p] = int32(len(live))
					live = append(live, key)
				}
			}
			for k, p := range want {
				want[k] = moved[p]
			}
			x.move(moved)
			recs = live
		}
		if step%97 == 0 || step > 19900 {
			check(step)
		}
	}
	if len(x.slots) < 256 {
		t.Errorf("the table has %d slots: it never grew past a handful of keys", len(x.slots))
	}
}
