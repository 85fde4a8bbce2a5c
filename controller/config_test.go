package controller

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestYAMLRoundTrip(t *testing.T) {
	c := example(t)
	// An attachment and a peering that exports custom routes, so that
	// their fields are written and read back too.
	e := endpointOf(c, "red-router")
	e.Kind, e.RouterMAC = KindVPN, mustMAC("02:fe:00:00:00:09")
	c.Peerings[0].ExportCustomRoutes = true
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseConfig(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !reflect.DeepEqual(back, c) || !back.Equal(c) {
		t.Errorf("round trip changed the configuration:\n%s", out)
	}
	// The written form is stable: writing it again gives the same bytes.
	again, err := back.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, out) {
		t.Errorf("second write differs:\n%s\n---\n%s", out, again)
	}
	// Defaults stay implicit: red has no gateway in the file and gets
	// none written.
	if strings.Count(string(out), "gateway_ip:") != 1 {
		t.Errorf("want only green's gateway_ip written:\n%s", out)
	}
	for _, w := range []string{"router_mac: 02:fe:00:00:00:09", "export_custom_routes: true"} {
		if strings.Count(string(out), w) != 1 {
			t.Errorf("want %q written once:\n%s", w, out)
		}
	}

	// yaml.Marshal and yaml.Unmarshal use the same form, for a Config
	// value and a pointer alike.
	for _, v := range []any{*c, c} {
		b, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var u Config
		if err := yaml.Unmarshal(b, &u); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&u, c) {
			t.Errorf("yaml.Marshal(%T) / yaml.Unmarshal changed the configuration:\n%s", v, b)
		}
	}

	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := c.SaveFile(path); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(loaded, c) {
		t.Error("SaveFile / LoadFile changed the configuration")
	}
}

