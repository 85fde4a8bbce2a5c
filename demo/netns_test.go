//go:build linux

package demo

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/p4mesh/p4mesh/internal/testenv"
)

func TestParsePingReceived(t *testing.T) {
	for _, c := range []struct {
		out  string
		want int
		ok   bool
	}{
		{"--- 10.2.0.10 ping statistics ---\n3 packets transmitted, 3 received, 0% packet loss, time 402ms\n", 3, true},
		{"3 packets transmitted, 0 received, 100% packet loss, time 2046ms\n", 0, true},
		{"3 packets transmitted, 1 received, +2 errors, 66.6667% packet loss\n", 1, true},
		{"3 packets transmitted, 2 packets received, 33% packet loss\n", 2, true}, // busybox
		{"ping: connect: Network is unreachable\n", 0, false},
	} {
		n, ok := parsePingReceived([]byte(c.out))
		if n != c.want || ok != c.ok {
			t.Errorf("parsePingReceived(%q) = %d, %v; want %d, %v", c.out, n, ok, c.want, c.ok)
		}
	}
}

func TestParsePingEvery(t *testing.T) {
	out := `PING 10.2.0.10 (10.2.0.10) 56(84) bytes of data.
64 bytes from 10.2.0.10: icmp_seq=1 ttl=64 time=0.210 ms
64 bytes from 10.2.0.10: icmp_seq=2 ttl=64 time=3.50 ms
64 bytes from 10.2.0.10: icmp_seq=2 ttl=64 time=3.60 ms (DUP!)
64 bytes from 10.2.0.10: icmp_seq=5 ttl=64 time=0.300 ms

--- 10.2.0.10 ping statistics ---
6 packets transmitted, 3 received, +1 duplicates, 50% packet loss, time 52ms
`
	run, ok := parsePingEvery([]byte(out), 6, 10*time.Millisecond, time.Second)
	if !ok {
		t.Fatal("no summary found")
	}
	if run.Sent != 6 || run.Received != 3 || !slices.Equal(run.Lost, []int{3, 4, 6}) || run.MaxRTT != 3500*time.Microsecond || run.MaxRTTSeq != 2 {
		t.Errorf("parsed %+v", run)
	}
	if got := run.Outage(); got != 20*time.Millisecond {
		t.Errorf("outage %v, want 20ms (requests 3 and 4)", got)
	}
	if s := run.String(); !strings.HasSuffix(s, "outage 20ms, lost 3-4,6") {
		t.Errorf("String() = %q", s)
	}
	if _, ok := parsePingEvery([]byte("ping: connect: Network is unreachable\n"), 6, time.Millisecond, time.Second); ok {
		t.Error("a summary found in an error")
	}
}

func requireNetns(t *testing.T) {
	t.Helper()
	if err := NetnsAvailable(); err != nil {
		testenv.Skipf(t, "the netns fabric cannot run: %v", err)
	}
}

// TestNetnsFabricLinks checks what the fabric builds: the namespaces, the
// links' MTUs, IPv6 off, the bridge forwarding at once, the VMs'
// addresses and routes; and that Close leaves nothing behind.
func TestNetnsFabricLinks(t *testing.T) {
	requireNetns(t)
	topo := DemoTopology([2]string{})
	f, err := NewNetnsFabric(topo, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	if got, want := len(f.made), 1+len(topo.Hosts)+len(topo.VMs); got != want {
		t.Errorf("%d namespaces made; want %d", got, want)
	}
	handle := func(ns string) *netlink.Handle {
		t.Helper()
		fd, err := netns.GetFromName(ns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fd.Close() })
		h, err := netlink.NewHandleAt(fd)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.Close)
		return h
	}
	checkLink := func(h *netlink.Handle, ns, name string, mtu int) netlink.Link {
		t.Helper()
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatalf("%s in %s: %v", name, ns, err)
		}
		if l.Attrs().MTU != mtu {
			t.Errorf("%s in %s: MTU %d; want %d", name, ns, l.Attrs().MTU, mtu)
		}
		if l.Attrs().OperState != netlink.OperUp {
			t.Errorf("%s in %s: %s; want up", name, ns, l.Attrs().OperState)
		}
		return l
	}

	ul := handle(f.UnderlayNamespace())
	br := checkLink(ul, f.UnderlayNamespace(), bridgeName, underlayMTU)
	for _, h := range topo.Hosts {
		checkLink(handle(f.HostNamespace(h.ID)), f.HostNamespace(h.ID), uplinkName, underlayMTU)
		if l := checkLink(ul, f.UnderlayNamespace(), h.ID, underlayMTU); l.Attrs().MasterIndex != br.Attrs().Index {
			t.Errorf("%s is not a port of %s", h.ID, bridgeName)
		}
	}
	out, err := exec.Command("ip", "-n", f.UnderlayNamespace(), "-d", "link", "show", bridgeName).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "forward_delay 0 ") || !strings.Contains(string(out), "stp_state 0 ") {
		t.Errorf("bridge not forwarding at once (%v):\n%s", err, out)
	}
	for _, v := range topo.VMs {
		ns := f.Namespace(v.ID)
		vh := handle(ns)
		checkLink(handle(f.HostNamespace(v.Host)), f.HostNamespace(v.Host), portName(v.Port), vmMTU)
		eth := checkLink(vh, ns, vmIfName, vmMTU)
		if eth.Attrs().HardwareAddr.String() != v.MAC.String() {
			t.Errorf("%s: MAC %s; want %s", v.ID, eth.Attrs().HardwareAddr, v.MAC)
		}
		out, err := f.Exec(t.Context(), v.ID, "ip", "-o", "addr", "show")
		if err != nil {
			t.Fatal(err)
		}
		if want := v.IP.String() + "/16"; !strings.Contains(string(out), want) {
			t.Errorf("%s: no %s in\n%s", v.ID, want, out)
		}
		if strings.Contains(string(out), "inet6") {
			t.Errorf("%s: IPv6 is on:\n%s", v.ID, out)
		}
		out, err = f.Exec(t.Context(), v.ID, "ip", "route", "show", "default")
		if err != nil || !strings.Contains(string(out), "via "+v.Gateway.String()+" dev eth0") {
			t.Errorf("%s: default route %q (%v); want via %s", v.ID, out, err, v.Gateway)
		}
	}

	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ns := range f.made {
		if _, err := os.Stat(netnsDir + "/" + ns); err == nil {
			t.Errorf("namespace %s survived Close", ns)
		}
	}
}

// TestNetnsFabricDeletesStale: the namespaces of a run that died (its lock
// free) are deleted by the next fabric; a live fabric's are kept.
func TestNetnsFabricDeletesStale(t *testing.T) {
	requireNetns(t)
	topo := DemoTopology([2]string{})
	live, err := NewNetnsFabric(topo, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	dead, err := NewNetnsFabric(topo, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	dead.lock.Close() // as the kernel does when the process is killed

	next, err := NewNetnsFabric(topo, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	left := fabricNamespaces()
	if got := left[dead.suffix]; len(got) != 0 {
		t.Errorf("stale namespaces kept: %v", got)
	}
	for _, f := range []*NetnsFabric{live, next} {
		if got := left[f.suffix]; !slices.Equal(sorted(got), sorted(f.made)) {
			t.Errorf("fabric %s: namespaces %v; want %v", f.suffix, got, f.made)
		}
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
