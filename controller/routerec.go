package controller

import (
	"net/netip"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/watch"
)

// A published route was a p4meshv1.Route per prefix and table: ~160
// bytes of message headers and string headers, the largest part of a
// controller's heap at a million BGP routes (issue 10), and its making a
// tenth of the CPU of resolving them. The routes tables hold instead a
// routeRec, 32 bytes: the prefix's text (the table's key), and two
// pointers to what the routes of a pass mostly share, a routeHead (VPC,
// origin, priority, reason: in a BGP batch mostly one) and a nextHops
// (one per next hop set, with its text). As pubrec.go's records, it makes its message on demand (a
// send, proto.Marshal, proto.Equal through ProtoReflect); the wire format
// is the message's, unchanged.
//
// A record is immutable once built: the tables' logs keep previous values
// and snapshots share items with streams.

// routeRec is one published route.
type routeRec struct {
	*routeHead
	prefix string    // the prefix as text: the table's key
	hops   *nextHops // nil: none (a drop, or none exported)
}

// routeHead is what a route has besides its prefix and next hops, shared
// by the routes of a pass that have the same; immutable.
type routeHead struct {
	vpc      string
	reason   string
	priority uint32
	origin   Origin
}

var _ watch.Equaler = (*routeRec)(nil)

// nextHops is a next hop set as routes publish it: sorted, each once,
// with its text. Shared by the routes through it; immutable.
type nextHops struct {
	addrs []netip.Addr
	texts []string
}

func newNextHops(hops []netip.Addr) *nextHops {
	nh := &nextHops{addrs: slices.Clone(hops), texts: make([]string, len(hops))}
	for i, h := range hops {
		nh.texts[i] = h.String()
	}
	return nh
}

// nextHopsOf is hops (which may live in sc's arena) as a shared set: one
// per distinct set among the routes of sc's pass, nil if hops is empty.
func (sc *scratch) nextHopsOf(hops []netip.Addr) *nextHops {
	switch {
	case len(hops) == 0:
		return nil
	case sc == nil:
		return newNextHops(hops)
	case len(hops) == 1:
		nh := sc.single[hops[0]]
		if nh == nil {
			if sc.single == nil {
				sc.single = map[netip.Addr]*nextHops{}
			}
			nh = newNextHops(hops)
			sc.single[hops[0]] = nh
		}
		return nh
	}
	// ECMP sets: a batch is mostly routes through one.
	if sc.lastSet == nil || !slices.Equal(sc.lastSet.addrs, hops) {
		sc.lastSet = newNextHops(hops)
	}
	return sc.lastSet
}

// headOf is w's routeHead: the last one of sc's pass if w has the same.
func (sc *scratch) headOf(w *Candidate) *routeHead {
	h := routeHead{vpc: w.VPC, reason: w.Reason, priority: w.Priority, origin: w.Origin}
	if sc != nil && sc.lastHead != nil && *sc.lastHead == h {
		return sc.lastHead
	}
	p := new(routeHead) // here only: &h would put h on the heap on every call
	*p = h
	if sc != nil {
		sc.lastHead = p
	}
	return p
}

// routeRecord is the published form of a prefix's winners (w the first)
// with next hops hops.
func routeRecord(w *Candidate, prefix string, hops []netip.Addr, sc *scratch) *routeRec {
	return &routeRec{routeHead: sc.headOf(w), prefix: prefix, hops: sc.nextHopsOf(hops)}
}

func (r *routeRec) message() *p4meshv1.Route {
	m := &p4meshv1.Route{Vpc: r.vpc, Prefix: r.prefix, Origin: r.origin.String(), Priority: r.priority, Reason: r.reason}
	if r.hops != nil {
		m.NextHopIp = r.hops.texts[0]
		if len(r.hops.texts) > 1 {
			// A copy: the message is the caller's to change.
			m.NextHopIps = slices.Clone(r.hops.texts)
		}
	}
	return m
}

// ProtoReflect is that of a Route made for the call: what it is given to
// change is a copy, never the record.
func (r *routeRec) ProtoReflect() protoreflect.Message { return r.message().ProtoReflect() }

func (r *routeRec) String() string { return r.message().String() }

// EqualItem is proto.Equal, without making messages when other is a
// record too. Next hops' texts are their addresses', so equal addresses
// are equal texts.
func (r *routeRec) EqualItem(other proto.Message) bool {
	if o, ok := other.(*routeRec); ok {
		return r == o || r.prefix == o.prefix && (r.routeHead == o.routeHead || *r.routeHead == *o.routeHead) &&
			(r.hops == o.hops || r.hops != nil && o.hops != nil && slices.Equal(r.hops.addrs, o.hops.addrs))
	}
	return proto.Equal(r.message(), message(other))
}

// routeOf is a routes table's item as its message: a record's, made for
// the call, or the message itself (a route received from a peer
// controller).
func routeOf(v proto.Message) *p4meshv1.Route {
	switch x := v.(type) {
	case *routeRec:
		return x.message()
	case *p4meshv1.Route:
		return x
	}
	return nil
}

// routeNextHops are a published route's next hops (not to be changed).
func routeNextHops(v proto.Message) []netip.Addr {
	if x, ok := v.(*routeRec); ok {
		if x.hops == nil {
			return nil
		}
		return x.hops.addrs
	}
	r := routeOf(v)
	ips := r.GetNextHopIps()
	if len(ips) == 0 && r.GetNextHopIp() != "" {
		ips = []string{r.GetNextHopIp()}
	}
	out := make([]netip.Addr, 0, len(ips))
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// routeFields are the priority and origin (as its text) of a published
// route, without making its message.
func routeFields(v proto.Message) (priority uint32, origin string) {
	if x, ok := v.(*routeRec); ok {
		return x.priority, x.origin.String()
	}
	r := routeOf(v)
	return r.GetPriority(), r.GetOrigin()
}

// routeEqual is proto.Equal of two routes, through EqualItem where
// either is a record (watch's equal).
func routeEqual(a, b proto.Message) bool {
	if e, ok := a.(watch.Equaler); ok {
		return e.EqualItem(b)
	}
	if e, ok := b.(watch.Equaler); ok {
		return e.EqualItem(a)
	}
	return proto.Equal(a, b)
}
