// Package store is the controller's durable, replicated item store:
// bytes in, bytes out, one key per item. It knows nothing of controller
// types; the controller maps its items to keys.
//
// A Backend keeps items and a revision. Commit applies a list of ops
// (put, or delete with a nil value) all or none, and returns once they
// are durable with the revision they were given; Load returns every item
// at one revision; Watch yields the committed batches after a revision,
// in order, which is what hot standbys and the controller's watch streams
// follow. Revisions come from the store (bbolt's counter, etcd's
// revision), never from a clock, so they order commits across restarts
// and replicas.
//
// Two backends:
//
//   - boltstore, one bbolt file (<data-dir>/store.db, mode 0600), the
//     embedded default. One process holds the file at a time (an flock;
//     a second opener gets "another process holds it"). Concurrent
//     commits share a transaction and so its fsyncs (group commit): under
//     load, throughput grows with the number of committers while each
//     commit still waits for its own durability. A commit acknowledged
//     has been fsynced; one killed before its acknowledgement may or may
//     not be there after a restart; one refused is not. The file is
//     consistent after a crash at any point (bbolt's copy-on-write pages
//     and double meta page), as TestCrash checks with SIGKILL. Watch
//     serves an in-memory history of recent batches in this process only;
//     it starts empty at Open, so a watcher from before a restart must
//     Load again (store.ErrCompacted).
//
//   - etcdstore, a shard's items in etcd under /p4mesh/shards/<shard>/,
//     for a shard run as replicas. A commit is one etcd transaction,
//     durable when etcd's quorum has it. Each replica Joins the shard's
//     directory on a lease (its session); one replica, elected with etcd's
//     concurrency.Election on that lease, leads and commits; the others
//     Load and Watch, hot, and the next campaigner leads within a lease
//     TTL of the leader's death (or at once when it Closes or Resigns).
//
// Limits of the election. Leadership is a lease, not a lock a process
// holds: a leader paused or cut off longer than its TTL is deposed without
// knowing it. What it can no longer do is commit: a Guarded store's
// commits carry a comparison on the election key the leader won, which
// etcd checks in the same transaction, so a deposed leader's commit fails
// with ErrNotLeader and never lands. Everything else it does after losing
// the lease (serving watches from its memory, answering reads) may be
// stale until it sees Replica.Done; callers must stop acting as leader
// then. A commit whose reply was lost returns ErrUnknownOutcome: it may
// have landed, and Load or Watch says whether.
//
// Limits of etcd. A commit is at most Options.MaxTxnOps-1 ops (127 with
// etcd's default --max-txn-ops) and about 1.5 MiB; Commit refuses larger
// ones before sending them. etcd's revision is the cluster's: one shard's
// revisions increase but skip. A watcher from a compacted revision gets
// ErrCompacted and must Load again.
package store
