package controller

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// savedStore returns a store in a new directory holding example's
// configuration, and the bytes of its file.
func savedStore(t *testing.T) (*Store, []byte) {
	t.Helper()
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(example(t)); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	return s, data
}

// startDamaged writes data as the saved configuration of a new store and
// checks that Startup refuses it, with or without a --config, naming the
// file and the ways out, and that it changed nothing.
func startDamaged(t *testing.T, data []byte, want string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, storeFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, flag := range []*Config{nil, example(t)} {
		_, err := s.Startup(flag, false)
		if err == nil {
			t.Fatalf("Startup accepted a damaged saved configuration:\n%s", data)
		}
		for _, w := range []string{s.Path() + " is damaged: " + want, "from a backup", "--config-overrides-saved"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Startup error does not contain %q:\n%v", w, err)
			}
		}
		if s.Current() != nil {
			t.Error("a damaged saved configuration was made current")
		}
	}
	if after, err := os.ReadFile(s.Path()); err != nil || !bytes.Equal(after, data) {
		t.Errorf("a refused start-up changed the saved file (%v)", err)
	}
}

func TestSavedConfigurationCutShortIsRefused(t *testing.T) {
	_, data := savedStore(t)
	// Cut after red-vm2, a complete endpoint: what is left is a smaller
	// configuration that parses and validates, which is what made such a
	// cut go unnoticed.
	cut := data[:bytes.Index(data, []byte("  - id: red-router\n"))]
	c, err := ParseConfig(cut)
	if err != nil || len(c.Endpoints) != 2 || c.Validate() != nil {
		t.Fatalf("the cut file should parse as a valid configuration with 2 endpoints: %v", err)
	}
	startDamaged(t, cut, `it has no checksum line: expected a last line "# p4mesh-checksum: sha256:<64 hex digits>", found "    port: 2"; it was probably cut short`)

	// And cut anywhere else: within the header what is left is not a
	// configuration; after it, the checksum line is missing.
	for n := range len(data) {
		yaml, _, err := unsealConfig("config.yaml", data[:n])
		if err == nil {
			_, err = ParseConfig(yaml)
		}
		if err == nil {
			t.Errorf("the saved configuration cut to %d of %d bytes was accepted", n, len(data))
		}
	}
}

func TestSavedConfigurationFlippedByteIsRefused(t *testing.T) {
	_, data := savedStore(t)
	// red-vm1's address 10.1.0.10 becomes 10.1.1.10: still a valid
	// configuration, but not the one saved.
	i := bytes.Index(data, []byte("ip: 10.1.0.10\n")) + len("ip: 10.1.")
	flipped := bytes.Clone(data)
	flipped[i] ^= 1
	if c, err := ParseConfig(flipped); err != nil || c.Validate() != nil {
		t.Fatalf("the flipped file should parse as a valid configuration: %v", err)
	}
	startDamaged(t, flipped, "its checksum line expects sha256:")

	// Any byte, the header and the checksum line included.
	for i := range data {
		for _, bit := range []byte{0x01, 0x20, 0x80} {
			flipped := bytes.Clone(data)
			flipped[i] ^= bit
			if _, _, err := unsealConfig("config.yaml", flipped); err == nil {
				t.Errorf("byte %d (%q) xor %#x was accepted", i, data[i], bit)
			}
		}
	}
}

func TestSavedConfigurationChecksumLineRefusedWhenMalformed(t *testing.T) {
	_, data := savedStore(t)
	i := bytes.LastIndex(data, []byte(checksumLine))
	startDamaged(t, append(bytes.Clone(data[:i]), "# p4mesh-checksum: md5:00\n"...),
		`its checksum line is "# p4mesh-checksum: md5:00\n", expected "# p4mesh-checksum: sha256:<64 hex digits>"`)
	startDamaged(t, append(bytes.Clone(data), "vpcs: []\n"...), "its checksum line is")
}

// A saved configuration from before checksums is accepted, once, and
// saved again with a checksum.
func TestLegacySavedConfigurationIsMigrated(t *testing.T) {
	dir := t.TempDir()
	legacy, err := example(t).YAML()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, storeFile), legacy, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Startup(example(t), false)
	if err != nil || !res.FromSaved || !res.Migrated || !s.Current().Equal(example(t)) {
		t.Fatalf("Startup from a legacy saved configuration = %+v, %v", res, err)
	}
	data, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if yaml, isLegacy, err := unsealConfig(s.Path(), data); err != nil || isLegacy || !bytes.Equal(yaml, append([]byte(savedHeader), legacy...)) {
		t.Fatalf("the legacy file was not rewritten with a checksum (legacy %v, %v):\n%s", isLegacy, err, data)
	}

	s, err = OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := s.Startup(nil, false); err != nil || res.Migrated {
		t.Errorf("second start-up = %+v, %v; want no migration", res, err)
	}
}

// --config-overrides-saved starts from --config over a damaged saved
// configuration, which it moves aside rather than overwriting.
func TestDamagedSavedConfigurationMovedAside(t *testing.T) {
	s, data := savedStore(t)
	damaged := data[:len(data)/2]
	if err := os.WriteFile(s.Path(), damaged, 0o600); err != nil {
		t.Fatal(err)
	}

	// An invalid --config: refused, and the damaged file stays put.
	invalid := example(t)
	invalid.Peerings[0].ExportPolicy = "web"
	s, err := OpenStore(filepath.Dir(s.Path()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Startup(invalid, true); err == nil || !strings.Contains(err.Error(), "--config: invalid configuration") {
		t.Fatalf("Startup with an invalid --config over a damaged saved one: %v", err)
	}
	if got, err := os.ReadFile(s.Path()); err != nil || !bytes.Equal(got, damaged) {
		t.Fatalf("a refused --config moved the damaged file (%v)", err)
	}

	other := example(t)
	other.Peerings[0].Preference = 42
	res, err := s.Startup(other, true)
	if err != nil || res.FromSaved || !s.Current().Equal(other) {
		t.Fatalf("Startup with --config-overrides-saved over a damaged saved one = %+v, %v", res, err)
	}
	if res.Unloadable == nil || !strings.Contains(res.Unloadable.Error(), "is damaged") {
		t.Errorf("Unloadable = %v, want why the saved configuration was set aside", res.Unloadable)
	}
	if got, err := os.ReadFile(res.SetAside); err != nil || !bytes.Equal(got, damaged) || !strings.HasPrefix(res.SetAside, s.Path()+".damaged-") {
		t.Errorf("the damaged file was not kept as %q (%v)", res.SetAside, err)
	}
	if saved, ok, err := s.Load(); err != nil || !ok || !saved.Equal(other) {
		t.Errorf("--config was not saved in its place: %v %v", ok, err)
	}
}
