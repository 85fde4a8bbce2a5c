package etcdstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/store"
)

// Root is the prefix of every key p4mesh keeps in etcd.
const Root = "/p4mesh/shards/"

// ClientConfig says how to reach an etcd cluster.
type ClientConfig struct {
	Endpoints []string
	// TLS is the client side of mutual TLS to etcd; nil is plaintext.
	TLS *tls.Config
	// DialTimeout bounds NewClient's wait for a first endpoint to
	// answer. Default 5 s.
	DialTimeout time.Duration
}

// NewClient connects to etcd and checks that a member answers, so that a
// wrong endpoint or certificate is an error at start, not a hang at the
// first commit.
func NewClient(ctx context.Context, cfg ClientConfig) (*clientv3.Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		TLS:         cfg.TLS,
		DialTimeout: cfg.DialTimeout,
		Context:     context.WithoutCancel(ctx),
		// etcd's default zap logger writes JSON to stderr; the client's
		// errors reach us as returned errors.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	sctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Status(sctx, cfg.Endpoints[0]); err != nil {
		if _, err2 := cli.Get(sctx, "health-check", clientv3.WithCountOnly()); err2 != nil {
			cli.Close()
			return nil, fmt.Errorf("etcd %s: no member answers: %w", strings.Join(cfg.Endpoints, ","), err2)
		}
	}
	return cli, nil
}

// Options tune a Store. The zero value is the default.
type Options struct {
	// MaxTxnOps is the etcd cluster's --max-txn-ops (default 128). A
	// commit takes one op more than it has, for the revision marker;
	// Commit refuses a commit that would not fit rather than send it.
	MaxTxnOps int
	// MaxRequestBytes is the etcd cluster's --max-request-bytes
	// (default 1.5 MiB).
	MaxRequestBytes int
	// PageSize is how many items one request of Load reads. Default
	// 10,000.
	PageSize int
}

// Store is a store.Backend holding one shard's items in etcd, under
// Root + shard + "/items/".
type Store struct {
	cli    *clientv3.Client
	shard  string
	items  string // prefix of the items' keys
	marker string // the key every commit writes, so that each gets a revision
	opts   Options
	guard  *Leadership // nil: commits are not guarded

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
}

var _ store.Backend = (*Store)(nil)

// New returns the store of shard on cli. The caller keeps cli and closes
// it after the Store.
func New(cli *clientv3.Client, shard string, opts Options) (*Store, error) {
	if err := checkName("shard", shard); err != nil {
		return nil, err
	}
	if opts.MaxTxnOps <= 0 {
		opts.MaxTxnOps = 128
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = 3 << 19
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 10000
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Store{
		cli:    cli,
		shard:  shard,
		items:  Root + shard + "/items/",
		marker: Root + shard + "/items",
		opts:   opts,
		ctx:    ctx,
		cancel: cancel,
	}, nil
}

// checkName refuses a shard or replica name that would not stay inside
// its own key prefix.
func checkName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("etcd: empty %s name", what)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("etcd: %s name %q contains '/' or NUL", what, name)
	case len(name) > 253:
		return fmt.Errorf("etcd: %s name of %d bytes, over 253", what, len(name))
	}
	return nil
}

// Guarded returns a Store on the same shard whose commits land only while
// l holds the shard's leadership: each carries a comparison on l's
// election key, checked by etcd in the same transaction, so a replica
// that lost the leadership (its lease expired while it was partitioned
// or paused) cannot overwrite its successor's commits even if it does
// not know yet.
func (s *Store) Guarded(l *Leadership) (*Store, error) {
	if l.shard != s.shard {
		return nil, fmt.Errorf("etcd: leadership of shard %q cannot guard commits to shard %q", l.shard, s.shard)
	}
	g := *s
	g.guard = l
	return &g, nil
}

// Commit implements store.Backend as one etcd transaction.
func (s *Store) Commit(ctx context.Context, ops []store.Op) (uint64, error) {
	if err := store.CheckOps(ops); err != nil {
		return 0, err
	}
	if len(ops)+1 > s.opts.MaxTxnOps {
		return 0, fmt.Errorf("etcd shard %s: commit of %d ops; etcd takes %d ops per transaction, one of them the revision marker", s.shard, len(ops), s.opts.MaxTxnOps)
	}
	size := 0
	tops := make([]clientv3.Op, 0, len(ops)+1)
	for _, op := range ops {
		size += len(s.items) + len(op.Key) + len(op.Value) + 16
		if op.Delete() {
			tops = append(tops, clientv3.OpDelete(s.items+op.Key))
		} else {
			tops = append(tops, clientv3.OpPut(s.items+op.Key, string(op.Value)))
		}
	}
	if size > s.opts.MaxRequestBytes {
		return 0, fmt.Errorf("etcd shard %s: commit of about %d bytes, over etcd's request limit of %d", s.shard, size, s.opts.MaxRequestBytes)
	}
	// The marker comes last: a watcher knows a commit is complete when
	// it sees it.
	tops = append(tops, clientv3.OpPut(s.marker, ""))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	txn := s.cli.Txn(ctx)
	if s.guard != nil {
		txn = txn.If(s.guard.cmp())
	}
	resp, err := txn.Then(tops...).Commit()
	if err != nil {
		if s.ctx.Err() != nil {
			return 0, fmt.Errorf("etcd shard %s: commit: %w", s.shard, store.ErrClosed)
		}
		if refused(err) {
			return 0, fmt.Errorf("etcd shard %s: commit refused: %w", s.shard, err)
		}
		return 0, fmt.Errorf("etcd shard %s: commit: %w (%w)", s.shard, store.ErrUnknownOutcome, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("etcd shard %s: replica %s's leadership (election key %s) is gone, commit refused: %w",
			s.shard, s.guard.replica, s.guard.key, store.ErrNotLeader)
	}
	return uint64(resp.Header.Revision), nil
}

// refused reports an error from etcd that means the request was judged
// and rejected, so nothing of it applied; other errors (a broken
// connection, a timeout) leave the outcome unknown.
func refused(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.PermissionDenied,
		codes.Unauthenticated, codes.ResourceExhausted, codes.OutOfRange:
		return true
	}
	var ee rpctypes.EtcdError
	return errors.As(err, &ee) && (errors.Is(err, rpctypes.ErrTooManyOps) ||
		errors.Is(err, rpctypes.ErrRequestTooLarge) || errors.Is(err, rpctypes.ErrDuplicateKey))
}

