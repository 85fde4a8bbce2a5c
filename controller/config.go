package controller

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// The YAML form of a Config. Addresses, prefixes and MACs are strings in
// YAML and typed in the model; the conversion happens here, in a second
// pass over plain string documents, rather than through TextUnmarshaler,
// because yaml.v3 stops at the first TextUnmarshaler error and reports it
// without saying where it is. This way a bad value is reported with its
// path, and all of them at once.

type configDoc struct {
	Controller     string           `yaml:"controller"`
	Directory      []controllerDoc  `yaml:"directory,omitempty"`
	VPCs           []vpcDoc         `yaml:"vpcs,omitempty"`
	Hosts          []hostDoc        `yaml:"hosts,omitempty"`
	Endpoints      []endpointDoc    `yaml:"endpoints,omitempty"`
	LoadBalancers  []lbDoc          `yaml:"load_balancers,omitempty"`
	Routes         []routeDoc       `yaml:"routes,omitempty"`
	ExportPolicies []policyDoc      `yaml:"export_policies,omitempty"`
	Peerings       []peeringDoc     `yaml:"peerings,omitempty"`
	BGP            *bgpDoc          `yaml:"bgp,omitempty"`
	GatewayPools   []gatewayPoolDoc `yaml:"gateway_pools,omitempty"`
}

// controllerDoc is a directory entry. A controller that runs as a
// replica set lists every replica's address under replicas:
//
//   - name: c1
//     replicas: [10.0.0.1:7001, 10.0.0.2:7001, 10.0.0.3:7001]
//     vpcs: [red]
//
// and one that does not has its one address, as it always had:
//
//   - name: c2
//     address: 10.0.1.1:7001
//     vpcs: [blue]
type controllerDoc struct {
	Name     string   `yaml:"name"`
	Address  string   `yaml:"address,omitempty"`
	Replicas []string `yaml:"replicas,omitempty"`
	VPCs     []string `yaml:"vpcs,omitempty"`
}

type vpcDoc struct {
	Name       string   `yaml:"name"`
	VNI        uint32   `yaml:"vni"`
	Subnets    []string `yaml:"subnets,omitempty"`
	GatewayIP  string   `yaml:"gateway_ip,omitempty"`
	GatewayMAC string   `yaml:"gateway_mac,omitempty"`
}

type hostDoc struct {
	ID             string             `yaml:"id"`
	UnderlayIP     string             `yaml:"underlay_ip"`
	MAC            string             `yaml:"mac"`
	UplinkPort     uint16             `yaml:"uplink_port"`
	UnderlayRoutes []underlayRouteDoc `yaml:"underlay_routes,omitempty"`
}

type underlayRouteDoc struct {
	Prefix string `yaml:"prefix"`
	Port   uint16 `yaml:"port"`
	SrcMAC string `yaml:"src_mac"`
	DstMAC string `yaml:"dst_mac"`
}

type endpointDoc struct {
	ID   string `yaml:"id"`
	VPC  string `yaml:"vpc"`
	Kind string `yaml:"kind"`
	IP   string `yaml:"ip"`
	MAC  string `yaml:"mac"`
	Host string `yaml:"host"`
	Port uint16 `yaml:"port"`
	// RouterMAC is an attachment's on-prem router MAC.
	RouterMAC string `yaml:"router_mac,omitempty"`
}

type lbDoc struct {
	Name     string       `yaml:"name"`
	VPC      string       `yaml:"vpc"`
	VIP      string       `yaml:"vip"`
	Protocol string       `yaml:"protocol"`
	Port     uint16       `yaml:"port"`
	Backends []backendDoc `yaml:"backends,omitempty"`
}

type backendDoc struct {
	Endpoint string `yaml:"endpoint"`
	// Weight is a pointer so that an omitted weight means 1, the common
	// case, while an explicit 0 still reaches Validate and is refused.
	Weight *uint32 `yaml:"weight,omitempty"`
}

type routeDoc struct {
	VPC      string `yaml:"vpc"`
	Prefix   string `yaml:"prefix"`
	NextHop  string `yaml:"next_hop,omitempty"`
	Priority uint32 `yaml:"priority,omitempty"`
}

