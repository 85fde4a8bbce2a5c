// Package e2e runs p4mesh end to end: controllers, OHCs and switches
// together, on in-memory ports and (as root) on network namespaces.
package e2e

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/demo"
)

func logger(t *testing.T) *slog.Logger {
	if os.Getenv("P4MESH_E2E_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// waitPing pings until want replies of count come back or the deadline.
func waitPing(t *testing.T, m *demo.Mesh, vm string, dst string, want int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var got int
	for ctx.Err() == nil {
		n, err := m.Ping(ctx, vm, netip.MustParseAddr(dst), 3)
		if err == nil && n == 3 {
			return
		}
		got = n
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("ping %s -> %s: %d/3 replies; want %d", vm, dst, got, want)
}

func TestMeshInMemory(t *testing.T) {
	topo := demo.DemoTopology([2]string{"", ""})
	f := demo.NewMemFabric(topo)
	defer f.Close()
	m, err := demo.Start(t.Context(), demo.Options{Fabric: f, DataDir: t.TempDir(), Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	waitPing(t, m, "red-1", "10.2.0.10", 3) // across the peering, h1 -> h2
	waitPing(t, m, "red-1", "10.1.0.11", 3) // within red, h1 -> h3
	waitPing(t, m, "blue-1", "10.1.0.10", 3)
	if n, _ := m.Ping(t.Context(), "red-1", netip.MustParseAddr("10.3.0.10"), 3); n != 0 {
		t.Errorf("red-1 reached green-1 (not peered): %d replies", n)
	}
}
