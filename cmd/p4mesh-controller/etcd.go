package main

// --store etcd: the controller as one replica of a replica set. The
// replicas of a shard (a controller of the directory) share its items in
// etcd; one leads, the others stand by:
//
//   - every replica joins the shard's directory in etcd (an entry on its
//     lease, --lease-ttl) and logs "standby", then campaigns;
//   - once elected it opens the shard's store guarded by its leadership
//     (a commit after it was deposed is refused by etcd, in the same
//     transaction), decides the configuration (Startup), builds the
//     server, and only then listens on --listen and --gnmi-addr: only the
//     leader listens on the API address, so OHCs and peers dialling the
//     directory's replicas (pick_first) find it;
//   - when its lease is lost, or a commit is refused as not the leader's,
//     it stops serving at once and exits with status 1, saying why: a
//     deposed leader must not keep its listener open, or clients would
//     stay on it. A supervisor restarts it, as a standby.
//
// The shard is named before anything is opened, since the store is the
// shard's: --shard, or else the controller: of --config. Both given, they
// must agree; and the configuration the store starts with (saved, or
// --config) must be that controller's.
//
// The etcd client uses the daemon's --tls-cert/--tls-key as its client
// certificate and verifies etcd's server certificate the way etcd's own
// clients do: it must chain to --tls-ca and name the endpoint's host (DNS
// or IP SAN). etcd's identity is not SPIFFE: no spiffe:// ID is asked of
// it. The files are read once, at start. Without --tls-*, the client is
// plaintext, on loopback endpoints only unless --insecure, as the
// daemon's own listeners.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/mtls"
	"github.com/p4mesh/p4mesh/store"
	"github.com/p4mesh/p4mesh/store/etcdstore"
)

// etcdOptions are the flags of --store etcd.
type etcdOptions struct {
	endpoints []string
	shard     string
	replicaID string
	leaseTTL  time.Duration

	// leader is set once elected (serve): the shard's guarded store.
	leader *replicaSet
}

// etcdFlags are the flag names only --store etcd takes.
var etcdFlags = []string{"etcd-endpoints", "shard", "replica-id", "lease-ttl"}

func (e *etcdOptions) register(fs *flag.FlagSet) {
	fs.Func("etcd-endpoints", "--store etcd: the etcd cluster's client endpoints, host:port,... (mutual TLS with --tls-*)", func(s string) error {
		for _, ep := range strings.Split(s, ",") {
			if ep = strings.TrimSpace(ep); ep != "" {
				e.endpoints = append(e.endpoints, ep)
			}
		}
		return nil
	})
	fs.StringVar(&e.shard, "shard", "", "--store etcd: the controller (directory entry) this replica serves; default: the controller: of --config")
	host, _ := os.Hostname()
	fs.StringVar(&e.replicaID, "replica-id", host, "--store etcd: this replica's name among its shard's, unique while it lives")
	fs.DurationVar(&e.leaseTTL, "lease-ttl", 5*time.Second, "--store etcd: how long after this replica stops answering etcd it leaves the directory and its leadership passes on (whole seconds)")
}

// check validates the flags of --store etcd, and refuses them with
// another store.
func (e *etcdOptions) check(fs *flag.FlagSet, o *options) error {
	if o.store != "etcd" {
		var set []string
		fs.Visit(func(f *flag.Flag) {
			for _, n := range etcdFlags {
				if f.Name == n {
					set = append(set, "--"+n)
				}
			}
		})
		if len(set) > 0 {
			return usageErr("%s only apply to --store etcd", strings.Join(set, ", "))
		}
		return nil
	}
	switch {
	case o.dataDir != "":
		return usageErr("--data-dir is not used with --store etcd: the configuration is kept in etcd")
	case len(e.endpoints) == 0:
		return usageErr("--store etcd needs --etcd-endpoints")
	case e.shard == "" && o.configPath == "":
		return usageErr("--store etcd needs the shard's name before opening its store: --shard, or --config (its controller:)")
	case e.replicaID == "":
		return usageErr("--replica-id is required (no host name to default to)")
	case strings.ContainsAny(e.replicaID, "/\x00"):
		return usageErr("--replica-id %q: no '/' or NUL", e.replicaID)
	case e.shard != "" && strings.ContainsAny(e.shard, "/\x00"):
		return usageErr("--shard %q: no '/' or NUL", e.shard)
	case e.leaseTTL < time.Second:
		return usageErr("--lease-ttl %v: at least 1s", e.leaseTTL)
	}
	if !o.tls.TLS() && !o.tls.Insecure {
		for _, ep := range e.endpoints {
			if !mtls.Loopback(ep) {
				return usageErr("--etcd-endpoints %s is not a loopback address: reach etcd with --tls-cert, --tls-key and --tls-ca, or in plaintext with --insecure", ep)
			}
		}
	}
	return nil
}