type policyDoc struct {
	Name        string   `yaml:"name"`
	Prefixes    []string `yaml:"prefixes,omitempty"`
	PrivateOnly bool     `yaml:"private_only,omitempty"`
	Protocols   []string `yaml:"protocols,omitempty"`
}

type peeringDoc struct {
	VPC          string `yaml:"vpc"`
	PeerVPC      string `yaml:"peer_vpc"`
	ExportPolicy string `yaml:"export_policy"`
	Preference   int    `yaml:"preference,omitempty"`
	// ExportCustomRoutes: see Peering.
	ExportCustomRoutes bool `yaml:"export_custom_routes,omitempty"`
}

// converter turns a configDoc into a Config, collecting what does not
// parse by path.
type converter struct{ errs []error }

func (cv *converter) addr(path, s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		cv.errs = append(cv.errs, fmt.Errorf("%s: %q is not an IP address", path, s))
	}
	return a
}

func (cv *converter) prefix(path, s string) netip.Prefix {
	if s == "" {
		return netip.Prefix{}
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		cv.errs = append(cv.errs, fmt.Errorf("%s: %q is not an IP prefix (address/length)", path, s))
	}
	return p
}

func (cv *converter) mac(path, s string) MAC {
	if s == "" {
		return MAC{}
	}
	m, err := ParseMAC(s)
	if err != nil {
		cv.errs = append(cv.errs, fmt.Errorf("%s: %q is not a MAC address", path, s))
	}
	return m
}

