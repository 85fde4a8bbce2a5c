package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/p4mesh/p4mesh/internal/etcdtest"
	"github.com/p4mesh/p4mesh/store"
	"github.com/p4mesh/p4mesh/store/etcdstore"
	"github.com/p4mesh/p4mesh/store/storetest"
)

func client(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := etcdstore.NewClient(t.Context(), etcdstore.ClientConfig{Endpoints: []string{endpoint}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func newStore(t testing.TB, cli *clientv3.Client, shard string) *etcdstore.Store {
	t.Helper()
	s, err := etcdstore.New(cli, shard, etcdstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ownClient is a Store that closes its own client, as a process that
// exits would.
type ownClient struct {
	*etcdstore.Store
	cli *clientv3.Client
}

func (o ownClient) Close() error { o.Store.Close(); return o.cli.Close() }

func TestSuite(t *testing.T) {
	ep := etcdtest.Start(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		shard := fmt.Sprintf("suite%d", n.Add(1))
		return func() store.Backend {
			cli, err := etcdstore.NewClient(t.Context(), etcdstore.ClientConfig{Endpoints: []string{ep}})
			if err != nil {
				t.Fatal(err)
			}
			return ownClient{newStore(t, cli, shard), cli}
		}
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), storetest.Deadline)
	t.Cleanup(cancel)
	return c
}

func TestShardsApartAndLimits(t *testing.T) {
	cli := client(t, etcdtest.Start(t))
	a, b := newStore(t, cli, "a"), newStore(t, cli, "ab")
	if _, err := a.Commit(ctx(t), []store.Op{{Key: "k", Value: []byte("a")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Commit(ctx(t), []store.Op{{Key: "k", Value: []byte("b")}}); err != nil {
		t.Fatal(err)
	}
	items, _ := storetest.MustLoad(t, a)
	if d := storetest.Equal(items, map[string][]byte{"k": []byte("a")}); d != "" {
		t.Errorf("shard a sees: %s", d)
	}
	ops := make([]store.Op, 128)
	for i := range ops {
		ops[i] = store.Op{Key: fmt.Sprint(i), Value: []byte("v")}
	}
	if _, err := a.Commit(ctx(t), ops); err == nil || !strings.Contains(err.Error(), "128 ops per transaction") {
		t.Errorf("commit of 128 ops: %v, want a refusal naming the limit", err)
	}
	if _, err := etcdstore.New(cli, "x/y", etcdstore.Options{}); err == nil || !strings.Contains(err.Error(), `"x/y"`) {
		t.Errorf("shard x/y: %v", err)
	}
	if _, err := etcdstore.NewClient(t.Context(), etcdstore.ClientConfig{Endpoints: []string{"127.0.0.1:1"}, DialTimeout: 500 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("client of a dead endpoint: %v", err)
	}
}

// TestLoadPages: a Load in pages returns every item once, at the
// revision of its first page, whatever commits land meanwhile.
func TestLoadPages(t *testing.T) {
	cli := client(t, etcdtest.Start(t))
	s, err := etcdstore.New(cli, "p", etcdstore.Options{PageSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for i := range 10 {
		k := fmt.Sprintf("k%d", i)
		want[k] = []byte(k)
		if _, err := s.Commit(ctx(t), []store.Op{{Key: k, Value: want[k]}}); err != nil {
			t.Fatal(err)
		}
	}
	items, _ := storetest.MustLoad(t, s)
	if d := storetest.Equal(items, want); d != "" {
		t.Errorf("paged Load: %s", d)
	}
}

func TestWatchCompacted(t *testing.T) {
	cli := client(t, etcdtest.Start(t))
	s := newStore(t, cli, "c")
	r1, _ := s.Commit(ctx(t), []store.Op{{Key: "k", Value: []byte("1")}})
	r2, _ := s.Commit(ctx(t), []store.Op{{Key: "k", Value: []byte("2")}})
	if _, err := cli.Compact(ctx(t), int64(r2)); err != nil {
		t.Fatal(err)
	}
	for _, err := range s.Watch(ctx(t), r1-1) {
		if !errors.Is(err, store.ErrCompacted) {
			t.Errorf("watch from before the compaction: %v, want ErrCompacted", err)
		}
		break
	}
}

// waitLeader waits for l's Campaign to return a leadership.
func campaign(t *testing.T, r *etcdstore.Replica) <-chan *etcdstore.Leadership {
	ch := make(chan *etcdstore.Leadership, 1)
	go func() {
		l, err := r.Campaign(ctx(t))
		if err != nil {
			t.Errorf("campaign of %s: %v", r.ID(), err)
		}
		ch <- l
	}()
	return ch
}

func replicas(t *testing.T, cli *clientv3.Client, shard string) string {
	t.Helper()
	list, err := etcdstore.Replicas(ctx(t), cli, shard)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range list {
		fmt.Fprintf(&b, "%s=%s", r.ID, r.Addr)
		if r.Leader {
			b.WriteString("*")
		}
		b.WriteString(" ")
	}
	return strings.TrimSpace(b.String())
}

// TestFailover: a leader that stops renewing its lease (a crash, a
// partition, a long pause) is replaced within the TTL, its commits are
// refused from then on, and a standby following the watch saw every
// commit of both leaders in order.
func TestFailover(t *testing.T) {
	ep := etcdtest.Start(t)
	const shard, ttl = "s1", 2 * time.Second
	cli1, cli2, cliStandby := client(t, ep), client(t, ep), client(t, ep)
	r1, err := etcdstore.Join(ctx(t), cli1, shard, "r1", "10.0.0.1:9339", ttl)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := etcdstore.Join(ctx(t), cli2, shard, "r2", "10.0.0.2:9339", ttl)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if _, err := etcdstore.Join(ctx(t), cli2, shard, "r1", "10.0.0.3:9339", ttl); err == nil || !strings.Contains(err.Error(), "10.0.0.1:9339") {
		t.Errorf("second r1: %v, want an error naming the live one", err)
	}

	l1 := <-campaign(t, r1)
	won2 := campaign(t, r2)
	if got, want := replicas(t, cli2, shard), "r1=10.0.0.1:9339* r2=10.0.0.2:9339"; got != want {
		t.Errorf("replicas %q, want %q", got, want)
	}

	// The standby follows from the start.
	standby := newStore(t, cliStandby, shard)
	_, start := storetest.MustLoad(t, standby)
	seen := make(chan []store.Batch, 1)
	go func() {
		got, err := storetest.Read(standby, start, 4)
		if err != nil {
			t.Errorf("standby: %v", err)
		}
		seen <- got
	}()

	s1, err := newStore(t, cli1, shard).Guarded(l1)
	if err != nil {
		t.Fatal(err)
	}
	var acked []uint64
	for i := range 2 {
		rev, err := s1.Commit(ctx(t), []store.Op{{Key: fmt.Sprint("from-r1-", i), Value: []byte("v")}})
		if err != nil {
			t.Fatalf("leader r1 commit: %v", err)
		}
		acked = append(acked, rev)
	}
	select {
	case <-won2:
		t.Fatal("r2 leads while r1 does")
	default:
	}

	// r1 stops renewing its lease, as a crashed process would, but its
	// client still works: it does not know it is deposed.
	etcdstore.StopKeepAlive(r1)
	stopped := time.Now()
	var l2 *etcdstore.Leadership
	select {
	case l2 = <-won2:
	case <-time.After(storetest.Deadline):
		t.Fatalf("r2 does not lead %v after r1 stopped renewing a lease of %v", storetest.Deadline, ttl)
	}
	t.Logf("r2 leads %v after r1 stopped renewing its %v lease", time.Since(stopped).Round(time.Millisecond), ttl)

	_, err = s1.Commit(ctx(t), []store.Op{{Key: "from-deposed-r1", Value: []byte("v")}})
	if !errors.Is(err, store.ErrNotLeader) || !strings.Contains(err.Error(), "r1") {
		t.Errorf("deposed r1's commit: %v, want ErrNotLeader naming r1", err)
	}
	s2, err := newStore(t, cli2, shard).Guarded(l2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		rev, err := s2.Commit(ctx(t), []store.Op{{Key: fmt.Sprint("from-r2-", i), Value: []byte("v")}})
		if err != nil {
			t.Fatalf("leader r2 commit: %v", err)
		}
		acked = append(acked, rev)
	}
	got := <-seen
	for i, b := range got[:min(len(got), len(acked))] {
		if b.Rev != acked[i] {
			t.Errorf("standby saw batch %d at revision %d, want %d", i, b.Rev, acked[i])
		}
	}
	items, _ := storetest.MustLoad(t, standby)
	if _, ok := items["from-deposed-r1"]; ok {
		t.Error("the deposed leader's commit landed")
	}
	if len(items) != 4 {
		t.Errorf("standby loads %d items, want 4", len(items))
	}
	if got, want := replicas(t, cli2, shard), "r2=10.0.0.2:9339*"; got != want {
		t.Errorf("replicas after r1's lease expired %q, want %q", got, want)
	}
	select {
	case <-r1.Done():
	case <-time.After(storetest.Deadline):
		t.Error("r1's Done is still open after its lease expired")
	}

	// A clean hand-over: r3 campaigns, r2 resigns, r3 leads; r2's guard
	// fails too, though r2 is alive.
	r3, err := etcdstore.Join(ctx(t), cliStandby, shard, "r3", "10.0.0.3:9339", ttl)
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	won3 := campaign(t, r3)
	if err := l2.Resign(ctx(t)); err != nil {
		t.Fatal(err)
	}
	<-won3
	if leader, err := etcdstore.Leader(ctx(t), cli1, shard); err != nil || leader != "r3" {
		t.Errorf("leader %q, %v; want r3", leader, err)
	}
	if _, err := s2.Commit(ctx(t), []store.Op{{Key: "from-resigned-r2", Value: []byte("v")}}); !errors.Is(err, store.ErrNotLeader) {
		t.Errorf("resigned r2's commit: %v, want ErrNotLeader", err)
	}
}

// TestShardRevisionIgnoresOtherShards: a shard's revision is its own last
// commit's. etcd's revisions are the cluster's; were Load to return the
// header's, another shard's commits would move it, and a new leader
// would build its watch tables above the revision its clients hold and
// reset them. A watch from that revision sees only what this shard
// commits next.
func TestShardRevisionIgnoresOtherShards(t *testing.T) {
	cli := client(t, etcdtest.Start(t))
	a, b := newStore(t, cli, "a"), newStore(t, cli, "b")
	r1, err := a.Commit(ctx(t), []store.Op{{Key: "k", Value: []byte("1")}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := b.Commit(ctx(t), []store.Op{{Key: fmt.Sprint(i), Value: []byte("b")}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, rev := storetest.MustLoad(t, a); rev != r1 {
		t.Fatalf("shard a loads at revision %d after shard b's commits; want its own last commit's, %d", rev, r1)
	}
	if _, rev := storetest.MustLoad(t, newStore(t, cli, "empty")); rev != 0 {
		t.Errorf("a shard never committed to loads at revision %d, want 0", rev)
	}
	r2, err := a.Commit(ctx(t), []store.Op{{Key: "k", Value: []byte("2")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, rev := storetest.MustLoad(t, a); rev != r2 {
		t.Fatalf("shard a loads at revision %d, want its last commit's, %d", rev, r2)
	}
	// From r1, a watch yields a's second commit and nothing of b's.
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	for batch, err := range a.Watch(wctx, r1) {
		if err != nil {
			t.Fatal(err)
		}
		if batch.Rev != r2 || len(batch.Ops) != 1 || string(batch.Ops[0].Value) != "2" {
			t.Fatalf("watch of shard a after %d: batch %+v, want its commit at %d", r1, batch, r2)
		}
		break
	}
}
