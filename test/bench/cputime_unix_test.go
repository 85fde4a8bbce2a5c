//go:build unix

package bench

import (
	"syscall"
	"time"
)

// cpuTime is the CPU the process has used, user and system. On a shared
// machine the latencies are mostly waiting for a core; the CPU a change
// costs (controllers, OHCs and switches together) is what stays
// comparable between runs at different loads.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
