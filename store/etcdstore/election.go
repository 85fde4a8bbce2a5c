package etcdstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Replica is one controller process serving a shard: it holds an etcd
// lease (its session) that keeps its directory entry, and its leadership
// when it has it, alive while the process is.
type Replica struct {
	cli      *clientv3.Client
	shard    string
	id, addr string
	session  *concurrency.Session
	election *concurrency.Election
}

// Join registers replica id, reachable at addr, in shard's directory on a
// new lease of ttl (rounded up to whole seconds; etcd raises it to its
// minimum, about 2 s with default timings). If the process dies, the
// lease expires after ttl and the entry goes with it. Another live
// replica with the same id is an error.
func Join(ctx context.Context, cli *clientv3.Client, shard, id, addr string, ttl time.Duration) (*Replica, error) {
	if err := checkName("shard", shard); err != nil {
		return nil, err
	}
	if err := checkName("replica", id); err != nil {
		return nil, err
	}
	secs := int((ttl + time.Second - 1) / time.Second)
	if secs < 1 {
		return nil, fmt.Errorf("etcd: replica %s: lease TTL %v, want at least 1 s", id, ttl)
	}
	session, err := concurrency.NewSession(cli, concurrency.WithTTL(secs))
	if err != nil {
		return nil, fmt.Errorf("etcd shard %s: replica %s: new session: %w", shard, id, err)
	}
	key := replicasPrefix(shard) + id
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, addr, clientv3.WithLease(session.Lease()))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err == nil && !resp.Succeeded {
		other := "?"
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			other = string(kvs[0].Value)
		}
		err = fmt.Errorf("a live replica %s (at %s) is already registered", id, other)
	}
	if err != nil {
		session.Close()
		return nil, fmt.Errorf("etcd shard %s: replica %s: register: %w", shard, id, err)
	}
	return &Replica{
		cli: cli, shard: shard, id: id, addr: addr,
		session:  session,
		election: concurrency.NewElection(session, electionPrefix(shard)),
	}, nil
}

func replicasPrefix(shard string) string { return Root + shard + "/replicas/" }
func electionPrefix(shard string) string { return Root + shard + "/election" }

// ID is the replica's id.
func (r *Replica) ID() string { return r.id }

// Done is closed when the replica's lease is gone (expired, revoked, or
// its keepalives failed for longer than its TTL): it is no longer in the
// directory, and no longer leads. A replica whose Done is closed must stop
// acting as leader and Join again.
func (r *Replica) Done() <-chan struct{} { return r.session.Done() }

// Close revokes the replica's lease: its directory entry and its
// leadership end at once, and the next campaigner takes over without
// waiting for a TTL.
func (r *Replica) Close() error {
	if err := r.session.Close(); err != nil {
		return fmt.Errorf("etcd shard %s: replica %s: close: %w", r.shard, r.id, err)
	}
	return nil
}

// Leadership is a replica's lead of its shard, from Campaign until its
// Resign or the end of its lease.
type Leadership struct {
	shard, replica string
	key            string // the election key, on the replica's lease
	rev            int64  // the key's create revision
	election       *concurrency.Election
}

// Campaign blocks until the replica leads its shard, or ctx ends. A
// replica runs one Campaign (and Resign) at a time.
func (r *Replica) Campaign(ctx context.Context) (*Leadership, error) {
	if err := r.election.Campaign(ctx, r.id); err != nil {
		return nil, fmt.Errorf("etcd shard %s: replica %s: campaign: %w", r.shard, r.id, err)
	}
	return &Leadership{
		shard: r.shard, replica: r.id,
		key: r.election.Key(), rev: r.election.Rev(),
		election: r.election,
	}, nil
}

// cmp holds while this leadership does: the election key is the one
// Campaign created (the same create revision; a key of a later term,
// even on the same lease, has another).
func (l *Leadership) cmp() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev)
}

// Resign gives the leadership up; the next campaigner takes it at once.
func (l *Leadership) Resign(ctx context.Context) error {
	if err := l.election.Resign(ctx); err != nil {
		return fmt.Errorf("etcd shard %s: replica %s: resign: %w", l.shard, l.replica, err)
	}
	return nil
}

// ReplicaInfo is one entry of a shard's directory.
type ReplicaInfo struct {
	ID, Addr string
	Leader   bool
}

// Replicas lists shard's live replicas, by id, and says which one leads:
// directory and election are read at one revision, so there is at most
// one leader and it is among the replicas listed, unless it is one
// that campaigns without a directory entry.
func Replicas(ctx context.Context, cli *clientv3.Client, shard string) ([]ReplicaInfo, error) {
	if err := checkName("shard", shard); err != nil {
		return nil, err
	}
	pfx := replicasPrefix(shard)
	resp, err := cli.Txn(ctx).Then(
		clientv3.OpGet(pfx, clientv3.WithPrefix()),
		clientv3.OpGet(electionPrefix(shard)+"/", clientv3.WithFirstCreate()...),
	).Commit()
	if err != nil {
		return nil, fmt.Errorf("etcd shard %s: list replicas: %w", shard, err)
	}
	leader := ""
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		leader = string(kvs[0].Value)
	}
	var list []ReplicaInfo
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		id := string(kv.Key[len(pfx):])
		list = append(list, ReplicaInfo{ID: id, Addr: string(kv.Value), Leader: id == leader})
	}
	slices.SortFunc(list, func(a, b ReplicaInfo) int { return cmp.Compare(a.ID, b.ID) })
	return list, nil
}

// Leader returns the id of shard's leader, or "" if none leads.
func Leader(ctx context.Context, cli *clientv3.Client, shard string) (string, error) {
	if err := checkName("shard", shard); err != nil {
		return "", err
	}
	resp, err := cli.Get(ctx, electionPrefix(shard)+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("etcd shard %s: leader: %w", shard, err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}
