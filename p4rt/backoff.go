package p4rt

import (
	"math/rand/v2"
	"time"
)

// Default reconnect delays. The cap keeps a controller that lost its switch
// for minutes from waiting much longer than the outage once it comes back.
const (
	DefaultBackoffInitial = 100 * time.Millisecond
	DefaultBackoffMax     = 10 * time.Second
)

// Backoff describes how long Run waits between connection attempts: an
// exponential delay starting at Initial, doubled per failed attempt, capped at
// Max, with "equal jitter" (a random point in the upper half of the delay).
// Jitter matters because after a switch restart every controller and standby
// would otherwise reconnect in the same instant; keeping the lower half
// guarantees a minimum pause so a server that accepts and drops streams at once
// is not hammered. The zero value means the defaults.
type Backoff struct {
	Initial time.Duration // first delay; 0 means DefaultBackoffInitial
	Max     time.Duration // cap on any delay; 0 means DefaultBackoffMax
}

// withDefaults fills zero fields and keeps Max >= Initial, so Delay never has
// to deal with an inverted range.
func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	return b
}

// Delay returns the pause before retry number attempt (0 for the first retry
// after a success). The result lies in [d/2, d] where d = min(Max,
// Initial*2^attempt).
func (b Backoff) Delay(attempt int) time.Duration {
	return b.delay(attempt, rand.Float64())
}

// delay is Delay with the random draw passed in, so tests can pin it.
func (b Backoff) delay(attempt int, r float64) time.Duration {
	b = b.withDefaults()
	d := b.Initial
	for i := 0; i < attempt && d < b.Max; i++ {
		if d > b.Max/2 { // doubling would pass the cap (or overflow)
			d = b.Max
			break
		}
		d *= 2
	}
	half := d / 2
	return half + time.Duration(r*float64(d-half))
}