// shardName is the shard a replica serves: --shard, else --config's
// controller:; both given, they must agree.
func shardName(o options) (string, error) {
	if o.configPath == "" {
		return o.etcd.shard, nil
	}
	c, err := controller.LoadFile(o.configPath)
	if err != nil {
		return "", fmt.Errorf("--config: %w", err)
	}
	switch {
	case o.etcd.shard == "":
		return c.Controller, nil
	case c.Controller != o.etcd.shard:
		return "", fmt.Errorf("--shard %q, but --config is controller %q's", o.etcd.shard, c.Controller)
	}
	return o.etcd.shard, nil
}

// etcdTLS is the etcd client's side of mutual TLS: see the file comment
// for what is verified.
func etcdTLS(f mtls.Files) (*tls.Config, error) {
	if f.Empty() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate: %w", err)
	}
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("etcd CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("etcd CA: no certificate in %s", f.CA)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// replicaSet is this process's place in its shard's replica set, once it
// leads.
type replicaSet struct {
	cli     *clientv3.Client
	shard   string
	replica *etcdstore.Replica
	store   *etcdstore.Store // guarded by the leadership

	// deposed receives why the leadership is gone: the lease lost, or a
	// commit refused as not the leader's. Buffered; the first wins.
	deposed chan error
	once    sync.Once
}

// lead joins the shard's directory, stands by, and returns once elected:
// nil, nil if ctx ends first (a stop is not an error).
func lead(ctx context.Context, o options, log *slog.Logger) (*replicaSet, error) {
	shard, err := shardName(o)
	if err != nil {
		return nil, err
	}
	cfg, err := etcdTLS(o.tls.Files)
	if err != nil {
		return nil, err
	}
	cli, err := etcdstore.NewClient(ctx, etcdstore.ClientConfig{Endpoints: o.etcd.endpoints, TLS: cfg})
	if err != nil {
		return nil, fmt.Errorf("--etcd-endpoints: %w", err)
	}
	addr := o.advertise
	if addr == "" {
		addr = o.listen
	}
	r, err := etcdstore.Join(ctx, cli, shard, o.etcd.replicaID, addr, o.etcd.leaseTTL)
	if err != nil {
		cli.Close()
		return nil, err
	}
	rs := &replicaSet{cli: cli, shard: shard, replica: r, deposed: make(chan error, 1)}
	log.Info("standby: campaigning for the shard's leadership", "shard", shard, "replica", r.ID(),
		"addr", addr, "etcd", strings.Join(o.etcd.endpoints, ","), "lease_ttl", o.etcd.leaseTTL)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-r.Done():
			cancel()
		case <-cctx.Done():
		}
	}()
	l, err := r.Campaign(cctx)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		rs.close()
		return nil, nil
	default:
		rs.close()
		select {
		case <-r.Done():
			return nil, fmt.Errorf("etcd shard %s: replica %s: lease lost while standing by", shard, r.ID())
		default:
			return nil, err
		}
	}
	s, err := etcdstore.New(cli, shard, etcdstore.Options{})
	if err == nil {
		rs.store, err = s.Guarded(l)
	}
	if err != nil {
		rs.close()
		return nil, err
	}
	log.Info("elected: leading the shard", "shard", shard, "replica", r.ID())
	go func() {
		<-r.Done()
		rs.depose(fmt.Errorf("etcd shard %s: replica %s: lease lost (no answer from etcd for --lease-ttl %v): no longer the leader", shard, r.ID(), o.etcd.leaseTTL))
	}()
	return rs, nil
}

func (rs *replicaSet) depose(err error) {
	rs.once.Do(func() { rs.deposed <- err })
}

// Deposed receives why this replica no longer leads.
func (rs *replicaSet) Deposed() <-chan error { return rs.deposed }

// backend is the guarded store as the item store commits to it: a
// commit refused as not the leader's deposes this replica.
func (rs *replicaSet) backend() store.Backend { return guarded{rs.store, rs} }

type guarded struct {
	*etcdstore.Store
	rs *replicaSet
}

func (g guarded) Commit(ctx context.Context, ops []store.Op) (uint64, error) {
	rev, err := g.Store.Commit(ctx, ops)
	if errors.Is(err, store.ErrNotLeader) {
		g.rs.depose(err)
	}
	return rev, err
}

// close ends the store and revokes the lease, so that the next replica
// is elected without waiting out the TTL.
func (rs *replicaSet) close() {
	if rs.store != nil {
		rs.store.Close()
	}
	rs.replica.Close()
	rs.cli.Close()
}

// openEtcd opens the shard's item store on the leader's guarded store.
func openEtcd(rs *replicaSet) (configStore, string, func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	items, err := controller.OpenItemStore(ctx, rs.backend())
	if err != nil {
		return nil, "", nil, fmt.Errorf("etcd: %w", err)
	}
	return items, "etcd:" + etcdstore.Root + rs.shard, func() {}, nil
}
