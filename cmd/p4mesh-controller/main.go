// Command p4mesh-controller is p4mesh's SDN controller daemon: it serves
// host programming to the OHCs of its hosts, the connectivity of the VPCs
// it owns to authorised OHCs (one published service per unique (VPC,
// export policy)), and its side of each peering to the other controllers
// of the directory, whose sides it follows.
//
//	p4mesh-controller --config c1.yaml --data-dir /var/lib/p4mesh/c1 \
//	    --listen 127.0.0.1:7001 --metrics-addr 127.0.0.1:9101
//
// The accepted configuration is persisted in --data-dir, and on a restart
// the saved configuration wins over --config: changes accepted since the
// file was written (a gNMI Set) survive a restart with the same command
// line. When the two differ the controller says so at WARN, naming what
// differs; --config-overrides-saved makes --config win instead (also
// logged at WARN, with what it replaces). With nothing saved, --config is
// applied and saved. See controller.Store.Startup.
//
// The configuration is kept in --data-dir/store.db (--store bolt, the
// default): one key per item, each accepted change one transaction, and
// the store's revision is the watch revision, so OHCs resume across a
// restart without a snapshot. A data directory of an older p4mesh
// (config.yaml, peer-sides.json) is imported on the first start and its
// files renamed *.migrated. --store yaml keeps config.yaml, written whole
// per change with a SHA-256 on its last line: a file that does not match
// stops the controller with an error saying what to do (restore it, or
// --config-overrides-saved, which moves it aside).
//
// --store etcd runs the controller as one replica of a replica set: the
// shard (--shard, else --config's controller:) is kept in etcd
// (--etcd-endpoints), one replica leads and only it listens on --listen
// and --gnmi-addr; a leader that loses its lease exits with status 1, to
// be restarted as a standby. See etcd.go.
//
// SIGHUP re-reads --config and applies it, replacing what was accepted
// since: that is an operator's explicit request. An invalid one is
// refused, logged, and changes nothing. SIGINT and SIGTERM stop the
// controller gracefully.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/p4mesh/p4mesh/controller"
	p4gnmi "github.com/p4mesh/p4mesh/gnmi"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/internal/bgplink"
	"github.com/p4mesh/p4mesh/internal/daemon"
	"github.com/p4mesh/p4mesh/internal/sendgate"
	"github.com/p4mesh/p4mesh/mtls"
	"github.com/p4mesh/p4mesh/store/boltstore"
)

// shutdownGrace bounds a stop: how long RPCs and scrapes in flight get to
// end before they are cut.
const shutdownGrace = 5 * time.Second

// Peering state is logged once the peer controllers have had peeringSettle
// to answer (before that every remote peering reads "waiting for
// controller"), then re-checked every peeringPoll and logged on change.
const (
	peeringSettle = 2 * time.Second
	peeringPoll   = time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole command; it returns the exit status: 0 after a clean
// stop (cancellation is not an error), 2 for a bad command line, 1 when
// the controller cannot start or fails.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, stdout, stderr, hooks{})
}

// hooks let a test watch a running controller.
type hooks struct {
	// ready, if set, is called once the controller serves, with the
	// addresses actually bound (":0" resolved).
	ready func(bound boundAddrs)
}

// boundAddrs are the addresses a controller serves on; those of servers
// that are off are nil.
type boundAddrs struct {
	grpc, metrics, gnmi net.Addr
}

// options is the parsed command line.
type options struct {
	configPath string
	// overrideSaved: --config wins over the saved configuration at start
	// (Store.Startup).
	overrideSaved bool
	dataDir       string
	// store is --store: bolt (the default), yaml or etcd.
	store       string
	etcd        etcdOptions
	listen      string
	advertise   string
	metricsAddr string
	logLevel    slog.Level
	gnmi        gnmiOptions
	peerGrace   time.Duration
	tls         mtls.Flags
	limits      daemon.Limits
	// gate: its Conns and Logger are set at start.
	gate sendgate.Options
	// bgpListen is --bgp-listen, parsed: it overrides the bgp section's
	// listen address and port (port -1: do not listen).
	bgpListenAddr string
	bgpListenPort int32
	// gc is --memory-limit and --gc-percent; gcSettings what they decide
	// with GOMEMLIMIT and GOGC.
	gc         gcOptions
	gcSettings gcSettings
}