func (d *configDoc) config() (*Config, error) {
	var cv converter
	c := &Config{Controller: d.Controller}
	for _, e := range d.Directory {
		c.Directory = append(c.Directory, ControllerEntry{Name: e.Name, Address: e.Address, Replicas: e.Replicas, VPCs: e.VPCs})
	}
	for i, v := range d.VPCs {
		p := item("vpcs", i, v.Name)
		vpc := VPC{
			Name:       v.Name,
			VNI:        v.VNI,
			GatewayIP:  cv.addr(p+".gateway_ip", v.GatewayIP),
			GatewayMAC: cv.mac(p+".gateway_mac", v.GatewayMAC),
		}
		for k, s := range v.Subnets {
			vpc.Subnets = append(vpc.Subnets, cv.prefix(fmt.Sprintf("%s.subnets[%d]", p, k), s))
		}
		c.VPCs = append(c.VPCs, vpc)
	}
	for i, h := range d.Hosts {
		p := item("hosts", i, h.ID)
		host := Host{
			ID:         h.ID,
			UnderlayIP: cv.addr(p+".underlay_ip", h.UnderlayIP),
			MAC:        cv.mac(p+".mac", h.MAC),
			UplinkPort: h.UplinkPort,
		}
		for k, r := range h.UnderlayRoutes {
			rp := fmt.Sprintf("%s.underlay_routes[%d]", p, k)
			host.UnderlayRoutes = append(host.UnderlayRoutes, UnderlayRoute{
				Prefix: cv.prefix(rp+".prefix", r.Prefix),
				Port:   r.Port,
				SrcMAC: cv.mac(rp+".src_mac", r.SrcMAC),
				DstMAC: cv.mac(rp+".dst_mac", r.DstMAC),
			})
		}
		c.Hosts = append(c.Hosts, host)
	}
	for i, e := range d.Endpoints {
		p := item("endpoints", i, e.ID)
		c.Endpoints = append(c.Endpoints, Endpoint{
			ID:   e.ID,
			VPC:  e.VPC,
			Kind: EndpointKind(e.Kind),
			IP:   cv.addr(p+".ip", e.IP),
			MAC:  cv.mac(p+".mac", e.MAC),
			Host: e.Host,
			Port: e.Port,
			// Optional in the document: Validate says which kinds need it.
			RouterMAC: cv.mac(p+".router_mac", e.RouterMAC),
		})
	}
	for i, l := range d.LoadBalancers {
		p := item("load_balancers", i, l.Name)
		lb := LoadBalancer{
			Name:     l.Name,
			VPC:      l.VPC,
			VIP:      cv.addr(p+".vip", l.VIP),
			Protocol: l.Protocol,
			Port:     l.Port,
		}
		for _, b := range l.Backends {
			w := uint32(1)
			if b.Weight != nil {
				w = *b.Weight
			}
			lb.Backends = append(lb.Backends, LBBackend{Endpoint: b.Endpoint, Weight: w})
		}
		c.LoadBalancers = append(c.LoadBalancers, lb)
	}
	for i, r := range d.Routes {
		c.Routes = append(c.Routes, Route{
			VPC:      r.VPC,
			Prefix:   cv.prefix(fmt.Sprintf("routes[%d].prefix", i), r.Prefix),
			NextHop:  r.NextHop,
			Priority: r.Priority,
		})
	}
	for i, pd := range d.ExportPolicies {
		p := item("export_policies", i, pd.Name)
		pol := ExportPolicy{Name: pd.Name, PrivateOnly: pd.PrivateOnly, Protocols: pd.Protocols}
		for k, s := range pd.Prefixes {
			pol.Prefixes = append(pol.Prefixes, cv.prefix(fmt.Sprintf("%s.prefixes[%d]", p, k), s))
		}
		c.ExportPolicies = append(c.ExportPolicies, pol)
	}
	for _, pr := range d.Peerings {
		c.Peerings = append(c.Peerings, Peering(pr))
	}
	c.BGP = cv.bgp(d.BGP)
	c.GatewayPools = cv.gatewayPools(d.GatewayPools)
	if err := errors.Join(cv.errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// text formats an address or prefix, the invalid (unset) one as "" so that
// it is omitted, where String would say "invalid IP".
func text[T interface {
	IsValid() bool
	String() string
}](v T) string {
	if !v.IsValid() {
		return ""
	}
	return v.String()
}

func macText(m MAC) string {
	if m.IsZero() {
		return ""
	}
	return m.String()
}

func docOf(c *Config) *configDoc {
	d := &configDoc{Controller: c.Controller}
	for _, e := range c.Directory {
		d.Directory = append(d.Directory, controllerDoc{Name: e.Name, Address: e.Address, Replicas: e.Replicas, VPCs: e.VPCs})
	}
	for _, v := range c.VPCs {
		vd := vpcDoc{Name: v.Name, VNI: v.VNI, GatewayIP: text(v.GatewayIP), GatewayMAC: macText(v.GatewayMAC)}
		for _, s := range v.Subnets {
			vd.Subnets = append(vd.Subnets, text(s))
		}
		d.VPCs = append(d.VPCs, vd)
	}
	for _, h := range c.Hosts {
		hd := hostDoc{ID: h.ID, UnderlayIP: text(h.UnderlayIP), MAC: macText(h.MAC), UplinkPort: h.UplinkPort}
		for _, r := range h.UnderlayRoutes {
			hd.UnderlayRoutes = append(hd.UnderlayRoutes, underlayRouteDoc{
				Prefix: text(r.Prefix), Port: r.Port, SrcMAC: macText(r.SrcMAC), DstMAC: macText(r.DstMAC),
			})
		}
		d.Hosts = append(d.Hosts, hd)
	}
	for _, e := range c.Endpoints {
		d.Endpoints = append(d.Endpoints, endpointDoc{
			ID: e.ID, VPC: e.VPC, Kind: string(e.Kind), IP: text(e.IP), MAC: macText(e.MAC), Host: e.Host, Port: e.Port,
			RouterMAC: macText(e.RouterMAC),
		})
	}
	for _, lb := range c.LoadBalancers {
		ld := lbDoc{Name: lb.Name, VPC: lb.VPC, VIP: text(lb.VIP), Protocol: lb.Protocol, Port: lb.Port}
		for _, b := range lb.Backends {
			ld.Backends = append(ld.Backends, backendDoc{Endpoint: b.Endpoint, Weight: &b.Weight})
		}
		d.LoadBalancers = append(d.LoadBalancers, ld)
	}
	for _, r := range c.Routes {
		d.Routes = append(d.Routes, routeDoc{VPC: r.VPC, Prefix: text(r.Prefix), NextHop: r.NextHop, Priority: r.Priority})
	}
	for _, p := range c.ExportPolicies {
		pd := policyDoc{Name: p.Name, PrivateOnly: p.PrivateOnly, Protocols: p.Protocols}
		for _, s := range p.Prefixes {
			pd.Prefixes = append(pd.Prefixes, text(s))
		}
		d.ExportPolicies = append(d.ExportPolicies, pd)
	}
	for _, p := range c.Peerings {
		d.Peerings = append(d.Peerings, peeringDoc(p))
	}
	d.BGP = bgpDocOf(c.BGP)
	for _, p := range c.GatewayPools {
		d.GatewayPools = append(d.GatewayPools, gatewayPoolDocOf(p))
	}
	return d
}

// ParseConfig parses a configuration in YAML. It is strict: an unknown
// field (a typo) is an error, not silently ignored, and so is a second
// YAML document. It does not validate: Store.Apply does.
func ParseConfig(data []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var d configDoc
	if err := dec.Decode(&d); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty configuration")
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document: a configuration is one document")
	}
	return d.config()
}

// LoadFile reads and parses a YAML configuration file (ParseConfig).
func LoadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// MarshalYAML makes a Config marshal in its YAML form with yaml.Marshal.
// The receiver is a value so that a Config marshals the same way as a
// *Config.
func (c Config) MarshalYAML() (any, error) {
	return docOf(&c), nil
}

// UnmarshalYAML makes a Config a YAML value with the same form as
// ParseConfig reads. Unlike ParseConfig it ignores unknown fields, as
// yaml.v3 does not hand its strictness to Unmarshalers; use ParseConfig
// for a whole configuration.
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	var d configDoc
	if err := n.Decode(&d); err != nil {
		return err
	}
	parsed, err := d.config()
	if err != nil {
		return err
	}
	*c = *parsed
	return nil
}

