package controller

import "github.com/p4mesh/p4mesh/api/p4meshv1"

// Persistence keeps a Server's accepted configuration, and the other
// controllers' sides of its peerings, durable. The Server validates; a
// Persistence only stores what it is handed, and an error from it refuses
// the change, which then changes nothing.
//
// ItemStore, one key per item in a store.Backend (bbolt, etcd), is the
// one a daemon uses: a Change is one transaction, and the revision each
// commit gets is the revision the Server's watch tables move to, so that
// watch clients resume across restarts. Store, the YAML file of a data
// directory, writes the whole configuration per change and has no
// revisions; it stays for tests and for data directories not yet migrated.
type Persistence interface {
	// Current is the configuration last persisted, nil if none: what a
	// Server starts from, once, building its model from it. A store
	// need not keep what it returns (ItemStore does not: it would hold
	// every item a second time), so a second call may load it again.
	Current() *Config
	// Revision is the store's revision of Current. 0 means the store has
	// no revisions (Store, NoPersistence): the Server then numbers its
	// changes itself, from the wall clock, and watch clients get a
	// snapshot again after a restart.
	Revision() uint64
	// Commit makes an accepted change durable and returns the revision
	// it got (0: see Revision). whole returns the whole configuration with
	// ch applied, for a store that writes it whole; it costs the size of
	// the configuration, so a store that writes items does not call it.
	Commit(ch *Change, whole func() *Config) (rev uint64, err error)
	// CommitAll makes an accepted whole configuration durable (an import,
	// a reload): it replaces everything.
	CommitAll(c *Config) (rev uint64, err error)
	// PeerSides returns the other controllers' sides last committed, by
	// controller then "vpc/peer vpc". legacy reports sides an older
	// p4mesh saved, to be committed again.
	PeerSides() (sides map[string]map[string]*p4meshv1.PeerSide, legacy bool, err error)
	// CommitPeerSides makes sides all that controller said (none: forget
	// it). changed is false when nothing had to be committed.
	CommitPeerSides(controller string, sides map[string]*p4meshv1.PeerSide) (rev uint64, changed bool, err error)
}

// NoPersistence keeps nothing: a Server using it starts from Start and
// forgets every change when it stops. It is for benchmarks and tests that
// measure the controller rather than a disk.
type NoPersistence struct {
	Start *Config
}

var _ Persistence = NoPersistence{}

// Current returns Start.
func (n NoPersistence) Current() *Config { return n.Start }

// Revision is 0: no revisions.
func (NoPersistence) Revision() uint64 { return 0 }

// Commit keeps nothing.
func (NoPersistence) Commit(*Change, func() *Config) (uint64, error) { return 0, nil }

// CommitAll keeps nothing.
func (NoPersistence) CommitAll(*Config) (uint64, error) { return 0, nil }

// PeerSides are none.
func (NoPersistence) PeerSides() (map[string]map[string]*p4meshv1.PeerSide, bool, error) {
	return nil, false, nil
}

// CommitPeerSides keeps nothing.
func (NoPersistence) CommitPeerSides(string, map[string]*p4meshv1.PeerSide) (uint64, bool, error) {
	return 0, true, nil
}