// errUsage marks command-line errors, which exit with status 2.
var errUsage = errors.New("invalid command line")

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

func parseFlags(args []string, stdout io.Writer) (options, error) {
	fs := flag.NewFlagSet("p4mesh-controller", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var o options
	fs.StringVar(&o.configPath, "config", "", "YAML configuration to start with when --data-dir has none (a saved one wins, see --config-overrides-saved); SIGHUP re-reads and applies it")
	fs.BoolVar(&o.overrideSaved, "config-overrides-saved", false, "start from --config even when the saved configuration differs, discarding changes accepted since (e.g. over gNMI); a damaged saved configuration is moved aside")
	fs.StringVar(&o.dataDir, "data-dir", "", "directory the accepted configuration is persisted in (required); it survives restarts")
	fs.StringVar(&o.store, "store", "bolt", "how --data-dir keeps the configuration: bolt (store.db, one transaction per change; a config.yaml of an older p4mesh is imported on first start) or yaml (config.yaml, the whole file written per change); or etcd, shared by the shard's replicas, one leading (no --data-dir; see --etcd-endpoints)")
	o.etcd.register(fs)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:7001", "gRPC address for OHCs and peer controllers; must be this controller's address in the directory unless --advertise is")
	fs.StringVar(&o.advertise, "advertise", "", "address OHCs and peers reach this controller at, when not --listen (NAT, a load balancer); checked against the directory")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "Prometheus /metrics, /healthz and /readyz (ready: every peer controller heard from, or --peer-grace passed) listen address, e.g. 127.0.0.1:9101 (empty: off)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	bgpListen := fs.String("bgp-listen", "", "the BGP speaker's (configuration section bgp) local address, address:port, overriding bgp.listen_address and bgp.listen_port; the speaker dials every neighbor from that address and accepts no connection (one GoBGP server per VPC cannot share a port), so the port is ignored and \"none\" changes nothing but the address (empty: as configured)")
	fs.DurationVar(&o.peerGrace, "peer-grace", 10*time.Second, "after a start, how long host programming waits to hear from the controllers owning peer VPCs before serving their peerings as inactive")
	o.tls.Register(fs, "the controller API (OHCs, peer controllers) and, unless --gnmi-tls-* say otherwise, gNMI")
	fs.IntVar(&o.limits.StreamsPerPeer, "max-streams-per-peer", 8192, "watch streams one identity (or, unauthenticated, one connection) may hold open; more are refused with RESOURCE_EXHAUSTED")
	fs.IntVar(&o.limits.Streams, "max-streams", 65536, "watch streams the controller holds open in all")
	fs.IntVar(&o.gate.Streams, "max-sending-streams", sendgate.DefaultStreams, "watch streams that may be sending at once (a snapshot, a catch-up); the others wait their turn. Each can have gRPC queue hundreds of KiB for a client that does not read")
	fs.IntVar(&o.gate.StreamsPerPeer, "max-sending-streams-per-peer", sendgate.DefaultStreamsPerPeer, "of --max-sending-streams, how many one identity (or, unauthenticated, one connection) may hold")
	fs.DurationVar(&o.gate.StallTimeout, "stall-timeout", sendgate.DefaultStallTimeout, "a watch stream whose send has been blocked this long is a client that stopped reading: its connection is closed")
	fs.StringVar(&o.gnmi.addr, "gnmi-addr", "", "serve gNMI (configuration and state) on this address, e.g. 127.0.0.1:57400 (empty: off)")
	fs.StringVar(&o.gnmi.cert, "gnmi-tls-cert", "", "gNMI server certificate (PEM)")
	fs.StringVar(&o.gnmi.key, "gnmi-tls-key", "", "gNMI server private key (PEM)")
	fs.StringVar(&o.gnmi.ca, "gnmi-tls-ca", "", "CA that gNMI clients' certificates must chain to: mutual TLS")
	fs.BoolVar(&o.gnmi.insecurePlaintext, "gnmi-insecure", false, "serve gNMI in plaintext (the gNMI spec requires TLS; for tests and labs)")
	fs.IntVar(&o.gnmi.maxMsgSize, "gnmi-max-msg-size", p4gnmi.DefaultMaxMsgSize, "largest gNMI message received or sent, in bytes: a whole configuration is one message (about 300 bytes per endpoint)")
	o.gc.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return o, usageErr("unexpected arguments %q", fs.Args())
	}
	if o.store != "bolt" && o.store != "yaml" && o.store != "etcd" {
		return o, usageErr("--store %q: bolt, yaml or etcd", o.store)
	}
	if err := o.etcd.check(fs, &o); err != nil {
		return o, err
	}
	if o.dataDir == "" && o.store != "etcd" {
		return o, usageErr("--data-dir is required: it is where the controller keeps its configuration across restarts")
	}
	if o.listen == "" {
		return o, usageErr("--listen is required")
	}
	for _, f := range []struct {
		name string
		n    int64
	}{
		{"--max-sending-streams", int64(o.gate.Streams)},
		{"--max-sending-streams-per-peer", int64(o.gate.StreamsPerPeer)},
		{"--stall-timeout", int64(o.gate.StallTimeout)},
	} {
		if f.n <= 0 {
			return o, usageErr("%s must be positive", f.name)
		}
	}
	if o.overrideSaved && o.configPath == "" {
		return o, usageErr("--config-overrides-saved needs --config")
	}
	if err := o.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return o, usageErr("--log-level %q: %v", *level, err)
	}
	if err := o.tls.Check(); err != nil {
		return o, usageErr("%v", err)
	}
	if err := o.tls.CheckListen(o.listen); err != nil {
		return o, usageErr("--listen %v", err)
	}
	if err := o.gnmi.check(&o.tls); err != nil {
		return o, err
	}
	gc, err := o.gc.check(os.Getenv)
	if err != nil {
		return o, err
	}
	o.gcSettings = gc
	switch *bgpListen {
	case "":
	case "none":
		o.bgpListenPort = -1
	default:
		ap, err := netip.ParseAddrPort(*bgpListen)
		if err != nil || !ap.Addr().Is4() || ap.Port() == 0 {
			return o, usageErr("--bgp-listen %q: an IPv4 address:port, or none", *bgpListen)
		}
		o.bgpListenAddr, o.bgpListenPort = ap.Addr().String(), int32(ap.Port())
	}
	return o, nil
}