// YAML returns c in YAML, as ParseConfig reads it.
//
// yaml.v3's emitter takes time quadratic in the length of a sequence (it
// shifts its event queue on every event), which made saving 100k endpoints
// take 12 s. So each list item is encoded as a document of its own and
// indented under its key here; the bytes are what one Encode would write.
func (c *Config) YAML() ([]byte, error) {
	d := docOf(c)
	var b bytes.Buffer
	if err := encodeYAML(&b, map[string]string{"controller": d.Controller}, ""); err != nil {
		return nil, err
	}
	lists := []struct {
		key   string
		items any
	}{
		{"directory", d.Directory}, {"vpcs", d.VPCs}, {"hosts", d.Hosts}, {"endpoints", d.Endpoints},
		{"load_balancers", d.LoadBalancers}, {"routes", d.Routes}, {"export_policies", d.ExportPolicies}, {"peerings", d.Peerings},
		{"gateway_pools", d.GatewayPools},
	}
	for _, l := range lists {
		v := reflect.ValueOf(l.items)
		if v.Len() == 0 {
			continue
		}
		b.WriteString(l.key + ":\n")
		for i := range v.Len() {
			if err := encodeYAML(&b, v.Index(i).Interface(), "  - "); err != nil {
				return nil, err
			}
		}
	}
	if d.BGP != nil {
		b.WriteString("bgp:\n")
		if err := encodeYAML(&b, d.BGP, "  "); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// encodeYAML writes v as YAML, its first line prefixed by first and the
// others indented to match.
func encodeYAML(b *bytes.Buffer, v any, first string) error {
	var one bytes.Buffer
	enc := yaml.NewEncoder(&one)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	indent := strings.Repeat(" ", len(first))
	for i, line := range strings.SplitAfter(strings.TrimSuffix(one.String(), "\n"), "\n") {
		if i == 0 {
			b.WriteString(first)
		} else {
			b.WriteString(indent)
		}
		b.WriteString(line)
	}
	b.WriteString("\n")
	return nil
}

// SaveFile writes c to path in YAML, atomically (writeFileAtomic).
func (c *Config) SaveFile(path string) error {
	data, err := c.YAML()
	if err != nil {
		return err
	}
	return writeFileAtomic(path, data, 0o600)
}

// Equal reports whether c and o are the same configuration: the same YAML
// form, so nil and empty lists are alike and an omitted weight equals 1.
func (c *Config) Equal(o *Config) bool {
	if c == nil || o == nil {
		return c == o
	}
	return reflect.DeepEqual(docOf(c), docOf(o))
}

// writeFileAtomic replaces path with data so that a crash at any moment
// leaves either the old file or the new one, never a mix: it writes a
// temporary file in the same directory, syncs it, renames it over path and
// syncs the directory, so that the rename itself is durable.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*"+tmpSuffix)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

const (
	storeFile = "config.yaml"
	tmpSuffix = ".tmp"
)

// ErrNoConfig is returned by Store.Startup when there is neither a saved
// configuration nor one from --config.
var ErrNoConfig = errors.New("no configuration: the data directory has none and no --config was given")

// Store persists the accepted configuration of a controller in its data
// directory (--data-dir), as config.yaml in the same YAML form as
// --config, so an operator can read it and feed it back, framed by a
// header comment and a checksum line that loading verifies (checksum.go).
// It also holds the current configuration in memory: Apply is the one way
// to change it.
type Store struct {
	path string

	// mu guards cur, and is held through all of Apply so that the file and
	// cur change in the same order when Applies race.
	mu  sync.Mutex
	cur *Config
	// sides are the peer sides, written whole to peer-sides.json
	// (peersides.go).
	sides map[string]map[string]*p4meshv1.PeerSide
}

// OpenStore opens (creating it if needed) the data directory dir. It
// removes temporary files a crash during Save left behind. The store's
// current configuration is nil until Apply or Startup.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	stale, err := filepath.Glob(filepath.Join(dir, "."+storeFile+".*"+tmpSuffix))
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	for _, f := range stale {
		if err := os.Remove(f); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	return &Store{path: filepath.Join(dir, storeFile)}, nil
}

// Path returns the file the configuration is persisted in.
func (s *Store) Path() string { return s.path }

// Load reads the persisted configuration: ok is false if there is none. It
// verifies the file's checksum, and accepts a file without one as written
// by an older p4mesh (Startup rewrites it with one). It neither validates
// the configuration nor makes it current (Startup does both).
func (s *Store) Load() (c *Config, ok bool, err error) {
	c, ok, _, err = s.load()
	return c, ok, err
}

func (s *Store) load() (c *Config, ok, legacy bool, err error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, false, nil
	}
	if err != nil {
		return nil, false, false, fmt.Errorf("load saved configuration: %w", err)
	}
	content, legacy, err := unsealConfig(s.path, data)
	if err != nil {
		return nil, false, false, fmt.Errorf("load saved configuration: %w", err)
	}
	c, err = ParseConfig(content)
	if err != nil {
		return nil, false, false, fmt.Errorf("load saved configuration %s: %w", s.path, err)
	}
	return c, true, legacy, nil
}

// Save persists c atomically, without validating it or making it current:
// it is the persistence step of Apply, which is what callers want.
func (s *Store) Save(c *Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.save(c)
}

func (s *Store) save(c *Config) error {
	data, err := c.YAML()
	if err == nil {
		err = writeFileAtomic(s.path, sealConfig(data), 0o600)
	}
	if err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	return nil
}

// Apply makes c the current configuration: it validates it, persists it,
// and only then swaps it in, so on any error nothing changes, neither in
// memory nor on disk. The store keeps a copy of c; the caller may go on
// changing its own. An Apply of the current configuration does nothing.
func (s *Store) Apply(c *Config) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	c = c.Clone()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur.Equal(c) {
		return nil
	}
	if err := s.save(c); err != nil {
		return err
	}
	s.cur = c
	return nil
}

