package controller

// Persistence keeps a Server's accepted configuration durable. The Server
// validates; a Persistence only stores what it is handed, and an error
// from it refuses the change, which then changes nothing.
//
// Store, the YAML file of the data directory, is one; a store that keeps
// one key per item can make a Change one transaction and never build the
// whole configuration.
type Persistence interface {
	// Current is the configuration last persisted, nil if none: what a
	// Server starts from.
	Current() *Config
	// Commit makes an accepted change durable. whole returns the whole
	// configuration with ch applied, for a store that writes it whole;
	// it costs the size of the configuration, so a store that writes
	// items should not call it.
	Commit(ch *Change, whole func() *Config) error
	// CommitAll makes an accepted whole configuration durable (an import,
	// a reload): it replaces everything.
	CommitAll(c *Config) error
	// Dir is the data directory, where the other controllers' peer sides
	// are kept beside the configuration (peersides.go); "" keeps them
	// nowhere.
	Dir() string
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

// Commit keeps nothing.
func (NoPersistence) Commit(*Change, func() *Config) error { return nil }

// CommitAll keeps nothing.
func (NoPersistence) CommitAll(*Config) error { return nil }

// Dir is "": peer sides are not kept either.
func (NoPersistence) Dir() string { return "" }