func runWith(ctx context.Context, args []string, stdout, stderr io.Writer, h hooks) int {
	o, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "p4mesh-controller:", err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))
	o.gcSettings.apply()
	log.Info("garbage collector", o.gcSettings.logAttrs()...)
	if err := serve(ctx, o, log, h); err != nil {
		// Printed as well as logged: a failure to start is what an
		// operator reads first, and it may span lines (validation).
		fmt.Fprintln(stderr, "p4mesh-controller:", err)
		return 1
	}
	return 0
}

// configStore is what startup opens: a Persistence that decides the
// configuration to start with.
type configStore interface {
	controller.Persistence
	Startup(fromFlag *controller.Config, overrideSaved bool) (controller.StartupResult, error)
}

// openStore opens --store in the data directory: the item store in
// store.db, importing an older p4mesh's config.yaml on its first start, or
// the YAML file. close releases it.
func openStore(o options, log *slog.Logger) (st configStore, path string, close func(), err error) {
	if o.store == "etcd" {
		return openEtcd(o.etcd.leader)
	}
	if o.store == "yaml" {
		y, err := controller.OpenStore(o.dataDir)
		if err != nil {
			return nil, "", nil, fmt.Errorf("--data-dir: %w", err)
		}
		return y, y.Path(), func() {}, nil
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return nil, "", nil, fmt.Errorf("--data-dir: %w", err)
	}
	path = filepath.Join(o.dataDir, "store.db")
	b, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		return nil, "", nil, fmt.Errorf("--data-dir: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	items, err := controller.OpenItemStore(ctx, b)
	if err == nil {
		var from string
		from, err = items.MigrateDataDir(o.dataDir, log.Warn)
		if from != "" && err == nil {
			log.Warn("imported the configuration and peer sides an older p4mesh kept as files into the store, in one commit; the files are renamed *.migrated",
				"from", from, "store", path, "revision", items.Revision())
		}
	}
	if err != nil {
		b.Close()
		return nil, "", nil, fmt.Errorf("--data-dir: %w", err)
	}
	return items, path, func() { b.Close() }, nil
}

// startup opens the data directory and decides the configuration to
// start with.
func startup(o options, log *slog.Logger) (controller.Persistence, func(), error) {
	var fromFlag *controller.Config
	if o.configPath != "" {
		c, err := controller.LoadFile(o.configPath)
		if err != nil {
			return nil, nil, fmt.Errorf("--config: %w", err)
		}
		fromFlag = c
	}
	store, path, closeStore, err := openStore(o, log)
	if err != nil {
		return nil, nil, err
	}
	res, err := store.Startup(fromFlag, o.overrideSaved)
	if err != nil {
		closeStore()
		return nil, nil, err
	}
	if res.SetAside != "" {
		log.Warn("saved configuration unusable: moved aside, starting from --config (--config-overrides-saved)",
			"moved_to", res.SetAside, "err", res.Unloadable)
	}
	if res.Migrated {
		log.Warn("saved configuration had no checksum (an older p4mesh wrote it): accepted and saved again with one", "path", path)
	}
	switch {
	case res.FromSaved && res.Differences != nil:
		log.Warn("configuration: the saved one, which differs from --config: it holds the changes accepted since; --config-overrides-saved would start from --config",
			"path", path, "config", o.configPath, "differences", res.Differences.String())
	case res.FromSaved:
		log.Info("configuration: the saved one", "path", path, "config_flag", o.configPath)
	case res.Differences != nil:
		log.Warn("configuration: from --config (--config-overrides-saved), replacing the saved one and the changes accepted since",
			"config", o.configPath, "path", path, "differences", res.Differences.String())
	default:
		log.Info("configuration: from --config, now saved", "config", o.configPath, "path", path)
	}
	return store, closeStore, nil
}

// serve runs the controller until ctx ends or a server fails.
func serve(ctx context.Context, o options, log *slog.Logger, h hooks) (err error) {
	// With --store etcd, nothing is opened or listened on (but this)
	// until this replica leads its shard; deposed is when it stops.
	var deposed <-chan error
	if o.store == "etcd" {
		rs, err := lead(ctx, o, log)
		if rs == nil {
			return err
		}
		defer rs.close()
		o.etcd.leader, deposed = rs, rs.Deposed()
	}
	store, closeStore, err := startup(o, log)
	if err != nil {
		return err
	}
	// Deferred first, so it runs last: after every server that commits.
	defer closeStore()
	grpcOpts, auth, err := o.tls.Server(o.listen, log)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	// Peer controllers are reached as what they are: a controller of the
	// trust domain (which one, the peer-sides service checks both ways).
	dial, err := o.tls.Dial(mtls.ExpectKind(o.tls.TrustDomain, identity.Controller), log)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	// Tracked so that the gate can close the connection of a client that
	// stopped reading: nothing else frees what gRPC queued for it.
	lis := sendgate.Track(l)
	o.gate.Conns, o.gate.Logger = lis, log
	gate := sendgate.New(o.gate)
	srv, err := controller.NewServer(controller.ServerOptions{
		Store: store, Logger: log, PeerGrace: o.peerGrace, Auth: auth,
		DialOptions: []grpc.DialOption{dial, daemon.ClientKeepalive()},
		Gate:        gate.For,
	})
	if err != nil {
		lis.Close()
		return err
	}
	// One materialised configuration for the start's checks and logs: the
	// Server keeps none (at 1M endpoints it is ~100 MB), and each call
	// after a collection would build it again.
	cfg := srv.Config()
	if o.store == "etcd" && cfg.Controller != o.etcd.leader.shard {
		lis.Close()
		return fmt.Errorf("the configuration in etcd shard %q is controller %q's", o.etcd.leader.shard, cfg.Controller)
	}
	checkAddress(log, cfg, o.advertise, lis.Addr())

	// Watch and Subscribe streams never end by themselves, so a graceful
	// stop would always wait out its grace period. Ending them first
	// (watch clients resume from their revision wherever they reconnect)
	// lets it finish at once while still letting unary RPCs complete.
	streamsCtx, endStreams := context.WithCancel(context.Background())
	defer endStreams()
	grpcOpts = append(grpcOpts, daemon.ServerOptions(o.limits)...)
	gs := grpc.NewServer(append(grpcOpts, grpc.ChainStreamInterceptor(daemon.EndStreamsOn(streamsCtx)))...)
	srv.Register(gs)
	var gnmiAddr net.Addr
	if o.gnmi.addr != "" {
		gg, glis, err := startGNMI(o.gnmi, &o.tls, srv, log, streamsCtx)
		if err != nil {
			lis.Close()
			return err
		}
		gnmiAddr = glis.Addr()
		defer daemon.StopGRPC(gg, shutdownGrace, log)
	}

	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "p4mesh_controller_config_reloads_total",
		Help: "SIGHUP reloads of --config, by result; an error (unreadable, invalid, refused) changed nothing.",
	}, []string{"result"})
	var mlis net.Listener
	var hs *http.Server
	if o.metricsAddr != "" {
		if mlis, err = net.Listen("tcp", o.metricsAddr); err != nil {
			lis.Close()
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(controller.NewCollector(srv), reloads,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "p4mesh_controller_watch_streams_sending",
				Help: "Watch streams in the middle of sending (a snapshot, a catch-up), at most --max-sending-streams; one whose client stopped reading stays until --stall-timeout.",
			}, func() float64 { return float64(gate.Stats().Sending) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "p4mesh_controller_watch_streams_waiting_to_send",
				Help: "Watch streams with something to send waiting for room under --max-sending-streams(-per-peer).",
			}, func() float64 { return float64(gate.Stats().Waiting) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "p4mesh_controller_watch_stalls_total",
				Help: "Watch streams found with a send blocked past --stall-timeout: clients that stopped reading, whose connections were closed.",
			}, func() float64 { return float64(gate.Stats().Stalls) }),
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
		daemon.HandleHealth(mux, func() error { return controllerReady(srv, o.peerGrace) })
		hs = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}
	for _, r := range []string{"ok", "error"} {
		reloads.WithLabelValues(r)
	}

	// Registered before the controller is announced, so that a SIGHUP
	// sent once it is up never hits the default action (exit).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	errc := make(chan error, 3)
	done := make(chan struct{}, 4)
	go func() {
		defer func() { done <- struct{}{} }()
		if err := srv.Run(runCtx); err != nil {
			errc <- fmt.Errorf("follow peer controllers: %w", err)
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		reportPeerings(runCtx, srv, log)
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		gate.Run(runCtx)
	}()
	// The BGP speaker runs while the configuration has a bgp section;
	// stopped, it withdraws what it learned.
	link := bgplink.New(srv, bgplink.Options{Logger: log, ListenAddress: o.bgpListenAddr, ListenPort: o.bgpListenPort})
	go func() {
		defer func() { done <- struct{}{} }()
		_ = link.Run(runCtx)
	}()
	go func() {
		if err := gs.Serve(lis); err != nil {
			errc <- fmt.Errorf("grpc server: %w", err)
		}
	}()
	if hs != nil {
		go func() {
			if err := hs.Serve(mlis); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics server: %w", err)
			}
		}()
	}

	attrs := []any{"controller", cfg.Controller, "listen", lis.Addr().String(), "data_dir", o.dataDir, "mtls", o.tls.TLS()}
	if o.tls.TLS() {
		src, _ := o.tls.Source(log)
		attrs = append(attrs, "identity", src.ID().String())
	}
	var maddr net.Addr
	if mlis != nil {
		maddr = mlis.Addr()
		attrs = append(attrs, "metrics_addr", maddr.String())
	}
	log.Info("p4mesh-controller serving", attrs...)
	logOwned(log, cfg)
	if h.ready != nil {
		h.ready(boundAddrs{grpc: lis.Addr(), metrics: maddr, gnmi: gnmiAddr})
	}

