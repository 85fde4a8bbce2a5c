package boltstore_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/p4mesh/p4mesh/store"
)

// BenchmarkCommit commits one ~200-byte item per commit from 1, 8 and 64
// goroutines; commits/fsync shows the group commit.
func BenchmarkCommit(b *testing.B) {
	value := make([]byte, 200)
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s := open(b, filepath.Join(b.TempDir(), "store.db"))
			defer s.Close()
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for range writers {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						if _, err := s.Commit(b.Context(), []store.Op{{Key: fmt.Sprintf("item/%09d", i), Value: value}}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			st := s.Stats()
			b.ReportMetric(float64(st.Commits)/float64(st.Groups), "commits/fsync")
		})
	}
}

// BenchmarkLoad loads a store of n items of ~200 bytes and reports the
// file's size.
func BenchmarkLoad(b *testing.B) {
	value := make([]byte, 200)
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("items=%d", n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "store.db")
			s := open(b, path)
			defer s.Close()
			// Populate with commits of 100 ops: bulk loading is not what
			// this measures.
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					ops := make([]store.Op, 100)
					for base := w * 100; base < n; base += 800 {
						ops = ops[:0]
						for i := base; i < min(base+100, n); i++ {
							ops = append(ops, store.Op{Key: fmt.Sprintf("vpc/%04d/endpoint/%09d", i%1000, i), Value: value})
						}
						if _, err := s.Commit(b.Context(), ops); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			fi, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				items, _, err := s.Load(b.Context())
				if err != nil || len(items) != n {
					b.Fatalf("Load: %d items, %v", len(items), err)
				}
			}
			b.ReportMetric(float64(fi.Size())/(1<<20), "MiB")
		})
	}
}