// Load implements store.Backend in pages, all at the etcd revision of
// the first, so a large shard never needs one huge response. A
// compaction of that revision while paging starts it over. The revision
// returned is the shard's: that of its last commit (the ModRevision of
// its marker key), which commits to other shards do not move.
func (s *Store) Load(ctx context.Context) (map[string][]byte, uint64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	for attempt := 0; ; attempt++ {
		items, rev, err := s.load(ctx)
		if errors.Is(err, rpctypes.ErrCompacted) && attempt < 3 {
			continue
		}
		if err != nil {
			if s.ctx.Err() != nil {
				err = store.ErrClosed
			}
			return nil, 0, fmt.Errorf("etcd shard %s: load: %w", s.shard, err)
		}
		return items, rev, nil
	}
}

func (s *Store) load(ctx context.Context) (map[string][]byte, uint64, error) {
	end := clientv3.GetPrefixRangeEnd(s.items)
	page := int64(s.opts.PageSize)
	// The marker and the first page at one revision: the shard's
	// revision is its last commit's (the marker's ModRevision), not the
	// header's, which every other shard's commits advance. A client told
	// revision r by one leader must find the same r at the next one,
	// whatever the other shards committed in between.
	tresp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.marker),
		clientv3.OpGet(s.items, clientv3.WithRange(end), clientv3.WithLimit(page)),
	).Commit()
	if err != nil {
		return nil, 0, err
	}
	at := tresp.Header.Revision
	var rev int64
	if kvs := tresp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		rev = kvs[0].ModRevision
	}
	resp := (*clientv3.GetResponse)(tresp.Responses[1].GetResponseRange())
	items := make(map[string][]byte, resp.Count)
	for {
		for _, kv := range resp.Kvs {
			v := kv.Value
			if v == nil {
				v = []byte{}
			}
			items[string(kv.Key[len(s.items):])] = v
			// An item written without the marker (by hand, by an older
			// p4mesh) is still part of what was loaded.
			rev = max(rev, kv.ModRevision)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return items, uint64(rev), nil
		}
		next := string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		resp, err = s.cli.Get(ctx, next, clientv3.WithRange(end), clientv3.WithLimit(page), clientv3.WithRev(at))
		if err != nil {
			return nil, 0, err
		}
	}
}

// Watch implements store.Backend with an etcd watch on the shard's items
// from afterRev+1. etcd's revisions are the cluster's, shared by every
// shard: the revisions of one shard's batches increase but skip.
//
// The watch requires a leader at the etcd member it is on, so that a
// member cut off from its cluster ends the watch with an error instead of
// holding it silently.
func (s *Store) Watch(ctx context.Context, afterRev uint64) iter.Seq2[store.Batch, error] {
	return func(yield func(store.Batch, error) bool) {
		outer := ctx
		ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		defer cancel()
		defer context.AfterFunc(s.ctx, cancel)()
		fail := func(err error) {
			switch {
			case s.ctx.Err() != nil:
				err = store.ErrClosed
			case outer.Err() != nil:
				return // the watcher's own cancellation is not an error
			}
			yield(store.Batch{}, fmt.Errorf("etcd shard %s: watch after revision %d: %w", s.shard, afterRev, err))
		}
		wch := s.cli.Watch(ctx, s.marker, clientv3.WithRange(s.marker+"0"), clientv3.WithRev(int64(afterRev)+1))
		var cur store.Batch
		for resp := range wch {
			if resp.CompactRevision != 0 {
				fail(fmt.Errorf("etcd compacted up to revision %d: %w", resp.CompactRevision, store.ErrCompacted))
				return
			}
			if err := resp.Err(); err != nil {
				fail(err)
				return
			}
			for _, ev := range resp.Events {
				rev := uint64(ev.Kv.ModRevision)
				if cur.Rev != 0 && rev != cur.Rev {
					// Written without our marker (by hand, or by an
					// older p4mesh): still a batch.
					if !yield(cur, nil) {
						return
					}
					cur = store.Batch{}
				}
				cur.Rev = rev
				key := string(ev.Kv.Key)
				if key == s.marker {
					if !yield(cur, nil) {
						return
					}
					cur = store.Batch{}
					continue
				}
				if !strings.HasPrefix(key, s.items) {
					continue
				}
				op := store.Op{Key: key[len(s.items):]}
				if ev.Type == clientv3.EventTypePut {
					op.Value = ev.Kv.Value
					if op.Value == nil {
						op.Value = []byte{}
					}
				}
				cur.Ops = append(cur.Ops, op)
			}
		}
		fail(errors.New("etcd closed the watch"))
	}
}

// Close implements store.Backend: commits, loads and watches in flight
// end, on s and on the Stores Guarded made from it or that it was made
// from. The client stays open; it is the caller's.
func (s *Store) Close() error {
	s.cancel()
	return nil
}