loop:
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping", "cause", context.Cause(ctx))
			break loop
		case err = <-errc:
			break loop
		case err = <-deposed:
			// Stop serving at once: clients must not stay on a
			// replica that no longer leads.
			log.Error("deposed: no longer the shard's leader; stopping, to restart as a standby", "err", err)
			lis.Close()
			break loop
		case <-hup:
			if reload(log, srv, o, lis.Addr()) {
				reloads.WithLabelValues("ok").Inc()
			} else {
				reloads.WithLabelValues("error").Inc()
			}
		}
	}

	stopRun()
	endStreams()
	daemon.StopGRPC(gs, shutdownGrace, log)
	daemon.StopHTTP(hs, shutdownGrace)
	<-done
	<-done
	<-done
	<-done
	return err
}

// controllerReady is the controller's readiness. Its configuration is
// loaded before anything is served, so what remains is whether it serves
// host programming: until every peer controller is heard from or
// --peer-grace passes, OHCs would get peerings it cannot yet vouch for.
func controllerReady(srv *controller.Server, grace time.Duration) error {
	if !srv.Ready() {
		return fmt.Errorf("waiting to hear from every peer controller (at most --peer-grace %s after the start)", grace)
	}
	return nil
}

// reload re-reads --config and applies it, reporting whether it did. On
// any error nothing changes: the running (and saved) configuration stays.
func reload(log *slog.Logger, srv *controller.Server, o options, bound net.Addr) bool {
	if o.configPath == "" {
		log.Warn("SIGHUP: no --config to re-read; configuration unchanged")
		return false
	}
	c, err := controller.LoadFile(o.configPath)
	if err != nil {
		log.Error("SIGHUP: configuration not reloaded; nothing changed", "config", o.configPath, "err", err)
		return false
	}
	// A rename would silently turn this process into another shard of the
	// directory (a wrong file, most likely); that takes a restart.
	old := srv.Config()
	if cur := old.Controller; c.Controller != cur {
		log.Error("SIGHUP: configuration not reloaded; nothing changed", "config", o.configPath,
			"err", fmt.Sprintf("it is controller %q's, this is %q; restart to rename", c.Controller, cur))
		return false
	}
	if old.Equal(c) {
		log.Info("SIGHUP: configuration unchanged", "config", o.configPath)
		return true
	}
	if err := srv.Apply(c); err != nil {
		log.Error("SIGHUP: configuration not reloaded; nothing changed", "config", o.configPath, "err", err)
		return false
	}
	log.Info("SIGHUP: configuration applied", "config", o.configPath)
	checkAddress(log, c, o.advertise, bound)
	logOwned(log, c)
	return true
}

