//go:build linux

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/internal/frrtest"
)

// BenchmarkBGPPath's frr/ rows: the on-prem router is FRR's bgpd (C, as
// on a real on-prem router) in a namespace of its own behind a veth
// (internal/frrtest), announcing N /24s from 11.0.0.0 up as network
// statements of its configuration, all with the same attributes (MED 10,
// as the GoBGP router's), so it packs them as it would a real table.
// The clock points are the resolve/ rows': from the Link's start, and
// from when the router saw the session established (bgpd's log line for
// it, in milliseconds). cpu-s-router is bgpd's user and system time from
// its routes held to the end; updates is its UPDATE count for the
// session.
func init() { startFRRAnnouncer = startFRR }

func startFRR(b *testing.B, n int) *announcer {
	b.Helper()
	r := frrtest.New(b, frrtest.Config{Name: "bench", AS: 65001, StartTimeout: 10 * time.Minute})
	var c strings.Builder
	c.Grow(32 * n)
	// Millisecond timestamps: the session's coming up is read from the
	// log (below).
	logFile := filepath.Join(b.TempDir(), "bgpd-ms.log")
	fmt.Fprintf(&c, "frr defaults traditional\nhostname bench\nlog timestamp precision 3\nlog file %s\n!\n", logFile)
	fmt.Fprintf(&c, "route-map med10 permit 10\n set metric 10\nexit\n!\n")
	fmt.Fprintf(&c, "router bgp 65001\n bgp router-id %s\n no bgp ebgp-requires-policy\n no bgp network import-check\n bgp log-neighbor-changes\n", r.Addr)
	// FRR waits 1 s (its default coalesce time) before the first UPDATE
	// to a new session; the GoBGP router sends at once. The wait is the
	// router's, not the controller's, so it is left out.
	c.WriteString(" coalesce-time 0\n")
	fmt.Fprintf(&c, " neighbor %s remote-as 64512\n neighbor %s passive\n neighbor %s timers 60 180\n", r.Local, r.Local, r.Local)
	c.WriteString(" address-family ipv4 unicast\n")
	fmt.Fprintf(&c, "  neighbor %s route-map med10 out\n", r.Local)
	for i := range n {
		fmt.Fprintf(&c, "  network %d.%d.%d.0/24\n", 11+i>>16, byte(i>>8), byte(i))
	}
	c.WriteString(" exit-address-family\nexit\n")
	r.SetConf(c.String())
	r.Start() // returns once bgpd has read its configuration
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var st struct {
			IPv4 []struct {
				Total int `json:"totalPrefixes"`
			} `json:"ipv4Unicast"`
		}
		if err := r.JSON("show bgp ipv4 unicast statistics json", &st); err == nil && len(st.IPv4) > 0 && st.IPv4[0].Total >= n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("FRR holds fewer than %d prefixes after 5 min: %s", n, r.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	pid := r.Pid()
	cpu0 := procCPU(b, pid)
	up := make(chan time.Time, 1)
	return &announcer{addr: r.Addr, port: 179, established: up, stop: func(b *testing.B) (float64, float64) {
		cpu := procCPU(b, pid) - cpu0
		// When bgpd saw the session established: its log line, to the
		// millisecond (polling vtysh would add its own delay, which at
		// 10k is most of the time to resolve).
		log, _ := os.ReadFile(logFile)
		for _, l := range strings.Split(string(log), "\n") {
			if !strings.Contains(l, "%ADJCHANGE") || !strings.HasSuffix(strings.TrimSpace(l), " Up") || len(l) < 23 {
				continue
			}
			if t, err := time.ParseInLocation("2006/01/02 15:04:05.000", l[:23], time.Local); err == nil {
				up <- t
				break
			}
		}
		if len(up) == 0 {
			b.Logf("no session-up line in bgpd's log:\n%s", log)
		}
		var nb map[string]struct {
			Stats struct {
				Updates float64 `json:"updatesSent"`
			} `json:"messageStats"`
		}
		if err := r.JSON("show ip bgp neighbors "+r.Local.String()+" json", &nb); err != nil {
			b.Fatal(err)
		}
		r.Stop()
		return cpu, nb[r.Local.String()].Stats.Updates
	}}
}

// procCPU is the user and system CPU seconds of process pid so far.
func procCPU(b *testing.B, pid int) float64 {
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command's closing parenthesis: state is the
	// first, utime and stime the 12th and 13th (clock ticks, 100 a
	// second on Linux).
	f := strings.Fields(string(s[strings.LastIndexByte(string(s), ')')+1:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}