var _ Persistence = (*Store)(nil)

// Revision is 0: a YAML file has no revisions.
func (s *Store) Revision() uint64 { return 0 }

// Commit persists the configuration with ch applied, as a whole file: a
// change costs the size of the configuration here.
func (s *Store) Commit(ch *Change, whole func() *Config) (uint64, error) {
	return s.CommitAll(whole())
}

// CommitAll persists c, which the caller has validated, and makes it
// current; c must not be modified afterwards.
func (s *Store) CommitAll(c *Config) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.save(c); err != nil {
		return 0, err
	}
	s.cur = c
	return 0, nil
}

// Dir is the data directory.
func (s *Store) Dir() string { return filepath.Dir(s.path) }

// Current returns the current configuration, nil before the first Apply.
// It is shared and must not be modified.
func (s *Store) Current() *Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// StartupResult says where the configuration a controller started with
// came from, for the command to log.
type StartupResult struct {
	// FromSaved reports that the saved configuration was started from,
	// not --config.
	FromSaved bool
	// Differences lists how --config differs from the saved configuration
	// when there were both and they differ, whichever won; nil otherwise.
	Differences ConfigDiff
	// Migrated reports that the saved configuration started from had no
	// checksum (an older p4mesh wrote it) and was rewritten with one.
	Migrated bool
	// SetAside names where a saved configuration that could not be loaded
	// was moved, for --config-overrides-saved to start from --config, and
	// Unloadable says why it could not; "" and nil otherwise.
	SetAside   string
	Unloadable error
}