// checkAddress warns when this controller's directory entry names other
// addresses than the one it is reached at (--advertise, else the bound
// --listen address): OHCs and peer controllers dial the directory's
// addresses (every replica's, when the controller is a replica set), so
// with a mismatch nobody reaches this controller.
func checkAddress(log *slog.Logger, cfg *controller.Config, advertise string, bound net.Addr) {
	var entry []string
	for _, e := range cfg.Directory {
		if e.Name == cfg.Controller {
			entry = e.Addresses()
		}
	}
	directory := strings.Join(entry, ",")
	if advertise != "" {
		if !slices.Contains(entry, advertise) {
			log.Warn("--advertise differs from this controller's directory addresses (every replica's): OHCs and peers dial the directory's",
				"advertise", advertise, "directory", directory, "controller", cfg.Controller)
		}
		return
	}
	if !slices.ContainsFunc(entry, func(a string) bool { return sameAddress(bound, a) }) {
		log.Warn("listening on another address than this controller's directory entry: OHCs and peers dial the directory's (use --advertise if it reaches this one)",
			"listen", bound.String(), "directory", directory, "controller", cfg.Controller)
	}
}

// sameAddress reports whether a listener bound at bound serves the
// directory address entry: the same address, or the same port on a
// listener bound to all interfaces.
func sameAddress(bound net.Addr, entry string) bool {
	if bound.String() == entry {
		return true
	}
	tcp, ok := bound.(*net.TCPAddr)
	eh, ep, err := net.SplitHostPort(entry)
	if !ok || err != nil || ep != fmt.Sprint(tcp.Port) {
		return false
	}
	if tcp.IP.IsUnspecified() {
		return true
	}
	ip := net.ParseIP(eh)
	return ip != nil && ip.Equal(tcp.IP)
}

