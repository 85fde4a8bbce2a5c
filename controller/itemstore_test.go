package controller

import (
	"context"
	"log/slog"
	gomaps "maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
	"weak"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/store"
	"github.com/p4mesh/p4mesh/store/boltstore"
	"github.com/p4mesh/p4mesh/watch"
)

// openItems opens the bbolt item store of dir; closing it is the caller's.
func openItems(t *testing.T, dir string) (*ItemStore, *boltstore.Store) {
	t.Helper()
	b, err := boltstore.Open(filepath.Join(dir, "store.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenItemStore(t.Context(), b)
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	return s, b
}

// Changes made item by item come back after a restart as the same
// configuration, lists in the same order: an endpoint replaced stays in
// place, one deleted and put again moves to the end, as ApplyTo does.
func TestItemStoreKeepsOrderAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	items, b := openItems(t, dir)
	if _, err := items.Startup(example(t), false); err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(ServerOptions{Store: items, Auth: identity.Auth{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	first := srv.Config().Endpoints[0]
	moved := first
	moved.Port = 40
	changes := []*Change{
		{Endpoints: []Endpoint{{ID: "red-new", VPC: "red", Kind: KindVM, IP: ip("10.1.0.50"), MAC: mustMAC("02:01:00:00:00:50"), Host: "h2", Port: 9}}},
		{Endpoints: []Endpoint{moved}},                                                               // in place
		{DeleteEndpoints: []string{first.ID}, Endpoints: []Endpoint{moved}},                          // to the end
		{Routes: []Route{{VPC: "red", Prefix: pfx("10.9.0.0/16"), NextHop: "red-new", Priority: 5}}}, // a key with a prefix in it
	}
	for _, ch := range changes {
		if err := srv.ApplyChange(ch); err != nil {
			t.Fatal(err)
		}
	}
	want := srv.Config()
	if want.Endpoints[len(want.Endpoints)-1].ID != first.ID {
		t.Fatalf("the test's premise: %s should be last after its delete and put", first.ID)
	}
	rev := items.Revision()
	b.Close()

	again, b2 := openItems(t, dir)
	defer b2.Close()
	if got := again.Current(); !got.Equal(want) {
		t.Errorf("after a restart the configuration differs:\n%s", DiffConfigs(want, got, "before", "after"))
	}
	if again.Revision() != rev {
		t.Errorf("revision after a restart = %d, want %d", again.Revision(), rev)
	}
	// The whole configuration committed again is no commit at all.
	if r, err := again.CommitAll(want.Clone()); err != nil || r != rev {
		t.Errorf("CommitAll of the stored configuration = %d, %v; want %d (nothing written)", r, err, rev)
	}
	// A whole configuration with its endpoints reversed is kept reversed.
	rev2 := want.Clone()
	slices.Reverse(rev2.Endpoints)
	if _, err := again.CommitAll(rev2); err != nil {
		t.Fatal(err)
	}
	b2.Close()
	third, b3 := openItems(t, dir)
	defer b3.Close()
	if got := third.Current(); !got.Equal(rev2) {
		t.Errorf("a reordered import is not kept in order:\n%s", DiffConfigs(rev2, got, "committed", "loaded"))
	}
}

// Items that do not decode stop the start with an error naming them;
// --config-overrides-saved moves them aside, in the store, and starts from
// --config.
func TestItemStoreDamagedItem(t *testing.T) {
	dir := t.TempDir()
	items, b := openItems(t, dir)
	if _, err := items.Startup(example(t), false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Commit(t.Context(), []store.Op{{Key: "endpoint/red-vm1", Value: []byte(`{"seq":1,"item":{"ID":`)}}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	items, b = openItems(t, dir)
	_, err := items.Startup(example(t), false)
	if err == nil || !strings.Contains(err.Error(), "endpoint/red-vm1") || !strings.Contains(err.Error(), "--config-overrides-saved") {
		t.Fatalf("Startup over a damaged item = %v, want an error naming endpoint/red-vm1 and what to do", err)
	}
	res, err := items.Startup(example(t), true)
	if err != nil || res.SetAside == "" {
		t.Fatalf("Startup with override = %+v, %v; want it moved aside", res, err)
	}
	b.Close()
	items, b = openItems(t, dir)
	defer b.Close()
	if got := items.Current(); !got.Equal(example(t)) {
		t.Errorf("after the override the configuration is not --config")
	}
	all, _, err := b.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	aside := 0
	for k := range all {
		if strings.HasPrefix(k, damagedPrefix) && strings.HasSuffix(k, "/endpoint/red-vm1") {
			aside++
		}
	}
	if aside != 1 {
		t.Errorf("the damaged item was not kept aside: %d copies", aside)
	}
}

// A data directory of the YAML store is imported on first start, in one
// commit, peer sides included, and its files renamed.
func TestMigrateDataDir(t *testing.T) {
	dir := t.TempDir()
	old, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Startup(example(t), false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := old.CommitPeerSides("c2", map[string]*p4meshv1.PeerSide{"blue/red": blueSide()}); err != nil {
		t.Fatal(err)
	}
	items, b := openItems(t, dir)
	defer b.Close()
	var warned []string
	path, err := items.MigrateDataDir(dir, func(msg string, _ ...any) { warned = append(warned, msg) })
	if err != nil || path != filepath.Join(dir, storeFile) {
		t.Fatalf("MigrateDataDir = %q, %v", path, err)
	}
	if items.Revision() != 1 {
		t.Errorf("the import took %d commits, want 1", items.Revision())
	}
	if got := items.Current(); !got.Equal(example(t)) {
		t.Errorf("imported configuration differs:\n%s", DiffConfigs(example(t), got, "yaml", "store"))
	}
	sides, _, _ := items.PeerSides()
	if !proto.Equal(sides["c2"]["blue/red"], blueSide()) {
		t.Errorf("imported peer sides = %v", sides)
	}
	for _, f := range []string{storeFile, peerSidesFile} {
		if _, err := os.Stat(filepath.Join(dir, f+".migrated")); err != nil {
			t.Errorf("%s not renamed: %v", f, err)
		}
	}
	if path, err := items.MigrateDataDir(dir, nil); path != "" || err != nil {
		t.Errorf("a second MigrateDataDir = %q, %v; want nothing done", path, err)
	}
	if len(warned) > 0 {
		t.Errorf("warnings: %v", warned)
	}
}

// A controller restarted on the same store resumes the watch streams of
// its clients with no RESET and no snapshot, even those whose tables had
// nothing to do with the last changes (they were told the revision by
// PROGRESS), and what changes after the restart reaches them.
func TestRestartResumesWatches(t *testing.T) {
	dir := t.TempDir()
	lis := listen(t)
	addr := lis.Addr().String()
	cfg := example(t)
	start := func(lis net.Listener) (*Server, func()) {
		items, b := openItems(t, dir)
		if _, err := items.Startup(cfg, false); err != nil {
			t.Fatal(err)
		}
		srv, err := NewServer(ServerOptions{Store: items, Auth: identity.Auth{Insecure: true}, PeerGrace: 50 * time.Millisecond,
			Logger: slog.New(slog.DiscardHandler), Watch: watch.Options{ProgressInterval: 10 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer()
		srv.Register(gs)
		go gs.Serve(lis)
		ctx, cancel := context.WithCancel(t.Context())
		ran := make(chan struct{})
		go func() { srv.Run(ctx); close(ran) }()
		return srv, func() { cancel(); <-ran; gs.Stop(); b.Close() }
	}
	srv, stop := start(lis)
	conn := dial(t, addr)

	type client struct {
		f      *followed
		resets atomic.Int64
	}
	follow := func(open openFunc, req *p4meshv1.WatchRequest) *client {
		c := &client{f: &followed{changed: make(chan struct{}, 1)}}
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() {
			h := c.f.view.Handler(func() {
				select {
				case c.f.changed <- struct{}{}:
				default:
				}
			})
			reset, progress := h.Reset, h.Progress
			h.Reset = func() { c.resets.Add(1); reset() }
			h.Progress = func(rev uint64) {
				progress(rev)
				select {
				case c.f.changed <- struct{}{}:
				default:
				}
			}
			watch.Follow(ctx, "test", nil, func(ctx context.Context, rev uint64) (watch.Stream, error) {
				r := proto.Clone(req).(*p4meshv1.WatchRequest)
				r.ResumeRevision = rev
				return open(ctx, conn, r)
			}, h)
		})
		t.Cleanup(func() { cancel(); wg.Wait() })
		return c
	}
	host := follow(hostWatch, &p4meshv1.WatchRequest{Host: "h1"})
	dest := follow(destWatch, &p4meshv1.WatchRequest{Host: "h1", Vpc: "red"})
	for _, c := range []*client{host, dest} {
		c.f.waitFor(t, "synced", func(*watch.View) bool { return true })
	}
	// A change that concerns neither h1's programming nor red: green on
	// h3. Both clients must still learn its revision.
	if err := srv.ApplyChange(&Change{Endpoints: []Endpoint{{ID: "green-x", VPC: "green", Kind: KindVM, IP: ip("10.3.0.77"), MAC: mustMAC("02:03:00:00:00:77"), Host: "h3", Port: 7}}}); err != nil {
		t.Fatal(err)
	}
	rev := srv.opts.Store.Revision()
	for _, c := range []*client{host, dest} {
		c.f.waitFor(t, "the revision of a change not its own", func(v *watch.View) bool { return v.Revision() == rev })
	}
	stop()

	lis2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv2, stop2 := start(lis2)
	defer stop2()
	if err := srv2.ApplyChange(&Change{Endpoints: []Endpoint{{ID: "red-x", VPC: "red", Kind: KindVM, IP: ip("10.1.0.77"), MAC: mustMAC("02:01:00:00:00:77"), Host: "h1", Port: 7}}}); err != nil {
		t.Fatal(err)
	}
	host.f.waitFor(t, "red-x on h1", func(v *watch.View) bool { return v.Get("endpoint/red-x") != nil })
	dest.f.waitFor(t, "red-x in red", func(v *watch.View) bool { return v.Get("10.1.0.77") != nil })
	for name, c := range map[string]*client{"host programming": host, "destinations": dest} {
		if n := c.resets.Load(); n != 0 {
			t.Errorf("%s: %d RESETs after the restart, want none", name, n)
		}
	}
	srv2.mu.Lock()
	tables := []*watch.Table{srv2.hosts["h1"], srv2.services[PublishedService{VPC: "red"}].dest}
	srv2.mu.Unlock()
	for _, tb := range tables {
		if st := tb.Stats(); st.Snapshots != 0 {
			t.Errorf("%d snapshots served after the restart, want 0 (resumed)", st.Snapshots)
		}
	}
}

// An attachment and a peering exporting custom routes survive a restart
// of the item store; the routes learned meanwhile do not (they come back
// from BGP), and the marker their revisions were committed with is no
// damaged item, and the revision keeps growing from it.
func TestItemStoreKeepsAttachmentsNotLearnedRoutes(t *testing.T) {
	dir := t.TempDir()
	items, b := openItems(t, dir)
	c := example(t)
	e := endpointOf(c, "red-router")
	e.Kind, e.RouterMAC = KindInterconnect, mustMAC("02:fe:00:00:00:09")
	c.Peerings[0].ExportCustomRoutes = true
	if _, err := items.Startup(c, false); err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(ServerOptions{Store: items, Auth: identity.Auth{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	before := items.Revision()
	learn(t, srv, "red", LearnedRoute{Neighbor: "red-router", Prefix: pfx("192.0.2.0/24")})
	if items.Revision() <= before {
		t.Errorf("a learned route update took no revision of the store (%d, was %d)", items.Revision(), before)
	}
	rev := items.Revision()
	b.Close()

	again, b2 := openItems(t, dir)
	defer b2.Close()
	if _, err := again.Startup(nil, false); err != nil {
		t.Fatalf("start after learned routes: %v", err)
	}
	if got := again.Current(); !got.Equal(c) {
		t.Errorf("after a restart the configuration differs:\n%s", DiffConfigs(c, got, "before", "after"))
	}
	if again.Revision() != rev {
		t.Errorf("revision after a restart = %d, want %d", again.Revision(), rev)
	}
	srv2, err := NewServer(ServerOptions{Store: again, Auth: identity.Auth{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	if cs := candidatesOf(srv2, "red", "192.0.2.0/24"); len(cs) != 0 {
		t.Errorf("a learned route survived the restart: %+v", cs)
	}
}

// Modes the load trigger chose outlive a reopen and an import of the
// whole configuration (which replaces every item, not runtime state),
// and each commit of them is a revision of the store.
func TestItemStoreKeepsPoolModes(t *testing.T) {
	dir := t.TempDir()
	items, b := openItems(t, dir)
	if _, err := items.Startup(example(t), false); err != nil {
		t.Fatal(err)
	}
	k := PeeringKey{VPC: "red/x", PeerVPC: "blue"} // a name that needs escaping
	before := items.Revision()
	rev, err := items.CommitModes(map[PeeringKey]SavedMode{k: {Direct: true, Reason: "2000 pps: direct"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rev <= before {
		t.Errorf("CommitModes gave revision %d after %d", rev, before)
	}
	if _, err := items.CommitAll(example(t)); err != nil {
		t.Fatal(err)
	}
	b.Close()
	items, b = openItems(t, dir)
	defer b.Close()
	want := map[PeeringKey]SavedMode{k: {Direct: true, Reason: "2000 pps: direct"}}
	if got := items.PoolModes(); !gomaps.Equal(got, want) {
		t.Fatalf("after an import and a reopen the modes are %v, want %v", got, want)
	}
	if _, err := items.CommitModes(nil, []PeeringKey{k}); err != nil {
		t.Fatal(err)
	}
	if got := items.PoolModes(); len(got) != 0 {
		t.Errorf("a forgotten mode is still there: %v", got)
	}
}

// heldStore is an ItemStore that remembers, weakly, the endpoints of the
// configuration it handed over.
type heldStore struct {
	*ItemStore
	eps weak.Pointer[Endpoint]
}

func (h *heldStore) Current() *Config {
	c := h.ItemStore.Current()
	if c != nil && len(c.Endpoints) > 0 {
		h.eps = weak.Make(&c.Endpoints[0])
	}
	return c
}

// released reports whether what p points into was collected.
func released[T any](p weak.Pointer[T]) bool {
	for range 3 {
		runtime.GC()
		if p.Value() == nil {
			return true
		}
	}
	return false
}

// Once a Server has built its model from the start's configuration,
// nothing keeps that configuration: not the store, which hands it over,
// not the Server, whose Config is built on demand and held by its
// readers only (issue 14: a million endpoints are ~100 MB a controller,
// held twice). A restart's configuration, loaded from the store, alike.
func TestStartConfigurationReleased(t *testing.T) {
	dir := t.TempDir()
	items, b := openItems(t, dir)
	if _, err := items.Startup(example(t), false); err != nil {
		t.Fatal(err)
	}
	for run := range 2 {
		h := &heldStore{ItemStore: items}
		srv, err := NewServer(ServerOptions{Store: h, Auth: identity.Auth{Insecure: true}})
		if err != nil {
			t.Fatal(err)
		}
		if h.eps.Value() == nil {
			t.Fatalf("run %d: the Server did not ask for the configuration", run)
		}
		if !released(h.eps) {
			t.Fatalf("run %d: the start's endpoints are still held after NewServer", run)
		}
		// A reader holding Config shares one snapshot; dropped, it goes.
		c := srv.Config()
		if srv.Config() != c || len(c.Endpoints) != len(example(t).Endpoints) {
			t.Fatalf("run %d: Config is not one shared snapshot of every endpoint", run)
		}
		held := weak.Make(&c.Endpoints[0])
		runtime.GC()
		if srv.Config() != c {
			t.Fatalf("run %d: a snapshot a reader holds was built again", run)
		}
		c = nil
		if !released(held) {
			t.Fatalf("run %d: the Server holds the snapshot its readers dropped", run)
		}
		if !srv.Config().Equal(example(t)) {
			t.Fatalf("run %d: Config built again differs from the start's", run)
		}
		b.Close()
		items, b = openItems(t, dir) // the restart: from what was saved
	}
	b.Close()
}

// The item store's order numbers of endpoints are keyed by the ids of
// the configuration they came with, started from or loaded, which the
// model keeps too: no second copy of each id (issue 14).
func TestItemStoreSharesEndpointIDs(t *testing.T) {
	dir := t.TempDir()
	items, b := openItems(t, dir)
	c := example(t)
	if _, err := items.Startup(c, false); err != nil {
		t.Fatal(err)
	}
	shared := func(when string, s *ItemStore, c *Config) {
		t.Helper()
		keys := map[*byte]bool{}
		for id := range s.seq.eps {
			keys[unsafe.StringData(id)] = true
		}
		if len(keys) != len(c.Endpoints) || len(c.Endpoints) == 0 {
			t.Fatalf("%s: %d endpoint order numbers for %d endpoints", when, len(keys), len(c.Endpoints))
		}
		for _, e := range c.Endpoints {
			if !keys[unsafe.StringData(e.ID)] {
				t.Fatalf("%s: %s's order number is keyed by a copy of its id", when, e.ID)
			}
		}
	}
	shared("started", items, c)
	b.Close()
	again, b2 := openItems(t, dir)
	defer b2.Close()
	shared("loaded", again, again.Current())
}
