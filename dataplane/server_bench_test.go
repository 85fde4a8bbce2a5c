package dataplane

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
)

const benchEntries = 100_000

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// BenchmarkLookupExact looks up a 100k-entry table with two exact fields.
func BenchmarkLookupExact(b *testing.B) {
	s := newCommitted(b)
	var us []*p4v1.Update
	for i := range benchEntries {
		us = append(us, upd(p4v1.Update_INSERT, te(tDest, 0, encap(1, uint32(i), 1), exact(1, byte(i%7+1)), exact(2, u32(uint32(i)|0x0a000000)...))))
	}
	must(b, s, us...)
	st := s.Store()
	t := st.Table(tDest)
	keys := make([][]byte, 1024)
	for i := range keys {
		n := uint32(i * 97 % benchEntries)
		keys[i] = append([]byte{0, 0, byte(n%7 + 1)}, u32(n|0x0a000000)...)
	}
	st.RLock()
	defer st.RUnlock()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if e := t.Lookup(keys[i&1023]); e == t.Default {
			b.Fatal("miss")
		}
	}
}

// BenchmarkLookupLPM looks up a 100k-route table spread over /16../32.
func BenchmarkLookupLPM(b *testing.B) {
	s := newCommitted(b)
	var us []*p4v1.Update
	for i := range benchEntries {
		plen := 16 + i%17
		ip := (uint32(i) * 2654435761) &^ (1<<(32-plen) - 1)
		if plen == 32 {
			ip = uint32(i) * 2654435761
		}
		us = append(us, upd(p4v1.Update_INSERT, te(tRoute, 0, encap(1, uint32(i), 1), exact(1, byte(i%3+1)), lpm(2, int32(plen), u32(ip)...))))
	}
	codes := write(b, s, us...)
	ok := 0
	for _, c := range codes {
		if c == 0 {
			ok++
		}
	}
	st := s.Store()
	t := st.Table(tRoute)
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = append([]byte{0, 0, byte(i%3 + 1)}, u32(uint32(i)*2654435761)...)
	}
	st.RLock()
	defer st.RUnlock()
	b.ReportMetric(float64(len(t.lens)), "prefix-lengths")
	b.ReportMetric(float64(ok), "routes")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if t.Lookup(keys[i&1023]) == nil {
			b.Fatal("nil")
		}
	}
}

// BenchmarkWrite calls Server.Write in process with batches of inserts and
// then deletes of the same entries, after one round of them, and reports
// entries per second.
func BenchmarkWrite(b *testing.B) {
	for _, batch := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := newCommitted(b)
			const keys = 20_000
			var ins, del []*p4v1.WriteRequest
			for start := 0; start < keys; start += batch {
				wi, wd := &p4v1.WriteRequest{DeviceId: 1}, &p4v1.WriteRequest{DeviceId: 1}
				for i := start; i < start+batch && i < keys; i++ {
					e := te(tDest, 0, encap(uint32(i), 0x0a000001, 2), exact(1, 1), exact(2, u32(uint32(i))...))
					wi.Updates = append(wi.Updates, upd(p4v1.Update_INSERT, e))
					wd.Updates = append(wd.Updates, upd(p4v1.Update_DELETE, e))
				}
				ins, del = append(ins, wi), append(del, wd)
			}
			reqs := append(ins, del...)
			ctx := context.Background()
			// One round of every request first, so that what is measured
			// is the steady state of a store that held the keys before
			// (its maps grown, deleted entries' blocks kept for reuse).
			for _, r := range reqs {
				if _, err := s.Write(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			start := time.Now()
			n := 0
			for i := 0; b.Loop(); i++ {
				r := reqs[i%len(reqs)]
				if _, err := s.Write(ctx, r); err != nil {
					b.Fatal(err)
				}
				n += len(r.Updates)
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "entries/s")
		})
	}
}

// BenchmarkWriteGRPC is BenchmarkWrite over a loopback gRPC connection,
// batches of 1000: the path the on-host controller takes.
func BenchmarkWriteGRPC(b *testing.B) {
	s := newCommitted(b)
	c := startGRPC(b, s)
	const batch, keys = 1000, 20_000
	var reqs []*p4v1.WriteRequest
	for _, typ := range []p4v1.Update_Type{p4v1.Update_INSERT, p4v1.Update_DELETE} {
		for start := 0; start < keys; start += batch {
			w := &p4v1.WriteRequest{DeviceId: 1}
			for i := start; i < start+batch; i++ {
				w.Updates = append(w.Updates, upd(typ, te(tDest, 0, encap(uint32(i), 0x0a000001, 2), exact(1, 1), exact(2, u32(uint32(i))...))))
			}
			reqs = append(reqs, w)
		}
	}
	ctx := context.Background()
	start := time.Now()
	n := 0
	for i := 0; b.Loop(); i++ {
		r := reqs[i%len(reqs)]
		if _, err := c.Write(ctx, r); err != nil {
			b.Fatal(err)
		}
		n += len(r.Updates)
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "entries/s")
}