// logOwned logs what the controller owns and serves, one line per kind.
func logOwned(log *slog.Logger, cfg *controller.Config) {
	var vpcs, hosts []string
	for _, v := range cfg.VPCs {
		vpcs = append(vpcs, fmt.Sprintf("%s(vni %d)", v.Name, v.VNI))
	}
	for _, h := range cfg.Hosts {
		hosts = append(hosts, fmt.Sprintf("%s(%d endpoints)", h.ID, len(cfg.EndpointsOnHost(h.ID))))
	}
	log.Info("owns", "controller", cfg.Controller, "vpcs", strings.Join(vpcs, " "),
		"endpoints", len(cfg.Endpoints), "load_balancers", len(cfg.LoadBalancers), "routes", len(cfg.Routes))
	log.Info("programs hosts", "hosts", strings.Join(hosts, " "))
	for _, p := range cfg.Peerings {
		owner, _ := cfg.Owner(p.PeerVPC)
		log.Info("peering configured", "vpc", p.VPC, "peer_vpc", p.PeerVPC, "export_policy", p.ExportPolicy, "peer_controller", owner.Name)
	}
	for _, p := range cfg.GatewayPools {
		health, beat := p.Timeouts()
		log.Info("gateway pool configured", "pool", p.Name, "members", strings.Join(p.Members, ","), "vpcs", strings.Join(p.VPCs, ","),
			"health_timeout", health, "heartbeat", beat, "direct_above_pps", p.DirectAbovePPS, "pool_below_pps", p.PoolBelowPPS)
	}
	log.Info("published services", "count", len(cfg.PublishedServices()))
}

// reportPeerings logs every peering's state once the peer controllers have
// had a moment to answer, then each change, so that an operator sees a
// peering become active, or why it is not, without a tool.
func reportPeerings(ctx context.Context, srv *controller.Server, log *slog.Logger) {
	type key struct{ vpc, peer string }
	var last map[key]controller.PeeringStatus
	timer := time.NewTimer(peeringSettle)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		cur := map[key]controller.PeeringStatus{}
		for _, p := range srv.Peerings() {
			k := key{p.VPC, p.PeerVPC}
			cur[k] = p
			// The load measured moves all the time: what an operator
			// wants to hear of is the state and the mode changing.
			if prev, ok := last[k]; last != nil && ok && prev.Active == p.Active && prev.Reason == p.Reason && prev.Mode == p.Mode {
				continue
			}
			if p.Active {
				log.Info("peering active", "vpc", p.VPC, "peer_vpc", p.PeerVPC, "mode", p.Mode, "mode_reason", p.ModeReason)
			} else {
				log.Info("peering inactive", "vpc", p.VPC, "peer_vpc", p.PeerVPC, "reason", p.Reason)
			}
		}
		last = cur
		timer.Reset(peeringPoll)
	}
}
