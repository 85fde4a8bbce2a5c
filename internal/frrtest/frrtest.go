//go:build linux

// Package frrtest runs a real FRR bgpd as the on-prem router of a test: in
// a network namespace of its own, wired to the test's namespace by a veth
// pair, configured from a file written per test and driven with vtysh.
// The bgp package's tests and the end-to-end tests use it. It needs root
// and Debian's frr package; without them the test skips (fails in CI).
package frrtest

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/internal/testenv"
)

// Bgpd is where Debian's frr package installs bgpd.
const Bgpd = "/usr/lib/frr/bgpd"

// Neighbor is a BGP neighbor in the router's configuration.
type Neighbor struct {
	Address netip.Addr
	AS      uint32
	// Port is the neighbor's BGP port; 0 means 179.
	Port uint16
	// Passive: the router waits for the neighbor to connect.
	Passive  bool
	Password string
	// HoldTime and Keepalive in seconds; 0 means FRR's defaults (180, 60).
	HoldTime, Keepalive int
}

// Config is one router.
type Config struct {
	// Name names the namespace and log lines; short, for interface names.
	Name     string
	AS       uint32
	RouterID netip.Addr
	// GracefulRestart makes the router a graceful-restart speaker with
	// RestartTime (seconds; 0 means 120).
	GracefulRestart bool
	RestartTime     int
	Neighbors       []Neighbor
	// Conf, when not empty, is bgpd's whole configuration file, used as
	// is: the fields above other than Name and AS (Announce's router bgp)
	// and the announcements are not written. For testing a configuration
	// a user is given (deploy/frr).
	Conf string
	// StartTimeout is how long Start waits for bgpd to answer vtysh,
	// which it does once it has read its configuration; 0 means 15 s
	// (a benchmark's million network statements take longer).
	StartTimeout time.Duration
}

// Router is a running (or killed) bgpd in its namespace.
type Router struct {
	t   testing.TB
	cfg Config
	// NS is the namespace; Link the veth end inside it.
	NS, Link string
	// Addr is the router's address on the veth, Local the test side's
	// (the address the router's neighbor, the code under test, uses).
	Addr, Local netip.Addr
	dir         string
	cmd         *exec.Cmd
	exited      chan struct{}
	// announced are the prefixes announced, with their route-map sets,
	// rewritten into the configuration when bgpd starts again.
	announced map[netip.Prefix][]string
}

var seq atomic.Uint32

// Need skips tb (fails it in CI) unless bgpd, vtysh, ip and root are
// there.
func Need(tb testing.TB) {
	tb.Helper()
	testenv.NeedRoot(tb, "network namespaces for FRR bgpd")
	if _, err := os.Stat(Bgpd); err != nil {
		testenv.Skipf(tb, "FRR bgpd is not installed at %s (apt-get install frr); it is the on-prem router of this test", Bgpd)
	}
	testenv.NeedTool(tb, "vtysh", "driving FRR bgpd")
	testenv.NeedTool(tb, "ip", "network namespaces and veth pairs")
}

// New creates the namespace and veth pair for a router named cfg.Name,
// without starting bgpd: the caller learns Local and Addr first (they go
// in the neighbor configuration on both sides), then calls Start. All of
// it is removed when tb ends.
func New(tb testing.TB, cfg Config) *Router {
	tb.Helper()
	Need(tb)
	// A /30 out of 100.100.0.0/16 per router: the shared address space
	// no test topology of ours uses, different per process and router so
	// tests running at once do not collide.
	n := (uint32(os.Getpid())*7 + seq.Add(1)) % 16384
	base := netip.AddrFrom4([4]byte{100, 100, byte(n >> 6), byte(n&63) << 2})
	id := fmt.Sprintf("%x", n)
	r := &Router{
		t: tb, cfg: cfg,
		NS:        fmt.Sprintf("frr-%s-%s", cfg.Name, id),
		Link:      "frb" + id,
		Local:     base.Next(),
		Addr:      base.Next().Next(),
		dir:       tb.TempDir(),
		announced: make(map[netip.Prefix][]string),
	}
	outer := "fra" + id
	run(tb, "ip", "netns", "add", r.NS)
	tb.Cleanup(func() { exec.Command("ip", "netns", "del", r.NS).Run() })
	run(tb, "ip", "link", "add", outer, "type", "veth", "peer", "name", r.Link)
	tb.Cleanup(func() { exec.Command("ip", "link", "del", outer).Run() })
	run(tb, "ip", "link", "set", r.Link, "netns", r.NS)
	run(tb, "ip", "addr", "add", r.Local.String()+"/30", "dev", outer)
	run(tb, "ip", "link", "set", outer, "up")
	run(tb, "ip", "-n", r.NS, "addr", "add", r.Addr.String()+"/30", "dev", r.Link)
	run(tb, "ip", "-n", r.NS, "link", "set", r.Link, "up")
	run(tb, "ip", "-n", r.NS, "link", "set", "lo", "up")
	tb.Cleanup(r.Stop)
	return r
}

