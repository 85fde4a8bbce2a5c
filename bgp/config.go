package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Config is the speaker's own identity and where it listens.
type Config struct {
	// RouterID is the BGP identifier in every OPEN the speaker sends.
	RouterID netip.Addr
	// LocalAS is the speaker's AS, used for every neighbor that does not
	// set its own.
	LocalAS uint32
	// ListenAddress is the local address the speaker dials neighbors
	// from; empty means the kernel chooses.
	ListenAddress string
	// ListenPort is validated and otherwise unused: the speaker runs one
	// GoBGP server per VPC, GoBGP cannot share a listening socket between
	// servers, so the speaker dials every neighbor and accepts no
	// connection (the router must accept, as FRR does by default). Kept
	// so configuration that sets it still loads; see doc.go.
	ListenPort int32
	// Deliver receives learned routes as they change, in order, from one
	// goroutine, never concurrently; the slice is the callee's. While it
	// runs, updates queue (without bound) and come in the next calls, one
	// after the other (a slice per UPDATE received, about), so a slow
	// consumer never slows BGP down. It must
	// not call the Speaker's methods (Stop waits for it). It may be nil.
	Deliver func([]Update)
}

// Validate reports what is wrong with c, if anything.
func (c Config) Validate() error {
	if !c.RouterID.Is4() {
		return fmt.Errorf("bgp: router id %v: must be an IPv4 address", c.RouterID)
	}
	if c.LocalAS == 0 {
		return errors.New("bgp: local AS 0 is not a valid AS number")
	}
	if c.ListenAddress != "" {
		if _, err := netip.ParseAddr(c.ListenAddress); err != nil {
			return fmt.Errorf("bgp: listen address %q: %w", c.ListenAddress, err)
		}
	}
	if c.ListenPort > 65535 {
		return fmt.Errorf("bgp: listen port %d is out of range", c.ListenPort)
	}
	return nil
}

// PrefixFilter accepts a learned prefix that lies inside Prefix and whose
// length is between GE and LE (inclusive). GE 0 means Prefix's own length,
// LE 0 means GE (an exact match when both are 0), as in a router's
// "ip prefix-list ... ge ... le".
type PrefixFilter struct {
	Prefix netip.Prefix
	GE, LE int
}

// bounds returns the filter's mask-length range with the zero values
// resolved.
func (f PrefixFilter) bounds() (ge, le int) {
	ge, le = f.GE, f.LE
	if ge == 0 {
		ge = f.Prefix.Bits()
	}
	if le == 0 {
		le = ge
	}
	return ge, le
}

// Neighbor is one BGP session with an on-prem router, through one VPN or
// interconnect attachment of a VPC.
type Neighbor struct {
	// Name identifies the neighbor; the controller uses the attachment's
	// endpoint id. Routes learned from it carry it.
	Name string
	// VPC is the VPC the attachment belongs to, and VNI that VPC's VNI
	// (checked for consistency: one VNI per VPC and one VPC per VNI). The
	// neighbor's session runs in its VPC's GoBGP server.
	VPC string
	VNI uint32
	// Address is the on-prem router's address. The speaker keys sessions
	// by address, so it is unique across all VPCs of one speaker.
	Address netip.Addr
	// Port is the on-prem router's BGP port; 0 means 179.
	Port uint16
	// PeerAS is the on-prem router's AS (equal to LocalAS for iBGP).
	PeerAS uint32
	// LocalAS overrides the speaker's AS for this session; 0 means the
	// speaker's.
	LocalAS uint32
	// RouterID is the BGP identifier of the neighbor's VPC (its GoBGP
	// server sends one on all the VPC's sessions); unset means
	// Config.RouterID. All neighbors of a VPC must agree. Changing it
	// replaces the VPC's server: its sessions restart and their routes
	// are withdrawn, then learned again.
	RouterID netip.Addr
	// HoldTime and KeepaliveInterval, whole seconds; 0 means 90 s and a
	// third of the hold time.
	HoldTime, KeepaliveInterval time.Duration
	// ConnectRetry is how long the speaker waits between attempts to
	// reach the neighbor, and after a session drops before it accepts or
	// tries again; 0 means 5 s.
	ConnectRetry time.Duration
	// Password is the TCP MD5 signature key (RFC 2385); empty means none.
	Password string
	// MaxPrefixes, when not 0, ends the session (NOTIFICATION cease,
	// maximum number of prefixes reached) when the neighbor sends more; it
	// stays down until SetNeighbors gives the neighbor another limit.
	MaxPrefixes uint32
	// Import, when not empty, is the only prefixes accepted from the
	// neighbor; others are dropped (and still count for MaxPrefixes).
	Import []PrefixFilter
	// GracefulRestart enables helper mode (RFC 4724): when the neighbor
	// negotiated it and its session drops, its routes stay, marked stale,
	// for the restart time it announced.
	GracefulRestart bool
	// NextHop is the attachment's VPC-side address: the next hop of every
	// prefix advertised to this neighbor.
	NextHop netip.Addr
}

