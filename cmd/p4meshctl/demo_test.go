package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is a bytes.Buffer safe for the logger's goroutines, that
// can call a function on each write.
type lockedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	onWrite func(string)
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	if b.onWrite != nil {
		b.onWrite(b.buf.String())
	}
	return n, err
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestDemoInMemory runs the whole demo on in-memory ports (no root needed)
// and checks that every expectation held.
func TestDemoInMemory(t *testing.T) {
	var out, errs lockedBuffer
	if err := run(t.Context(), []string{"demo", "--in-memory"}, &out, &errs); err != nil {
		t.Fatalf("demo: %v\n%s\nstderr:\n%s", err, out.String(), errs.String())
	}
	got := out.String()
	for _, want := range []string{
		"--in-memory: running the topology in-process on in-memory ports",
		"c1  red → blue  active",
		"✓ h2 holds nothing of green",
		"✓ red-1 → blue-1",
		"✓ red-1 → green-1",
		"expected no reply, got 0/3",
		"✓ red-1 → blue-2",
		"✓ c1's BGP session with the on-prem router is established",
		"red's RIB: 192.168.100.0/24 from red-vpn",
		"✓ red-1 → 192.168.100.1 (behind the on-prem router",
		"All 9 expectations held.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("demo output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "✗") {
		t.Errorf("an expectation failed:\n%s", got)
	}
}

// TestDemoKeep: with --keep the demo runs until its context ends (Ctrl-C)
// and then stops cleanly.
func TestDemoKeep(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &lockedBuffer{onWrite: func(s string) {
		if strings.Contains(s, "keeps running until Ctrl-C") {
			cancel()
		}
	}}
	if err := run(ctx, []string{"demo", "--in-memory", "--keep"}, out, &lockedBuffer{}); err != nil {
		t.Fatalf("demo --keep: %v\n%s", err, out.String())
	}
	if got := out.String(); !strings.Contains(got, "All 9 expectations held.") || !strings.HasSuffix(got, "stopping\n") {
		t.Errorf("demo --keep output:\n%s", got)
	}
}

func TestDemoUsage(t *testing.T) {
	for _, args := range [][]string{{"demo", "extra"}, {"demo", "--frobnicate"}} {
		if err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}); err != errUsage {
			t.Errorf("run(%q) = %v; want usage error", args, err)
		}
	}
}
