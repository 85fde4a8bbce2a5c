package main

import (
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/p4mesh/p4mesh/internal/etcdtest"
	"github.com/p4mesh/p4mesh/store"
	"github.com/p4mesh/p4mesh/store/etcdstore"
)

func TestEtcdFlagErrors(t *testing.T) {
	dir := t.TempDir()
	c1 := writeConfig(t, filepath.Join(dir, "c1.yaml"), "127.0.0.1:7002", nil)
	ep := []string{"--store", "etcd", "--etcd-endpoints", "127.0.0.1:2379"}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--store", "zk", "--data-dir", dir}, 2, `--store "zk": bolt, yaml or etcd`},
		{[]string{"--data-dir", dir, "--etcd-endpoints", "127.0.0.1:2379", "--lease-ttl", "3s"}, 2, "--etcd-endpoints, --lease-ttl only apply to --store etcd"},
		{[]string{"--store", "etcd", "--shard", "c2"}, 2, "--store etcd needs --etcd-endpoints"},
		{append(ep, "--data-dir", dir, "--shard", "c2"), 2, "--data-dir is not used with --store etcd"},
		{ep, 2, "--shard, or --config"},
		{append(ep, "--shard", "c2", "--replica-id", ""), 2, "--replica-id is required"},
		{append(ep, "--shard", "c2", "--replica-id", "a/b"), 2, `--replica-id "a/b"`},
		{append(ep, "--shard", "c/2"), 2, `--shard "c/2"`},
		{append(ep, "--shard", "c2", "--lease-ttl", "500ms"), 2, "--lease-ttl 500ms: at least 1s"},
		{[]string{"--store", "etcd", "--etcd-endpoints", "10.1.2.3:2379", "--shard", "c2"}, 2, "10.1.2.3:2379 is not a loopback address"},
		{append(ep, "--config", c1, "--shard", "c9"), 1, `--shard "c9", but --config is controller "c1"'s`},
	} {
		var out, errOut syncBuffer
		code := runWith(t.Context(), tc.args, &out, &errOut, hooks{ready: func(boundAddrs) { t.Errorf("%q: controller started", tc.args) }})
		if code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("run(%q) = %d, %q; want %d and %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}

// TestGuardedCommitDeposes: a commit etcd refuses as not the leader's
// (here the election key was deleted behind the leader's back, its lease
// still alive) deposes the replica, which serve turns into an exit.
func TestGuardedCommitDeposes(t *testing.T) {
	ep := etcdtest.Start(t)

	o := options{store: "etcd", listen: "127.0.0.1:7002", etcd: etcdOptions{endpoints: []string{ep}, shard: "c2", replicaID: "r0", leaseTTL: 5 * time.Second}}
	rs, err := lead(t.Context(), o, slog.New(slog.DiscardHandler))
	if err != nil || rs == nil {
		t.Fatalf("lead: %v", err)
	}
	defer rs.close()
	b := rs.backend()
	if _, err := b.Commit(t.Context(), []store.Op{{Key: "k", Value: []byte("v")}}); err != nil {
		t.Fatalf("commit as the leader: %v", err)
	}
	if _, err := rs.cli.Delete(t.Context(), etcdstore.Root+"c2/election/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Commit(t.Context(), []store.Op{{Key: "k", Value: []byte("w")}}); !errors.Is(err, store.ErrNotLeader) {
		t.Fatalf("commit after the election key went: %v, want ErrNotLeader", err)
	}
	select {
	case err := <-rs.Deposed():
		if !errors.Is(err, store.ErrNotLeader) {
			t.Errorf("deposed for %v, want ErrNotLeader", err)
		}
	default:
		t.Fatal("a commit refused as not the leader's did not depose the replica")
	}
}