// TestYAMLReplicas reads a directory whose c2 runs as a replica set and
// checks it round-trips, while a one-address controller is written as it
// always was.
func TestYAMLReplicas(t *testing.T) {
	in := strings.Replace(string(mustRead(t, "testdata/red-blue.yaml")),
		"    address: 127.0.0.1:7002\n",
		"    replicas:\n      - 127.0.0.1:7002\n      - 10.0.0.2:7002\n      - 10.0.0.3:7002\n", 1)
	c, err := ParseConfig([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1:7002", "10.0.0.2:7002", "10.0.0.3:7002"}
	if got := c.Directory[1].Addresses(); !reflect.DeepEqual(got, want) || c.Directory[1].Address != "" {
		t.Fatalf("c2: address %q, addresses %q; want none and %q", c.Directory[1].Address, got, want)
	}
	if got := c.Directory[0].Addresses(); !reflect.DeepEqual(got, []string{"127.0.0.1:7001"}) {
		t.Fatalf("c1's addresses = %q, want its one address", got)
	}
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseConfig(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip changed the configuration:\n%s", out)
	}
	if !strings.Contains(string(out), "  - name: c1\n    address: 127.0.0.1:7001\n    vpcs:") ||
		!strings.Contains(string(out), "  - name: c2\n    replicas:\n      - 127.0.0.1:7002\n      - 10.0.0.2:7002\n") {
		t.Errorf("directory not written as expected:\n%s", out)
	}
	if plain, _ := example(t).YAML(); strings.Contains(string(plain), "replicas") {
		t.Errorf("a directory without replica sets is written with replicas:\n%s", plain)
	}
	// Clone copies the replicas: a caller editing its copy changes no
	// accepted configuration.
	cl := c.Clone()
	cl.Directory[1].Replicas[0] = "10.9.9.9:1"
	if c.Directory[1].Replicas[0] != "127.0.0.1:7002" {
		t.Error("Clone shares the replicas slice")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want []string
	}{
		{"bad values, all named by path", `
controller: c1
vpcs:
  - name: red
    vni: 100
    subnets: [10.1.0.0/16, 10.2.0.0/33]
    gateway_mac: zz:00:00:00:00:01
endpoints:
  - id: vm1
    ip: 10.1.0.300
routes:
  - vpc: red
    prefix: default
`, []string{
			`vpcs[red].gateway_mac: "zz:00:00:00:00:01" is not a MAC address`,
			`vpcs[red].subnets[1]: "10.2.0.0/33" is not an IP prefix`,
			`endpoints[vm1].ip: "10.1.0.300" is not an IP address`,
			`routes[0].prefix: "default" is not an IP prefix`,
		}},
		{"unknown field", "controller: c1\nvpcs:\n  - name: red\n    vnii: 100\n", []string{"field vnii not found"}},
		{"out of range port", "controller: c1\nhosts:\n  - id: h1\n    uplink_port: 70000\n", []string{"line 4", "uint16"}},
		{"empty", "# nothing\n", []string{"empty configuration"}},
		{"two documents", "controller: c1\n---\ncontroller: c2\n", []string{"more than one YAML document"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoadFileNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("controller: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("LoadFile error %v does not name %s", err, path)
	}
}

func TestIPProtocol(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint8
		ok   bool
	}{
		{"tcp", 6, true}, {"udp", 17, true}, {"icmp", 1, true}, {"47", 47, true}, {"0", 0, true},
		{"256", 0, false}, {"-1", 0, false}, {"TCP", 0, false}, {"", 0, false},
	} {
		if got, ok := IPProtocol(tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("IPProtocol(%q) = %d %v, want %d %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestStorePersistsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Current() != nil {
		t.Fatal("a new store has a current configuration")
	}
	if _, ok, err := s.Load(); ok || err != nil {
		t.Fatalf("Load of an empty store = %v, %v", ok, err)
	}
	c := example(t)
	if err := s.Apply(c); err != nil {
		t.Fatal(err)
	}
	// The store keeps its own copy.
	c.VPCs[0].VNI = 999
	if s.Current().VPCs[0].VNI != 100 {
		t.Error("changing the applied Config changed the store's")
	}

	s2, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := s2.Load()
	if err != nil || !ok {
		t.Fatalf("Load after reopen = %v, %v", ok, err)
	}
	if !reflect.DeepEqual(got, example(t)) {
		t.Error("the reopened store holds a different configuration")
	}
	assertNoTempFiles(t, dir)
}

func TestStoreFailedApplyChangesNothing(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	old := example(t)
	if err := s.Apply(old); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	cur := s.Current()

	bad := example(t)
	vpcOf(bad, "green").VNI = 100
	bad.Peerings[0].ExportPolicy = "web"
	err = s.Apply(bad)
	if err == nil {
		t.Fatal("Apply accepted an invalid configuration")
	}
	for _, w := range []string{"vpcs[green].vni: 100 is also the VNI of red", `peerings[red->blue].export_policy: export policy "web" is not defined`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Apply error does not contain %q:\n%v", w, err)
		}
	}
	if s.Current() != cur || !s.Current().Equal(old) {
		t.Error("a failed Apply changed the current configuration")
	}
	after, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("a failed Apply changed the saved configuration")
	}
	assertNoTempFiles(t, dir)
}

func TestStoreFailedSaveChangesNothing(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(example(t)); err != nil {
		t.Fatal(err)
	}
	cur := s.Current()
	// A directory where the file goes makes the rename fail, even for root
	// (which a read-only directory would not stop).
	if err := os.Remove(s.Path()); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(s.Path(), "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	next := example(t)
	next.Peerings[0].Preference = 5
	if err := s.Apply(next); err == nil {
		t.Fatal("Apply succeeded although the save failed")
	}
	if s.Current() != cur {
		t.Error("a failed save changed the current configuration")
	}
	assertNoTempFiles(t, dir)
}

func TestOpenStoreRemovesStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, ".config.yaml.123"+tmpSuffix)
	if err := os.WriteFile(stale, []byte("contr"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(dir); err != nil {
		t.Fatal(err)
	}
	assertNoTempFiles(t, dir)
}

func TestStoreConcurrentApply(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			c := example(t)
			c.Peerings[0].Preference = i
			if err := s.Apply(c); err != nil {
				t.Error(err)
			}
			_ = s.Current()
		})
	}
	wg.Wait()
	saved, ok, err := s.Load()
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if !saved.Equal(s.Current()) {
		t.Error("the saved configuration is not the current one")
	}
	assertNoTempFiles(t, dir)
}

func TestStoreStartup(t *testing.T) {
	saved := example(t)
	other := example(t)
	other.Peerings[0].Preference = 42
	invalid := example(t)
	invalid.Peerings[0].ExportPolicy = "web"

	for _, tc := range []struct {
		name      string
		saved     *Config // persisted before start-up, nil for none
		flag      *Config
		override  bool    // --config-overrides-saved
		want      *Config // current after start-up, nil for an error
		fromSaved bool
		diff      string // StartupResult.Differences
		wantErr   string
	}{
		{"nothing at all", nil, nil, false, nil, false, "", ErrNoConfig.Error()},
		{"first start from --config", nil, other, false, other, false, "", ""},
		{"first start, --config-overrides-saved changes nothing", nil, other, true, other, false, "", ""},
		{"saved, no --config", saved, nil, false, saved, true, "", ""},
		{"--config equal to saved", saved, example(t), false, saved, true, "", ""},
		{"--config equal to saved, overriding", saved, example(t), true, saved, true, "", ""},
		{"saved wins over a differing --config", saved, other, false, saved, true, "peering red->blue: preference differs", ""},
		{"saved wins over an invalid --config", saved, invalid, false, saved, true, "peering red->blue: export_policy differs", ""},
		{"--config-overrides-saved: --config wins", saved, other, true, other, false, "peering red->blue: preference differs", ""},
		{"--config-overrides-saved, invalid --config: error, saved kept", saved, invalid, true, nil, false, "", `--config: invalid configuration:` + "\n" + `peerings[red->blue].export_policy`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.saved != nil {
				s, err := OpenStore(dir)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Save(tc.saved); err != nil {
					t.Fatal(err)
				}
			}
			s, err := OpenStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.Startup(tc.flag, tc.override)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Startup error = %v, want %q", err, tc.wantErr)
				}
				if tc.flag == nil && !errors.Is(err, ErrNoConfig) {
					t.Errorf("Startup error %v is not ErrNoConfig", err)
				}
				if s.Current() != nil {
					t.Error("a failed start-up made a configuration current")
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				got := s.Current()
				if !got.Equal(tc.want) || res.FromSaved != tc.fromSaved {
					t.Errorf("Startup = preference %d fromSaved %v, want preference %d fromSaved %v",
						got.Peerings[0].Preference, res.FromSaved, tc.want.Peerings[0].Preference, tc.fromSaved)
				}
				if d := res.Differences.String(); d != tc.diff {
					t.Errorf("Startup differences = %q, want %q", d, tc.diff)
				}
			}
			// What is on disk is what is current, or the old saved one.
			onDisk, ok, err := s.Load()
			if err != nil {
				t.Fatal(err)
			}
			switch wantDisk := tc.want; {
			case wantDisk == nil && tc.saved == nil:
				if ok {
					t.Error("a failed start-up saved a configuration")
				}
			case wantDisk == nil:
				wantDisk = tc.saved
				fallthrough
			default:
				if !ok || !onDisk.Equal(wantDisk) {
					t.Error("the saved configuration is not the expected one")
				}
			}
		})
	}
}

