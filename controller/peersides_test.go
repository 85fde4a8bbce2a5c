package controller

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// blueSide is c2's side of the peering with red, as c1 hears it.
func blueSide() *p4meshv1.PeerSide {
	return &p4meshv1.PeerSide{Vpc: "blue", PeerVpc: "red", Configured: true, ExportPolicy: "all", Vni: 200,
		Subnets: []string{"10.2.0.0/16"}, ExportedPrefixes: []string{"10.2.0.0/16"}}
}

// peerSidesServer makes c1 (example: peered with c2's blue) from the data
// directory dir, and returns it with its log.
func peerSidesServer(t *testing.T, dir string) (*Server, *syncBuffer) {
	t.Helper()
	store, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Startup(example(t), false); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	s, err := NewServer(ServerOptions{Store: store, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s, logs
}

// savedPeerSides saves c2's side as c1 and returns the file's bytes.
func savedPeerSides(t *testing.T, dir string) []byte {
	t.Helper()
	s, _ := peerSidesServer(t, dir)
	s.setRemote(t.Context(), "c2", map[string]*p4meshv1.PeerSide{"blue/red": blueSide()})
	b, err := os.ReadFile(filepath.Join(dir, peerSidesFile))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func remoteSide(s *Server) *p4meshv1.PeerSide {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remote["c2"]["blue/red"]
}

func TestPeerSidesSavedWithChecksum(t *testing.T) {
	dir := t.TempDir()
	b := savedPeerSides(t, dir)
	if !json.Valid(b) || !bytes.Contains(b, []byte(`"checksum": "sha256:`)) {
		t.Errorf("saved peer sides are not JSON with a checksum:\n%s", b)
	}
	s, logs := peerSidesServer(t, dir)
	if got := remoteSide(s); !proto.Equal(got, blueSide()) {
		t.Errorf("restarted with c2's side %v, want %v", got, blueSide())
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("sound peer sides warned:\n%s", logs)
	}
}

// A damaged peer-sides file is ignored with a warning: the peer controllers
// send their sides again.
func TestPeerSidesDamagedIgnored(t *testing.T) {
	dir := t.TempDir()
	b := savedPeerSides(t, dir)
	path := filepath.Join(dir, peerSidesFile)

	// blue's VNI 200 read as 201: valid JSON, a plausible side, not the
	// one saved.
	i := bytes.Index(b, []byte(`"vni": 200`))
	if i < 0 {
		t.Fatalf("no vni 200 in\n%s", b)
	}
	flipped := bytes.Clone(b)
	flipped[i+len(`"vni": 20`)] ^= 1
	for _, damaged := range [][]byte{flipped, b[:len(b)/2]} {
		if err := os.WriteFile(path, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		s, logs := peerSidesServer(t, dir)
		if got := remoteSide(s); got != nil {
			t.Errorf("a damaged peer-sides file was used: c2's side %v\n%s", got, damaged)
		}
		if !strings.Contains(logs.String(), `level=WARN msg="saved peer sides unusable, ignored; waiting to hear from the peer controllers" err=`) ||
			!strings.Contains(logs.String(), path) {
			t.Errorf("no warning naming %s:\n%s", path, logs)
		}
	}
	if !strings.Contains(peerSidesLog(t, dir, flipped), path+" is damaged: its checksum expects sha256:") {
		t.Error("the warning for a flipped byte does not say what the checksum expected")
	}

	// Any byte.
	for i := range b {
		flipped := bytes.Clone(b)
		flipped[i] ^= 1
		if _, _, err := unsealPeerSides(path, flipped); err == nil {
			t.Errorf("byte %d (%q) xor 1 was accepted", i, b[i])
		}
	}
}

func peerSidesLog(t *testing.T, dir string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, peerSidesFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, logs := peerSidesServer(t, dir)
	return logs.String()
}

// Peer sides from before checksums are used, with a warning, and saved
// again with a checksum.
func TestPeerSidesLegacyMigrated(t *testing.T) {
	dir := t.TempDir()
	side, err := protojson.Marshal(blueSide())
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := json.MarshalIndent(map[string]map[string]json.RawMessage{"c2": {"blue/red": side}}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	logs := peerSidesLog(t, dir, legacy)
	if !strings.Contains(logs, `level=WARN msg="saved peer sides had no checksum`) {
		t.Errorf("legacy peer sides: no warning:\n%s", logs)
	}
	s, again := peerSidesServer(t, dir)
	if got := remoteSide(s); !proto.Equal(got, blueSide()) {
		t.Errorf("legacy peer sides: c2's side %v, want %v", got, blueSide())
	}
	if logs := again.String(); strings.Contains(logs, "level=WARN") {
		t.Errorf("the migrated file still warns:\n%s", logs)
	}
	b, err := os.ReadFile(filepath.Join(dir, peerSidesFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, isLegacy, err := unsealPeerSides("", b); err != nil || isLegacy {
		t.Errorf("the legacy file was not saved again with a checksum (%v):\n%s", err, b)
	}
}
