package ohc

import (
	"testing"
	"time"
)

// TestPacer: passes start at once up to the burst, then one per interval
// however many arrive, and the bucket fills again while no pass starts;
// with a burst of 1 it is the plain minimum interval between starts.
func TestPacer(t *testing.T) {
	const ivl = 20 * time.Millisecond
	t0 := time.Unix(1000, 0)
	p := pacer{ivl: ivl, burst: 3}
	now := t0
	for i := range 3 {
		if w := p.wait(now); w != 0 {
			t.Fatalf("pass %d of a burst of 3 waits %v", i+1, w)
		}
		p.start(now)
		now = now.Add(time.Millisecond)
	}
	// A sustained stream: one pass per interval from here.
	for i := range 10 {
		w := p.wait(now)
		if w <= 0 || w > ivl {
			t.Fatalf("pass %d past the burst waits %v, want (0, %v]", i+4, w, ivl)
		}
		now = now.Add(w)
		p.start(now)
	}
	if got, want := now.Sub(t0), 10*ivl; got < want-3*time.Millisecond {
		t.Fatalf("13 passes took %v: more than one per interval past the burst of 3 (want about %v)", got, want)
	}
	// Idle for three intervals: the whole burst again.
	now = now.Add(3 * ivl)
	for i := range 3 {
		if w := p.wait(now); w != 0 {
			t.Fatalf("after idling, pass %d waits %v", i+1, w)
		}
		p.start(now)
	}
	if p.wait(now) == 0 {
		t.Fatal("a fourth pass at the same instant does not wait")
	}

	one := pacer{ivl: ivl, burst: 1}
	one.start(t0)
	if w := one.wait(t0.Add(5 * time.Millisecond)); w != 15*time.Millisecond {
		t.Fatalf("burst 1: a pass 5 ms after the last waits %v, want 15ms", w)
	}
	if w := one.wait(t0.Add(25 * time.Millisecond)); w != 0 {
		t.Fatalf("burst 1: a pass 25 ms after the last waits %v", w)
	}
}