// Startup decides the configuration a controller starts with and makes it
// current. fromFlag is the configuration read from --config (nil if none
// was given) and overrideSaved is --config-overrides-saved. The rule:
//
//   - a saved configuration wins over --config, because changes accepted
//     at run time (gNMI Set, SIGHUP) are in it and a restart with the
//     command line it was first started with must not undo them; the
//     result lists what differs, for a warning;
//   - unless overrideSaved: then --config is validated and applied, and
//     replaces the saved one; if it is invalid Startup fails and the
//     saved one stays on disk;
//   - with nothing saved, fromFlag is applied; with neither, ErrNoConfig.
//
// A saved configuration that cannot be loaded (damaged: its checksum does
// not match) is an error saying what to do: restore it from a backup, or
// start from --config with overrideSaved, which moves it aside (never
// deletes it) before applying --config. One that no longer validates (say,
// after an upgrade with a stricter rule) is an error too: only
// overrideSaved replaces it. A saved configuration without a checksum,
// from an older p4mesh, is accepted and saved again with one.
func (s *Store) Startup(fromFlag *Config, overrideSaved bool) (StartupResult, error) {
	var res StartupResult
	saved, ok, legacy, err := s.load()
	if err != nil {
		if !overrideSaved || fromFlag == nil {
			return res, fmt.Errorf("%w\nThe controller does not start from it. Restore %s from a backup; or start from --config "+
				"with --config-overrides-saved, which moves it aside (to %s.damaged-<time>) and loses what was accepted since --config was written",
				err, s.path, s.path)
		}
		// Checked before the move, so that an invalid --config leaves
		// everything as it was.
		if verr := fromFlag.Validate(); verr != nil {
			return res, fmt.Errorf("--config: invalid configuration:\n%w", verr)
		}
		aside := s.path + ".damaged-" + time.Now().UTC().Format("20060102T150405Z")
		if rerr := os.Rename(s.path, aside); rerr != nil {
			return res, fmt.Errorf("%w\nand it cannot be moved aside for --config-overrides-saved: %w", err, rerr)
		}
		res.SetAside, res.Unloadable = aside, err
		ok = false
	}
	if ok && fromFlag != nil && !fromFlag.Equal(saved) {
		res.Differences = DiffConfigs(saved, fromFlag, "saved", "--config")
	}
	switch {
	case ok && (res.Differences == nil || !overrideSaved):
		// Nothing is current yet, so Apply saves: a legacy file is
		// rewritten with its checksum here.
		if err := s.Apply(saved); err != nil {
			return res, fmt.Errorf("saved configuration %s: %w\nTo replace it, start with a corrected --config and --config-overrides-saved", s.path, err)
		}
		res.FromSaved, res.Migrated = true, legacy
		return res, nil
	case fromFlag != nil:
		if err := s.Apply(fromFlag); err != nil {
			return res, fmt.Errorf("--config: %w", err)
		}
		return res, nil
	default:
		return res, ErrNoConfig
	}
}
