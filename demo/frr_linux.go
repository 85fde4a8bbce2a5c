//go:build linux

package demo

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// frrBgpd is where Debian's frr package installs bgpd.
const frrBgpd = "/usr/lib/frr/bgpd"

// FRRAvailable reports, in a few words, why FRR cannot be the demo's
// on-prem router here, or nil: it needs root, Debian's frr (bgpd, vtysh)
// and the netns fabric.
func FRRAvailable() error {
	if os.Geteuid() != 0 {
		return errors.New("FRR: needs root")
	}
	if _, err := os.Stat(frrBgpd); err != nil {
		return fmt.Errorf("FRR: no bgpd at %s (apt-get install frr)", frrBgpd)
	}
	if _, err := exec.LookPath("vtysh"); err != nil {
		return errors.New("FRR: no vtysh")
	}
	return nil
}

// FRRRouter is FRR's bgpd as the demo's on-prem router, in the namespace
// of the router's cable. The BGP session runs over a veth pair between
// this process's namespace (the speaker's side) and the router's.
type FRRRouter struct {
	ns, outer, dir string
	local, addr    netip.Addr
	cmd            *exec.Cmd
	exited         chan struct{}
}

// StartFRR starts bgpd in ns (the router cable's namespace, which the
// fabric has given the router's addresses), announcing OnPremPrefix to
// c1's speaker.
func StartFRR(ns string) (r *FRRRouter, err error) {
	// A /30 per process out of 100.64.0.0/16 (shared address space, which
	// the demo's VPCs do not use), so two demos at once do not collide.
	pid := uint32(os.Getpid())
	base := netip.AddrFrom4([4]byte{100, 64, byte(pid >> 6), byte(pid&63) << 2})
	r = &FRRRouter{ns: ns, outer: fmt.Sprintf("p4mbgp%d", pid%100000), local: base.Next(), addr: base.Next().Next()}
	if r.dir, err = os.MkdirTemp("", "p4mesh-demo-frr-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	for _, c := range [][]string{
		{"link", "add", r.outer, "type", "veth", "peer", "name", "bgp0", "netns", ns},
		{"addr", "add", r.local.String() + "/30", "dev", r.outer},
		{"link", "set", r.outer, "up"},
		{"-n", ns, "addr", "add", r.addr.String() + "/30", "dev", "bgp0"},
		{"-n", ns, "link", "set", "bgp0", "up"},
	} {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("FRR: ip %s: %w: %s", strings.Join(c, " "), err, out)
		}
	}
	conf := fmt.Sprintf(`frr defaults traditional
hostname red-onprem
!
router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor %s remote-as %d
 neighbor %s timers 3 9
 neighbor %s timers connect 1
 address-family ipv4 unicast
  network %s
 exit-address-family
exit
`, OnPremAS, onPremLink, r.local, SpeakerAS, r.local, r.local, OnPremPrefix)
	confPath := filepath.Join(r.dir, "bgpd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	// -Z: no zebra; -n: nothing into the kernel (the fabric set the
	// namespace's routes); its own vty socket and pid file; -S: stay
	// root; -P 0: no vty port.
	r.cmd = exec.Command("ip", "netns", "exec", ns, frrBgpd, "-Z", "-n", "-f", confPath,
		"-i", filepath.Join(r.dir, "bgpd.pid"), "--vty_socket", r.dir, "-S", "-P", "0",
		"--log", "file:"+filepath.Join(r.dir, "bgpd.log"))
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		r.cmd = nil
		return nil, fmt.Errorf("FRR: start bgpd: %w", err)
	}
	r.exited = make(chan struct{})
	go func() { r.cmd.Wait(); close(r.exited) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := r.Vtysh("show bgp summary"); err == nil {
			return r, nil
		}
		select {
		case <-r.exited:
			log, _ := os.ReadFile(filepath.Join(r.dir, "bgpd.log"))
			return nil, fmt.Errorf("FRR: bgpd exited at start: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			return nil, errors.New("FRR: bgpd does not answer vtysh after 10s")
		}
	}
}

// Vtysh runs commands in the router's vtysh.
func (r *FRRRouter) Vtysh(cmds ...string) (string, error) {
	args := []string{"--vty_socket", r.dir, "-d", "bgpd"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command("vtysh", args...).CombinedOutput()
	return string(out), err
}

// Addr is where c1's speaker reaches the router.
func (r *FRRRouter) Addr() netip.AddrPort { return netip.AddrPortFrom(r.addr, 179) }

// Announce does nothing: bgpd announces OnPremPrefix from its start.
func (r *FRRRouter) Announce(context.Context, netip.Prefix) error { return nil }

// Describe says what the router is.
func (r *FRRRouter) Describe() string {
	return fmt.Sprintf("FRR bgpd in netns %s, at %s (vtysh --vty_socket %s)", r.ns, r.addr, r.dir)
}

// Close stops bgpd and removes the veth pair.
func (r *FRRRouter) Close() {
	if r.cmd != nil && r.cmd.Process != nil {
		syscall.Kill(-r.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
			<-r.exited
		}
	}
	exec.Command("ip", "link", "del", r.outer).Run()
	os.RemoveAll(r.dir)
}