// The case of the issue: a VNI, a directory address and the endpoint set
// changed at run time (as over gNMI) survive a restart with the --config
// the controller was first started with, and the differences are named.
func TestStoreStartupKeepsChangesAcceptedSince(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	flag := example(t)
	if _, err := s.Startup(flag, false); err != nil {
		t.Fatal(err)
	}
	changed := example(t)
	vpcOf(changed, "red").VNI = 101
	changed.Directory[1].Address = "127.0.0.1:7102"
	changed.Endpoints = append(changed.Endpoints, Endpoint{ID: "red-vm9", VPC: "red", Kind: "vm", IP: ip("10.1.0.99"), MAC: mustMAC("02:01:00:00:00:99"), Host: "h1", Port: 9})
	if err := s.Apply(changed); err != nil {
		t.Fatal(err)
	}

	s, err = OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Startup(example(t), false)
	if err != nil {
		t.Fatal(err)
	}
	if !res.FromSaved || !s.Current().Equal(changed) {
		t.Fatalf("restart with the first --config: fromSaved %v, red's VNI %d; want the changes kept", res.FromSaved, vpcOf(s.Current(), "red").VNI)
	}
	want := "directory c2: address differs; vpc red: vni differs; endpoint red-vm9: only in saved"
	if d := res.Differences.String(); d != want {
		t.Errorf("differences = %q, want %q", d, want)
	}

	// --config-overrides-saved: the file wins, and replaces what is saved.
	s, err = OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err = s.Startup(example(t), true)
	if err != nil {
		t.Fatal(err)
	}
	if res.FromSaved || !s.Current().Equal(example(t)) || res.Differences.String() != want {
		t.Fatalf("--config-overrides-saved: fromSaved %v, differences %q; want --config applied", res.FromSaved, res.Differences)
	}
	if saved, ok, err := s.Load(); err != nil || !ok || !saved.Equal(example(t)) {
		t.Errorf("--config-overrides-saved did not replace the saved configuration: %v %v", ok, err)
	}
}

func TestStoreStartupUnreadableSaved(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, storeFile), []byte("controller: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Startup(example(t), false); err == nil || !strings.Contains(err.Error(), "load saved configuration") || !strings.Contains(err.Error(), "--config-overrides-saved") {
		t.Errorf("Startup with --config over an unreadable saved one: %v, want an error naming --config-overrides-saved", err)
	}
	res, err := s.Startup(example(t), true)
	if err != nil || res.FromSaved || !s.Current().Equal(example(t)) {
		t.Fatalf("Startup with --config-overrides-saved = %v, %v", res.FromSaved, err)
	}
	if saved, ok, err := s.Load(); err != nil || !ok || !saved.Equal(example(t)) {
		t.Errorf("--config did not replace the unreadable configuration: %v %v", ok, err)
	}
	if b, err := os.ReadFile(res.SetAside); err != nil || string(b) != "controller: [\n" {
		t.Errorf("the unreadable configuration was not kept aside as %q: %v", res.SetAside, err)
	}
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), tmpSuffix) {
			t.Errorf("temporary file %s left in %s", e.Name(), dir)
		}
	}
}
