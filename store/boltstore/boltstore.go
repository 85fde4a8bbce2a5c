package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/p4mesh/p4mesh/store"
)

var (
	itemsBucket = []byte("items")
	metaBucket  = []byte("meta")
	revKey      = []byte("rev")
	formatKey   = []byte("format")
	formatValue = []byte("p4mesh-store 1")
)

// Options tune a Store. The zero value is the default.
type Options struct {
	// LockTimeout is how long Open waits for another holder of the
	// file to let go before it fails. Default 1 s.
	LockTimeout time.Duration
	// History is how many recent batches the store keeps for Watch.
	// A watcher that falls further behind gets store.ErrCompacted.
	// Default 10,000.
	History int
	// HistoryBytes bounds the same history by the size of its ops
	// (keys and values): the oldest batches go first, and a batch larger
	// than the bound on its own is not kept at all, so a watcher from
	// before it Loads again. Without it, the start's import of a whole
	// configuration, one batch, would stay in memory for as long as the
	// process runs (55 MB a shard of 250k endpoints) for watchers this
	// process does not have: the controller follows a bbolt store by
	// Load, not Watch. Default 4 MiB.
	HistoryBytes int
}

// Store is a store.Backend in one bbolt file.
type Store struct {
	db      *bolt.DB
	path    string
	reqs    chan *request
	closing chan struct{}
	stopped chan struct{} // closed when the commit loop has returned
	once    sync.Once
	feed    *feed

	commits atomic.Uint64
	groups  atomic.Uint64

	// applyHook, when set (by tests), runs before each op is applied
	// inside a write transaction; an error fails that transaction as a
	// failing bbolt Put would.
	applyHook func(key string) error
}

var _ store.Backend = (*Store)(nil)

type request struct {
	ops  []store.Op
	rev  uint64
	err  error
	done chan struct{}
}

// Group limits: a group commit takes what is queued, up to these, so one
// transaction stays a bounded size.
const (
	maxGroupCommits = 1024
	maxGroupOps     = 64 << 10
)

// Open opens the store in the file at path, creating it (mode 0600) if
// it does not exist. Only one Store, in one process, holds a file at a
// time: Open fails after Options.LockTimeout if another does.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.History <= 0 {
		opts.History = 10000
	}
	if opts.HistoryBytes <= 0 {
		opts.HistoryBytes = 4 << 20
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: opts.LockTimeout,
		// The map freelist keeps commits cheap when a large store has
		// many free pages; the array one scans it.
		FreelistType: bolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: another process holds it (still locked after %v): %w", path, opts.LockTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	var rev uint64
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		if meta == nil {
			empty := true
			tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return errors.New("it is a bbolt file but not a p4mesh store (no meta bucket)")
			}
			if meta, err = tx.CreateBucket(metaBucket); err != nil {
				return err
			}
			if err := meta.Put(formatKey, formatValue); err != nil {
				return err
			}
			if err := putRev(meta, 0); err != nil {
				return err
			}
			_, err := tx.CreateBucket(itemsBucket)
			return err
		}
		if f := meta.Get(formatKey); string(f) != string(formatValue) {
			return fmt.Errorf("format %q, this p4mesh reads %q", f, formatValue)
		}
		if tx.Bucket(itemsBucket) == nil {
			return errors.New("no items bucket")
		}
		rev, err = getRev(meta)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{
		db:      db,
		path:    path,
		reqs:    make(chan *request),
		closing: make(chan struct{}),
		stopped: make(chan struct{}),
		feed:    newFeed(rev, opts.History, opts.HistoryBytes),
	}
	go s.loop()
	return s, nil
}

func putRev(meta *bolt.Bucket, rev uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], rev)
	return meta.Put(revKey, b[:])
}

