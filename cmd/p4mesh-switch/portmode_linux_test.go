//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/dataplane/afpacket"
	"github.com/p4mesh/p4mesh/test/topo"
)

// TestPortModeXDPFallback: where AF_XDP cannot bind the interface (here a
// veth with two receive queues: the port binds queue 0 only), --port-mode
// xdp binds a PACKET_MMAP ring and says so in one warning naming the
// interface and the reason.
func TestPortModeXDPFallback(t *testing.T) {
	topo.RequireRoot(t)
	host := topo.Host(t)
	name := fmt.Sprintf("xq%d", os.Getpid()%100000)
	host.Run(t, "ip", "link", "add", "name", name, "numrxqueues", "2", "numtxqueues", "2", "type", "veth", "peer", "name", name+"p", "numrxqueues", "2", "numtxqueues", "2")
	t.Cleanup(func() { exec.Command("ip", "link", "del", "dev", name).Run() })
	host.Run(t, "ip", "link", "set", "dev", name, "up")
	host.Run(t, "ip", "link", "set", "dev", name+"p", "up")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var logs syncBuffer
	ready := make(chan struct{})
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--grpc-addr", "127.0.0.1:0", "--port", "1=" + name, "--port-mode", "xdp"}, &logs, hooks{ready: func(net.Addr, net.Addr) { close(ready) }})
	}()
	select {
	case <-ready:
	case code := <-done:
		t.Fatalf("run exited with %d:\n%s", code, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("not serving after 10s")
	}
	var warn []string
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, "port=1") {
			warn = append(warn, l)
		}
	}
	if len(warn) != 1 {
		t.Fatalf("%d warnings about the port, want 1:\n%s", len(warn), logs.String())
	}
	for _, want := range []string{"falls back to mmap", "interface=" + name, "2 receive queues"} {
		if !strings.Contains(warn[0], want) {
			t.Errorf("the warning lacks %q: %s", want, warn[0])
		}
	}
	if !strings.Contains(logs.String(), name+" (mmap)") {
		t.Errorf("the log does not say the port runs as mmap:\n%s", logs.String())
	}
	cancel()
	<-done
}

// TestPortModes: a --port interface is bound as a PACKET_MMAP ring by
// default and with --port-mode mmap, as a plain socket with --port-mode
// afpacket, as an AF_XDP socket with --port-mode xdp (on veth: native XDP,
// copy mode, veth has no zero-copy), and the log says which.
func TestPortModes(t *testing.T) {
	topo.RequireRoot(t)
	a, _ := topo.Veth(t, topo.End{}, topo.End{}, topo.VethOptions{})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, a.Name + " (mmap)"},
		{[]string{"--port-mode", "mmap"}, a.Name + " (mmap)"},
		{[]string{"--port-mode", "afpacket"}, a.Name + " (afpacket)"},
		{[]string{"--port-mode", "xdp"}, a.Name + " (xdp)"},
		{[]string{"--port-mode", "xdp"}, "xdp=\"native, copy (zero-copy refused"},
	} {
		ctx, cancel := context.WithCancel(t.Context())
		var logs syncBuffer
		ready := make(chan struct{})
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, append([]string{"--grpc-addr", "127.0.0.1:0", "--port", "1=" + a.Name}, tc.args...),
				&logs, hooks{ready: func(net.Addr, net.Addr) { close(ready) }})
		}()
		select {
		case <-ready:
		case code := <-done:
			t.Fatalf("%v: run exited with %d:\n%s", tc.args, code, logs.String())
		case <-time.After(10 * time.Second):
			t.Fatalf("%v: not serving after 10s", tc.args)
		}
		if !strings.Contains(logs.String(), tc.want) {
			t.Errorf("%v: the log does not say %q:\n%s", tc.args, tc.want, logs.String())
		}
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("%v: exit %d", tc.args, code)
		}
	}
}

// TestPortModeFallback: where the kernel refuses a ring, --port-mode mmap
// binds the interface with a plain socket and says why in a warning.
func TestPortModeFallback(t *testing.T) {
	topo.RequireRoot(t)
	a, _ := topo.Veth(t, topo.End{}, topo.End{}, topo.VethOptions{})
	saved := openRing
	openRing = func(string) (*afpacket.Ring, error) {
		return nil, errors.New("PACKET_RX_RING: operation not permitted")
	}
	defer func() { openRing = saved }()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var logs syncBuffer
	ready := make(chan struct{})
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--grpc-addr", "127.0.0.1:0", "--port", "1=" + a.Name}, &logs, hooks{ready: func(net.Addr, net.Addr) { close(ready) }})
	}()
	select {
	case <-ready:
	case code := <-done:
		t.Fatalf("run exited with %d:\n%s", code, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("not serving after 10s")
	}
	for _, want := range []string{"level=WARN", "falls back to afpacket", "operation not permitted", "interface=" + a.Name, a.Name + " (afpacket)"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, logs.String())
		}
	}
	cancel()
	<-done
}
