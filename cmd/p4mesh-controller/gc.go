package main

import (
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
)

// The collector's settings. A controller learning a big BGP table holds a
// large, pointer-rich heap (GoBGP's paths) that the collector walks at
// every cycle. BenchmarkBGPPath measured a memory limit with GOGC off or
// 400 against Go's defaults at 1M routes (docs/benchmarks.md, "the
// controller alone"): within the run-to-run spread, so the defaults stay
// Go's, and these flags let an operator bound the heap (a container's
// limit) or trade memory for CPU where measured to pay. The settings come
// from the flags, else from Go's own GOMEMLIMIT and GOGC environment
// variables (the runtime has applied those already), else Go's defaults,
// and are logged at start.

// gcOptions are --memory-limit and --gc-percent as given ("" when not).
type gcOptions struct {
	memoryLimit string
	gcPercent   string
}

// gcSettings are the collector's settings as decided, and where each came
// from: "flag", "env" or "default".
type gcSettings struct {
	limit       int64 // bytes; math.MaxInt64: none
	percent     int   // -1: off
	limitFrom   string
	percentFrom string
}

// defaultGCPercent is Go's default GOGC.
const defaultGCPercent = 100

func (g *gcOptions) register(fs interface {
	StringVar(p *string, name, value, usage string)
}) {
	fs.StringVar(&g.memoryLimit, "memory-limit", "", "soft memory limit of the Go runtime (debug.SetMemoryLimit), e.g. 3GiB (suffixes B, KiB, MiB, GiB, TiB), or off; empty: GOMEMLIMIT if set, else off. The collector runs as often as it must to stay under it: leave room above the live heap (about 0.9 GiB per 1M BGP routes learned)")
	fs.StringVar(&g.gcPercent, "gc-percent", "", "GOGC for the Go runtime (debug.SetGCPercent), a percent, or off (then --memory-limit is needed); empty: GOGC if set, else 100")
}

// check parses the flags and decides the settings from the flags, the
// environment and the defaults.
func (g gcOptions) check(getenv func(string) string) (gcSettings, error) {
	s := gcSettings{limit: math.MaxInt64, limitFrom: "default", percentFrom: "default"}
	switch {
	case g.memoryLimit != "":
		n, err := parseMemoryLimit(g.memoryLimit)
		if err != nil {
			return s, usageErr("--memory-limit %q: %v", g.memoryLimit, err)
		}
		s.limit, s.limitFrom = n, "flag"
	case getenv("GOMEMLIMIT") != "":
		n, err := parseMemoryLimit(getenv("GOMEMLIMIT"))
		if err != nil {
			return s, usageErr("GOMEMLIMIT %q: %v", getenv("GOMEMLIMIT"), err)
		}
		s.limit, s.limitFrom = n, "env"
	}
	switch {
	case g.gcPercent != "":
		p, err := parseGCPercent(g.gcPercent)
		if err != nil {
			return s, usageErr("--gc-percent %q: %v", g.gcPercent, err)
		}
		s.percent, s.percentFrom = p, "flag"
	case getenv("GOGC") != "":
		p, err := parseGCPercent(getenv("GOGC"))
		if err != nil {
			return s, usageErr("GOGC %q: %v", getenv("GOGC"), err)
		}
		s.percent, s.percentFrom = p, "env"
	default:
		s.percent = defaultGCPercent
	}
	if s.percent < 0 && s.limit == math.MaxInt64 {
		return s, usageErr("GC off (--gc-percent or GOGC off) with no memory limit: the heap would grow without bound; set --memory-limit")
	}
	return s, nil
}

// apply sets the runtime's collector.
func (s gcSettings) apply() {
	debug.SetMemoryLimit(s.limit)
	debug.SetGCPercent(s.percent)
}

// logAttrs describe the settings for the start-up log.
func (s gcSettings) logAttrs() []any {
	limit, percent := "off", "off"
	if s.limit != math.MaxInt64 {
		limit = formatBytes(s.limit)
	}
	if s.percent >= 0 {
		percent = strconv.Itoa(s.percent)
	}
	return []any{"memory_limit", limit, "memory_limit_from", s.limitFrom, "gc_percent", percent, "gc_percent_from", s.percentFrom}
}

// parseMemoryLimit reads a size as GOMEMLIMIT does: a number of bytes with
// an optional unit B, KiB, MiB, GiB or TiB; or off.
func parseMemoryLimit(v string) (int64, error) {
	if v == "off" {
		return math.MaxInt64, nil
	}
	mult := int64(1)
	num := v
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(v, u.suffix) {
			num, mult = strings.TrimSuffix(v, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("a positive number of bytes with an optional unit B, KiB, MiB, GiB or TiB, or off")
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("too large")
	}
	return n * mult, nil
}

// parseGCPercent reads GOGC's syntax: a percent, or off.
func parseGCPercent(v string) (int, error) {
	if v == "off" {
		return -1, nil
	}
	p, err := strconv.Atoi(v)
	if err != nil || p < 0 {
		return 0, fmt.Errorf("a percent (0 or more), or off")
	}
	return p, nil
}

func formatBytes(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
