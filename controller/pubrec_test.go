package controller

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/watch"
)

// refForms are e's three items made from e and c alone, as
// Config.connectivity makes them: what the records must stand for.
func refForms(c *Config, e Endpoint) [3]proto.Message {
	var vni uint32
	if v, ok := c.VPC(e.VPC); ok {
		vni = v.VNI
	}
	var hostIP string
	if h, ok := c.Host(e.Host); ok {
		hostIP = h.UnderlayIP.String()
	}
	return [3]proto.Message{
		&p4meshv1.Destination{Vpc: e.VPC, Ip: e.IP.String(), Endpoint: e.ID},
		&p4meshv1.Forwarding{Vpc: e.VPC, Ip: e.IP.String(), Mac: e.MAC.String(), Host: e.Host, HostIp: hostIP},
		&p4meshv1.LocalEndpoint{Id: e.ID, Vpc: e.VPC, Vni: vni, Ip: e.IP.String(), Mac: e.MAC.String(), Port: uint32(e.Port),
			Kind: string(e.Kind), RouterMac: macText(e.RouterMAC)},
	}
}

// recordEndpoint is a random endpoint over small pools of every field,
// so that two of them often differ in one field only; now and then one
// no record holds (an IPv6 address, no address, an unknown kind).
func recordEndpoint(r *rand.Rand) Endpoint {
	pick := func(n int) int { return r.IntN(n) }
	e := Endpoint{
		ID: "ep" + strconv.Itoa(pick(3)), VPC: []string{"red", "green", "yellow", "blue"}[pick(4)],
		Kind: recordKinds[pick(len(recordKinds))], IP: netip.AddrFrom4([4]byte{10, 1, 0, byte(2 + pick(3))}),
		MAC: MAC{2, 1, 0, 0, 0, byte(pick(3))}, Host: "h" + strconv.Itoa(pick(3)*3), Port: uint16(2 + pick(3)),
	}
	if pick(2) == 0 {
		e.RouterMAC = MAC{2, 0xfe, 0, 0, 0, byte(pick(2))}
	}
	switch pick(40) {
	case 0:
		e.IP = netip.MustParseAddr("fd00::2")
	case 1:
		e.IP = netip.Addr{}
	case 2:
		e.Kind = ""
	case 3:
		e.Kind = "pod"
	}
	return e
}

// oneFieldOf is a with field i (of 9; 8: none) of b.
func oneFieldOf(a, b Endpoint, i int) Endpoint {
	switch i {
	case 0:
		a.ID = b.ID
	case 1:
		a.VPC = b.VPC
	case 2:
		a.Kind = b.Kind
	case 3:
		a.IP = b.IP
	case 4:
		a.MAC = b.MAC
	case 5:
		a.Host = b.Host
	case 6:
		a.Port = b.Port
	case 7:
		a.RouterMAC = b.RouterMAC
	}
	return a
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEndpointRecordsAreTheirMessages checks that an endpoint's published
// items, records or not, are the messages they stand for: the same bytes
// on the wire, alone and in an Event (wrap), equal by proto.Equal, and
// that EqualItem says what proto.Equal says, between records and against
// plain messages. Hosts and VPCs keep their address and VNI, then change
// them (a whole Apply): records made before and given as hints after must
// not carry the old ones.
func TestEndpointRecordsAreTheirMessages(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 2))
	base := incrBase()
	s := newIncrServer(t, NoPersistence{Start: base.Clone()})
	moved := base.Clone()
	moved.Hosts[3].UnderlayIP = netip.MustParseAddr("192.168.0.99") // h3: the pool has h0, h3, h6 (unknown)
	moved.VPCs[2].VNI = 401                                         // yellow

	type made struct {
		e     Endpoint
		forms [3]proto.Message
		ref   [3]proto.Message
		from  int // the index of the endpoint e is one field from, -1 if none
	}
	var all []made
	records := 0
	for phase, c := range []*Config{base, moved} {
		if phase == 1 {
			if err := s.Apply(moved); err != nil {
				t.Fatal(err)
			}
		}
		var now []made
		for i := range 1500 {
			e := recordEndpoint(r)
			// A hint: the forwarding item of an endpoint made before,
			// mostly of one that e is with one field changed (or none),
			// sometimes of the other phase.
			var hint proto.Message
			from := -1
			if n := len(all) + len(now); n > 0 && r.IntN(4) != 0 {
				from = r.IntN(n)
				prev := made{}
				if from < len(all) {
					prev = all[from]
				} else {
					prev = now[from-len(all)]
				}
				hint = prev.forms[r.IntN(3)]
				e = oneFieldOf(prev.e, e, r.IntN(9))
			}
			s.mu.Lock()
			d, f, l := s.endpointForms(e, hint)
			s.mu.Unlock()
			m := made{e: e, forms: [3]proto.Message{d, f, l}, ref: refForms(c, e), from: from}
			if _, ok := d.(*destRec); ok {
				records++
			}
			for k := range 3 {
				got, want := m.forms[k], m.ref[k]
				if !bytes.Equal(marshal(t, got), marshal(t, want)) {
					t.Fatalf("phase %d, endpoint %d %+v: form %d marshals as\n  %v\nnot as\n  %v", phase, i, e, k, got, want)
				}
				if !proto.Equal(got, want) || !proto.Equal(want, got) {
					t.Fatalf("phase %d, endpoint %d %+v: form %d %v is not proto.Equal to %v", phase, i, e, k, got, want)
				}
				var evGot, evWant p4meshv1.Event
				wrap("k", got, &evGot)
				wrap("k", want, &evWant)
				if evGot.GetValue() == nil || !bytes.Equal(marshal(t, &evGot), marshal(t, &evWant)) {
					t.Fatalf("phase %d, endpoint %d %+v: form %d is sent as %v, not %v", phase, i, e, k, &evGot, &evWant)
				}
			}
			now = append(now, m)
		}
		all = append(all, now...)
	}
	if records < len(all)*3/4 || records == len(all) {
		t.Fatalf("%d of %d endpoints as records: the pools no longer exercise both kinds of item", records, len(all))
	}
	// EqualItem against proto.Equal, on pairs that differ in one field or
	// none (the host's address across the phases included), and on any.
	for i, a := range all {
		j := a.from
		if j < 0 {
			j = r.IntN(len(all))
		}
		b := all[j]
		for k := range 3 {
			want := proto.Equal(a.ref[k], b.ref[k])
			for _, other := range []proto.Message{b.forms[k], b.ref[k]} {
				if e, ok := a.forms[k].(watch.Equaler); ok && e.EqualItem(other) != want {
					t.Fatalf("endpoint %d, form %d: %v EqualItem %v (%T) = %v, proto.Equal of the messages %v", i, k, a.forms[k], other, other, !want, want)
				}
			}
		}
	}
}

