package controller

import (
	"fmt"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// ribBenchSizes are the learned prefixes the RIB benchmarks run at: one
// on-prem router announcing 10k, 100k and 1M prefixes in one batch.
var ribBenchSizes = []int{10_000, 100_000, 1_000_000}

// learnedPrefixes are n distinct /24s from 11.0.0.0 up, outside every
// subnet of ribConfig, each with one AS path of three (shared, as a BGP
// speaker's attribute sets are).
func learnedPrefixes(neighbor string, n int) []LearnedRoute {
	path := []uint32{65001, 65100, 65200}
	out := make([]LearnedRoute, n)
	for i := range n {
		a := netip.AddrFrom4([4]byte{byte(11 + i>>16), byte(i >> 8), byte(i), 0})
		out[i] = LearnedRoute{Neighbor: neighbor, Prefix: netip.PrefixFrom(a, 24), ASPath: path, LocalPref: 100}
	}
	return out
}

// cpuTime is the CPU time the process has used, every goroutine and the
// collector included: on a machine shared with other work it says what a
// batch costs where wall time says how busy the machine was.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkLearnedRoutes: a batch of n learned prefixes into red's RIB of
// ribConfig (one controller, red peered with blue and green), resolved and
// published: red's hosts' routes table, and with custom export on, red's
// export to blue and blue's RIB, which imports it, and blue's hosts'
// table. Then one more prefix, the cost of a delta at that size. heap-MiB
// and B/route are what the RIB and the tables hold after the batch.
func BenchmarkLearnedRoutes(b *testing.B) {
	for _, custom := range []bool{false, true} {
		for _, n := range ribBenchSizes {
			b.Run(fmt.Sprintf("custom=%v/prefixes=%d", custom, n), func(b *testing.B) {
				routes := learnedPrefixes("red-vpn1", n)
				extra := []LearnedRoute{{Neighbor: "red-vpn1", Prefix: netip.MustParsePrefix("9.9.9.0/24"), LocalPref: 100}}
				var batch, cpu, one time.Duration
				var heap uint64
				for b.Loop() {
					b.StopTimer()
					s := ribServer(b, func(c *Config) { c.Peerings[0].ExportCustomRoutes = custom })
					before := heapInUse()
					b.StartTimer()
					start, startCPU := time.Now(), cpuTime()
					if err := s.UpdateLearnedRoutes("red", routes, nil); err != nil {
						b.Fatal(err)
					}
					batch += time.Since(start)
					cpu += cpuTime() - startCPU
					start = time.Now()
					if err := s.UpdateLearnedRoutes("red", extra, nil); err != nil {
						b.Fatal(err)
					}
					one += time.Since(start)
					b.StopTimer()
					heap = heapInUse() - before
					runtime.KeepAlive(s)
					b.StartTimer()
				}
				b.ReportMetric(batch.Seconds()/float64(b.N), "s/batch")
				b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/batch")
				b.ReportMetric(float64(one.Microseconds())/float64(b.N), "µs/delta")
				b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
				b.ReportMetric(float64(heap)/float64(n), "B/route")
			})
		}
	}
}