// Validate reports what is wrong with n on its own.
func (n Neighbor) Validate() error {
	if n.Name == "" {
		return fmt.Errorf("bgp: neighbor %v: no name", n.Address)
	}
	where := fmt.Sprintf("bgp: neighbor %s", n.Name)
	if n.VPC == "" {
		return fmt.Errorf("%s: no VPC", where)
	}
	if n.VNI == 0 || n.VNI >= 1<<24 {
		return fmt.Errorf("%s: VNI %d of VPC %s: must be 1..16777215", where, n.VNI, n.VPC)
	}
	if !n.Address.Is4() {
		return fmt.Errorf("%s: address %v: only IPv4 neighbors are supported", where, n.Address)
	}
	if !n.NextHop.Is4() {
		return fmt.Errorf("%s: next hop %v: must be the attachment's IPv4 address", where, n.NextHop)
	}
	if n.PeerAS == 0 {
		return fmt.Errorf("%s: peer AS 0 is not a valid AS number", where)
	}
	if n.RouterID.IsValid() && (!n.RouterID.Is4() || n.RouterID.IsUnspecified()) {
		return fmt.Errorf("%s: router id %v: must be an IPv4 address other than 0.0.0.0", where, n.RouterID)
	}
	if n.HoldTime < 0 || n.HoldTime%time.Second != 0 || (n.HoldTime > 0 && n.HoldTime < 3*time.Second) || n.HoldTime > 65535*time.Second {
		return fmt.Errorf("%s: hold time %v: must be whole seconds, 0 (default 90s) or 3s..65535s", where, n.HoldTime)
	}
	if n.KeepaliveInterval < 0 || n.KeepaliveInterval%time.Second != 0 {
		return fmt.Errorf("%s: keepalive interval %v: must be whole seconds", where, n.KeepaliveInterval)
	}
	if n.HoldTime > 0 && n.KeepaliveInterval >= n.HoldTime {
		return fmt.Errorf("%s: keepalive interval %v must be shorter than the hold time %v", where, n.KeepaliveInterval, n.HoldTime)
	}
	if n.ConnectRetry < 0 || n.ConnectRetry%time.Second != 0 {
		return fmt.Errorf("%s: connect retry %v: must be whole seconds", where, n.ConnectRetry)
	}
	if len(n.Password) > 80 {
		return fmt.Errorf("%s: password is %d bytes; TCP MD5 keys are at most 80", where, len(n.Password))
	}
	for _, f := range n.Import {
		if !f.Prefix.IsValid() || !f.Prefix.Addr().Is4() {
			return fmt.Errorf("%s: import filter %v: only IPv4 prefixes are supported", where, f.Prefix)
		}
		if f.Prefix != f.Prefix.Masked() {
			return fmt.Errorf("%s: import filter %v has host bits set (did you mean %v?)", where, f.Prefix, f.Prefix.Masked())
		}
		ge, le := f.bounds()
		if ge < f.Prefix.Bits() || le > 32 || le < ge {
			return fmt.Errorf("%s: import filter %v ge %d le %d: need %d <= ge <= le <= 32", where, f.Prefix, f.GE, f.LE, f.Prefix.Bits())
		}
	}
	return nil
}

// validateSet checks ns as the whole set of neighbors of one speaker with
// router id rid.
func validateSet(ns []Neighbor, rid netip.Addr) error {
	names := make(map[string]bool, len(ns))
	addrs := make(map[netip.Addr]string, len(ns))
	vnis := make(map[string]uint32)
	vpcs := make(map[uint32]string)
	rids := make(map[string]struct {
		id netip.Addr
		by string
	})
	for _, n := range ns {
		if err := n.Validate(); err != nil {
			return err
		}
		if names[n.Name] {
			return fmt.Errorf("bgp: neighbor name %s appears twice", n.Name)
		}
		names[n.Name] = true
		if other, ok := addrs[n.Address]; ok {
			return fmt.Errorf("bgp: neighbors %s and %s have the same address %v (one session per address)", other, n.Name, n.Address)
		}
		addrs[n.Address] = n.Name
		if r, ok := rids[n.VPC]; ok && r.id != n.routerID(rid) {
			return fmt.Errorf("bgp: neighbor %s: router id %v, but neighbor %s of the same VPC %s has %v: a VPC's sessions share one router id", n.Name, n.routerID(rid), r.by, n.VPC, r.id)
		}
		rids[n.VPC] = struct {
			id netip.Addr
			by string
		}{n.routerID(rid), n.Name}
		if v, ok := vnis[n.VPC]; ok && v != n.VNI {
			return fmt.Errorf("bgp: neighbor %s: VPC %s has VNI %d here and %d on another neighbor", n.Name, n.VPC, n.VNI, v)
		}
		vnis[n.VPC] = n.VNI
		if v, ok := vpcs[n.VNI]; ok && v != n.VPC {
			return fmt.Errorf("bgp: neighbor %s: VNI %d belongs to VPC %s and VPC %s", n.Name, n.VNI, v, n.VPC)
		}
		vpcs[n.VNI] = n.VPC
	}
	return nil
}

// routerID is the router id n's VPC uses, with def the speaker's.
func (n Neighbor) routerID(def netip.Addr) netip.Addr {
	if n.RouterID.IsValid() {
		return n.RouterID
	}
	return def
}

// sessionEqual reports whether a and b configure the same session, so
// that going from one to the other needs no new session.
func sessionEqual(a, b Neighbor) bool {
	return a.VPC == b.VPC && a.VNI == b.VNI && a.Address == b.Address && a.Port == b.Port &&
		a.PeerAS == b.PeerAS && a.LocalAS == b.LocalAS && a.HoldTime == b.HoldTime &&
		a.KeepaliveInterval == b.KeepaliveInterval && a.ConnectRetry == b.ConnectRetry &&
		a.Password == b.Password && a.GracefulRestart == b.GracefulRestart &&
		// A session shut down for too many prefixes stays down in GoBGP
		// until it is reset; a new limit is when to start again.
		a.MaxPrefixes == b.MaxPrefixes
}

// policyEqual reports whether a and b need the same policy statements
// (the import filter is applied by the speaker, not by a GoBGP policy).
func policyEqual(a, b Neighbor) bool {
	return a.NextHop == b.NextHop
}
