//go:build !unix

package bench

import "time"

// cpuTime is not measured here: BenchmarkScale reports 0 cpu-ms/change.
func cpuTime() time.Duration { return 0 }