func getRev(meta *bolt.Bucket) (uint64, error) {
	b := meta.Get(revKey)
	if len(b) != 8 {
		return 0, fmt.Errorf("revision is %d bytes, want 8", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// Path is the file the store is in.
func (s *Store) Path() string { return s.path }

// Stats counts what the store did since Open.
type Stats struct {
	// Commits is how many Commits succeeded.
	Commits uint64
	// Groups is how many write transactions carried them: each is one
	// round of fsyncs, shared by the commits in it.
	Groups uint64
}

// Stats returns counts since Open.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.commits.Load(), Groups: s.groups.Load()}
}

// Commit implements store.Backend. ctx bounds the wait for the commit
// loop to take the request; once taken, Commit waits for its outcome, so
// that it never returns an error for a commit that then lands.
func (s *Store) Commit(ctx context.Context, ops []store.Op) (uint64, error) {
	if err := store.CheckOps(ops); err != nil {
		return 0, err
	}
	// Watchers get these ops; copy them so the caller may reuse its
	// buffers once Commit returns.
	own := make([]store.Op, len(ops))
	size := 0
	for _, op := range ops {
		size += len(op.Value)
	}
	buf := make([]byte, 0, size)
	for i, op := range ops {
		own[i].Key = op.Key
		if op.Value != nil {
			start := len(buf)
			buf = append(buf, op.Value...)
			own[i].Value = buf[start:len(buf):len(buf)]
		}
	}
	r := &request{ops: own, done: make(chan struct{})}
	select {
	case s.reqs <- r:
	case <-s.closing:
		return 0, fmt.Errorf("commit to %s: %w", s.path, store.ErrClosed)
	case <-ctx.Done():
		return 0, fmt.Errorf("commit to %s: %w", s.path, ctx.Err())
	}
	<-r.done
	return r.rev, r.err
}

// loop owns writing: it takes what is queued, commits it in one
// transaction, and acknowledges. Commits that arrive during an fsync
// queue up and share the next one: the group grows with the load and a
// lone commit waits for no timer.
func (s *Store) loop() {
	defer close(s.stopped)
	var group []*request
	for {
		group = group[:0]
		select {
		case r := <-s.reqs:
			group = append(group, r)
		case <-s.closing:
			return
		}
		nops := len(group[0].ops)
	more:
		for len(group) < maxGroupCommits && nops < maxGroupOps {
			select {
			case r := <-s.reqs:
				group = append(group, r)
				nops += len(r.ops)
			default:
				break more
			}
		}
		s.commitGroup(group)
	}
}

// commitGroup commits group in one transaction. If an op fails to
// apply, the transaction is rolled back and each request is retried in a
// transaction of its own, so the failure stays with the request that
// caused it and no request is applied twice.
func (s *Store) commitGroup(group []*request) {
	err := s.commitTx(group)
	if err != nil && len(group) > 1 && errors.As(err, new(*applyError)) {
		for _, r := range group {
			s.commitGroup([]*request{r})
		}
		return
	}
	for _, r := range group {
		if err != nil {
			r.rev, r.err = 0, fmt.Errorf("commit to %s: %w", s.path, err)
		}
		close(r.done)
	}
}

// applyError is an op that failed inside a write transaction.
type applyError struct {
	key string
	err error
}

func (e *applyError) Error() string { return fmt.Sprintf("apply key %q: %v", e.key, e.err) }
func (e *applyError) Unwrap() error { return e.err }

// commitTx commits group in one transaction and, once it is durable,
// gives each request its revision and publishes the batches to watchers
// in revision order.
func (s *Store) commitTx(group []*request) error {
	tx, err := s.db.Begin(true)
	if err != nil {
		return err
	}
	meta, items := tx.Bucket(metaBucket), tx.Bucket(itemsBucket)
	rev, err := getRev(meta)
	if err != nil {
		tx.Rollback()
		return err
	}
	for _, r := range group {
		rev++
		r.rev = rev
		for _, op := range r.ops {
			if err := s.apply(items, op); err != nil {
				tx.Rollback()
				return &applyError{key: op.Key, err: err}
			}
		}
	}
	if err := putRev(meta, rev); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.groups.Add(1)
	s.commits.Add(uint64(len(group)))
	s.feed.publish(group)
	return nil
}

func (s *Store) apply(items *bolt.Bucket, op store.Op) error {
	if s.applyHook != nil {
		if err := s.applyHook(op.Key); err != nil {
			return err
		}
	}
	if op.Delete() {
		return items.Delete([]byte(op.Key))
	}
	return items.Put([]byte(op.Key), op.Value)
}

// Load implements store.Backend: one read transaction, so the items and
// the revision agree. Values are carved out of a few large buffers:
// 1M separate allocations would cost more than reading the file.
func (s *Store) Load(ctx context.Context) (map[string][]byte, uint64, error) {
	var (
		items map[string][]byte
		rev   uint64
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if rev, err = getRev(tx.Bucket(metaBucket)); err != nil {
			return err
		}
		b := tx.Bucket(itemsBucket)
		items = make(map[string][]byte, b.Stats().KeyN)
		const chunk = 1 << 20
		var arena []byte
		c := b.Cursor()
		for n, k, v := 0, []byte(nil), []byte(nil); ; n++ {
			if n == 0 {
				k, v = c.First()
			} else {
				k, v = c.Next()
			}
			if k == nil {
				return nil
			}
			if n%4096 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if len(v) > cap(arena)-len(arena) {
				arena = make([]byte, 0, max(chunk, len(v)))
			}
			start := len(arena)
			arena = append(arena, v...)
			items[string(k)] = arena[start:len(arena):len(arena)]
		}
	})
	if err != nil {
		return nil, 0, fmt.Errorf("load %s: %w", s.path, err)
	}
	return items, rev, nil
}

// Watch implements store.Backend from an in-memory history of the last
// Options.History batches (at most Options.HistoryBytes of them): a watcher that falls further behind gets
// store.ErrCompacted rather than holding up commits. A revision ahead of
// the store's is an error, not a wait: in one process it can only be a
// revision from some other store.
func (s *Store) Watch(ctx context.Context, afterRev uint64) iter.Seq2[store.Batch, error] {
	return s.feed.watch(ctx, s.path, afterRev)
}

// Close implements store.Backend. It waits for the commit in progress;
// commits still queued fail with store.ErrClosed.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closing)
		<-s.stopped
		s.feed.close()
		err = s.db.Close()
	})
	return err
}