// TestRecordTablesStreamTheirMessages feeds two watch tables the same
// commits, one of records, the other of the messages they stand for, and
// checks that streams of them (a snapshot, and a resume through the log)
// send the same bytes, event for event: the tables see the same changes
// and no-ops, and the records are sent as their messages.
func TestRecordTablesStreamTheirMessages(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 3))
	base := incrBase()
	s := newIncrServer(t, NoPersistence{Start: base.Clone()})
	const epoch = 100
	var recs, msgs [3]*watch.Table
	for k := range 3 {
		recs[k] = watch.NewTable("records", watch.Options{Owned: true, Epoch: epoch, LogSize: 1 << 16, Buffer: 1 << 16})
		msgs[k] = watch.NewTable("messages", watch.Options{Owned: true, Epoch: epoch, LogSize: 1 << 16, Buffer: 1 << 16})
	}
	rev := uint64(epoch)
	changes := 0
	for range 300 {
		rev++
		var puts [2][3]map[string]proto.Message
		for i := range puts {
			for k := range 3 {
				puts[i][k] = map[string]proto.Message{}
			}
		}
		var dels []string
		for range 1 + r.IntN(3) {
			key := "k" + strconv.Itoa(r.IntN(6))
			if r.IntN(5) == 0 {
				if _, ok := puts[0][0][key]; !ok {
					dels = append(dels, key)
				}
				continue
			}
			if (func() bool {
				for _, d := range dels {
					if d == key {
						return true
					}
				}
				return false
			})() {
				continue
			}
			e := recordEndpoint(r)
			s.mu.Lock()
			d, f, l := s.endpointForms(e, recs[1].Get(key))
			s.mu.Unlock()
			ref := refForms(base, e)
			for k, v := range []proto.Message{d, f, l} {
				puts[0][k][key], puts[1][k][key] = v, ref[k]
			}
		}
		for k := range 3 {
			n := recs[k].Commit(rev, puts[0][k], dels)
			if m := msgs[k].Commit(rev, puts[1][k], dels); n != m {
				t.Fatalf("revision %d, form %d: %d changes of records, %d of messages", rev, k, n, m)
			}
			changes += n
		}
	}
	if changes < 300 {
		t.Fatalf("%d changes in 300 revisions: the test no longer changes much", changes)
	}
	for k := range 3 {
		for _, from := range []uint64{0, epoch} {
			got, want := streamBytes(t, recs[k], from), streamBytes(t, msgs[k], from)
			if len(got) != len(want) {
				t.Fatalf("form %d from %d: %d events of records, %d of messages", k, from, len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("form %d from %d: event %d differs", k, from, i)
				}
			}
		}
	}
}

// streamBytes is what a stream of t from fromRev sends up to SYNCED,
// marshalled, as the controller wraps its items.
func streamBytes(t *testing.T, tab *watch.Table, fromRev uint64) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out [][]byte
	errSynced := fmt.Errorf("synced")
	err := tab.Serve(ctx, fromRev, func(ev *p4meshv1.Event) error {
		out = append(out, marshal(t, ev))
		if ev.GetType() == p4meshv1.Event_SYNCED {
			return errSynced
		}
		return nil
	}, wrap)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("stream of %d from %d ended before SYNCED: %v", tab.Len(), fromRev, err)
	}
	return out
}