// SetConf replaces the configuration file bgpd starts with (Config.Conf):
// written as is at the next Start.
func (r *Router) SetConf(conf string) { r.cfg.Conf = conf }

// SetNeighbors replaces the neighbors the router is configured with at its
// next Start.
func (r *Router) SetNeighbors(ns ...Neighbor) { r.cfg.Neighbors = ns }

func run(tb testing.TB, name string, args ...string) {
	tb.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		tb.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// config is bgpd's configuration file for the current state.
func (r *Router) config() string {
	if r.cfg.Conf != "" {
		return r.cfg.Conf
	}
	var b strings.Builder
	c := r.cfg
	fmt.Fprintf(&b, "frr defaults traditional\nhostname %s\n!\n", c.Name)
	for p, sets := range r.announced {
		if len(sets) > 0 {
			fmt.Fprintf(&b, "route-map %s permit 10\n", rmName(p))
			for _, s := range sets {
				fmt.Fprintf(&b, " set %s\n", s)
			}
			b.WriteString("exit\n!\n")
		}
	}
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n", c.AS, c.RouterID)
	// eBGP without these needs route-maps on every neighbor, and
	// network statements a kernel route (there is no zebra).
	b.WriteString(" no bgp ebgp-requires-policy\n no bgp network import-check\n")
	if c.GracefulRestart {
		b.WriteString(" bgp graceful-restart\n bgp graceful-restart preserve-fw-state\n")
		if c.RestartTime > 0 {
			fmt.Fprintf(&b, " bgp graceful-restart restart-time %d\n", c.RestartTime)
		}
	}
	for _, n := range c.Neighbors {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n", n.Address, n.AS)
		fmt.Fprintf(&b, " neighbor %s timers connect 1\n", n.Address)
		if n.Port != 0 {
			fmt.Fprintf(&b, " neighbor %s port %d\n", n.Address, n.Port)
		}
		if n.Passive {
			fmt.Fprintf(&b, " neighbor %s passive\n", n.Address)
		}
		if n.Password != "" {
			fmt.Fprintf(&b, " neighbor %s password %s\n", n.Address, n.Password)
		}
		if n.HoldTime != 0 {
			fmt.Fprintf(&b, " neighbor %s timers %d %d\n", n.Address, n.Keepalive, n.HoldTime)
		}
	}
	b.WriteString(" address-family ipv4 unicast\n")
	for p, sets := range r.announced {
		if len(sets) > 0 {
			fmt.Fprintf(&b, "  network %s route-map %s\n", p, rmName(p))
		} else {
			fmt.Fprintf(&b, "  network %s\n", p)
		}
	}
	b.WriteString(" exit-address-family\nexit\n")
	return b.String()
}

func rmName(p netip.Prefix) string {
	return "ann-" + strings.NewReplacer(".", "-", "/", "-").Replace(p.String())
}

// Start starts bgpd (again, after Kill or Stop) with the configuration and
// the announcements so far, and waits until vtysh can reach it.
func (r *Router) Start() {
	r.t.Helper()
	if r.cmd != nil {
		r.t.Fatalf("frrtest: %s: bgpd already running", r.cfg.Name)
	}
	conf := filepath.Join(r.dir, "bgpd.conf")
	if err := os.WriteFile(conf, []byte(r.config()), 0o600); err != nil {
		r.t.Fatal(err)
	}
	// -Z: no zebra (the router id is in the file); -n: routes stay out
	// of the kernel; --vty_socket and -i keep this bgpd's sockets and pid
	// apart from any other FRR on the machine; -S: stay root, no frr user
	// or frrvty group needed; -P 0: no vty TCP port.
	cmd := exec.Command("ip", "netns", "exec", r.NS, Bgpd,
		"-Z", "-n", "-f", conf, "-i", filepath.Join(r.dir, "bgpd.pid"),
		"--vty_socket", r.dir, "-S", "-P", "0",
		"--log", "file:"+filepath.Join(r.dir, "bgpd.log"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.Create(filepath.Join(r.dir, "bgpd.out"))
	if err != nil {
		r.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("frrtest: start bgpd: %v", err)
	}
	r.cmd = cmd
	exited := make(chan struct{})
	r.exited = exited
	go func() { cmd.Wait(); out.Close(); close(exited) }()
	wait := r.cfg.StartTimeout
	if wait == 0 {
		wait = 15 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		if _, err := r.vtysh("show bgp summary"); err == nil {
			return
		}
		select {
		case <-exited:
			r.t.Fatalf("frrtest: bgpd of %s exited at start: %s", r.cfg.Name, r.Logs())
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("frrtest: bgpd of %s not answering vtysh after %v: %s", r.cfg.Name, wait, r.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Pid is the process id of the running bgpd (0 if not running), for
// reading its CPU time.
func (r *Router) Pid() int {
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Logs returns bgpd's output and log file, for failure messages.
func (r *Router) Logs() string {
	a, _ := os.ReadFile(filepath.Join(r.dir, "bgpd.out"))
	b, _ := os.ReadFile(filepath.Join(r.dir, "bgpd.log"))
	return string(a) + string(b)
}

func (r *Router) vtysh(cmds ...string) (string, error) {
	args := []string{"--vty_socket", r.dir, "-d", "bgpd"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command("vtysh", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vtysh %q: %w: %s", cmds, err, out)
	}
	return string(out), nil
}

// Vtysh runs commands in one vtysh session and returns the output.
func (r *Router) Vtysh(cmds ...string) string {
	r.t.Helper()
	out, err := r.vtysh(cmds...)
	if err != nil {
		r.t.Fatalf("frrtest: %s: %v", r.cfg.Name, err)
	}
	return out
}

// JSON runs a "show ... json" command and decodes its output into v.
func (r *Router) JSON(cmd string, v any) error {
	out, err := r.vtysh(cmd)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("frrtest: %q: %w: %s", cmd, err, out)
	}
	return nil
}

// Announce announces prefix, with attributes set by route-map "set"
// clauses such as "metric 50" or "as-path prepend 65100 65101". While
// bgpd is not running, it is announced when bgpd starts.
func (r *Router) Announce(prefix netip.Prefix, sets ...string) {
	r.t.Helper()
	r.announced[prefix] = sets
	if r.cmd == nil {
		return
	}
	cmds := []string{"configure terminal"}
	network := "network " + prefix.String()
	if len(sets) > 0 {
		cmds = append(cmds, "route-map "+rmName(prefix)+" permit 10")
		for _, s := range sets {
			cmds = append(cmds, "set "+s)
		}
		cmds = append(cmds, "exit")
		network += " route-map " + rmName(prefix)
	}
	cmds = append(cmds, fmt.Sprintf("router bgp %d", r.cfg.AS), "address-family ipv4 unicast", network)
	r.Vtysh(cmds...)
}

// Withdraw withdraws prefix (while bgpd is not running: leaves it out
// when bgpd starts).
func (r *Router) Withdraw(prefix netip.Prefix) {
	r.t.Helper()
	delete(r.announced, prefix)
	if r.cmd == nil {
		return
	}
	r.Vtysh("configure terminal", fmt.Sprintf("router bgp %d", r.cfg.AS), "address-family ipv4 unicast", "no network "+prefix.String())
}

// Established reports whether the session with addr is established.
func (r *Router) Established(addr netip.Addr) bool {
	var m map[string]struct {
		BGPState string `json:"bgpState"`
	}
	if err := r.JSON("show ip bgp neighbors "+addr.String()+" json", &m); err != nil {
		return false
	}
	return m[addr.String()].BGPState == "Established"
}

// Route is a path in "show ip bgp json".
type Route struct {
	Prefix  netip.Prefix
	NextHop netip.Addr
	Path    string // AS path
}

// Routes returns the router's BGP table: what it learned and announces.
func (r *Router) Routes() (map[netip.Prefix][]Route, error) {
	var v struct {
		Routes map[string][]struct {
			Path     string `json:"path"`
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		} `json:"routes"`
	}
	if err := r.JSON("show ip bgp json", &v); err != nil {
		return nil, err
	}
	out := make(map[netip.Prefix][]Route)
	for k, paths := range v.Routes {
		p, err := netip.ParsePrefix(k)
		if err != nil {
			return nil, fmt.Errorf("frrtest: prefix %q in show ip bgp json: %w", k, err)
		}
		for _, path := range paths {
			rt := Route{Prefix: p, Path: path.Path}
			if len(path.Nexthops) > 0 {
				rt.NextHop, _ = netip.ParseAddr(path.Nexthops[0].IP)
			}
			out[p] = append(out[p], rt)
		}
	}
	return out, nil
}

// SetLink brings the router's end of the veth up or down: down, nothing
// passes either way, as when a link or a router fails silently.
func (r *Router) SetLink(up bool) {
	r.t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	run(r.t, "ip", "-n", r.NS, "link", "set", r.Link, state)
}

// Kill kills bgpd with SIGKILL: no NOTIFICATION, the kernel closes its
// sessions, as in a crash (what graceful restart is for).
func (r *Router) Kill() { r.signal(syscall.SIGKILL) }

// Stop stops bgpd with SIGTERM, which sends its neighbors a NOTIFICATION
// (cease) first. It does nothing if bgpd is not running.
func (r *Router) Stop() { r.signal(syscall.SIGTERM) }

func (r *Router) signal(sig syscall.Signal) {
	if r.cmd == nil {
		return
	}
	// The process group: ip netns exec execs bgpd, but be sure.
	syscall.Kill(-r.cmd.Process.Pid, sig)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.exited
	}
	r.cmd = nil
}
