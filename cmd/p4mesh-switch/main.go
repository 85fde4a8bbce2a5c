// Command p4mesh-switch is p4mesh's software P4 target: a P4Runtime server
// in front of the Go implementation of vpc_peering.p4, forwarding frames
// between Linux interfaces (AF_PACKET) or in-memory ports. It stands where
// BMv2's simple_switch_grpc would, with the same defaults (P4Runtime on
// 127.0.0.1:9559, CPU port 255) and, like simple_switch_grpc --no-p4, it
// starts with no pipeline: the controller pushes vpc_peering.p4's P4Info,
// and only a P4Info compatible with the pipeline built into the binary is
// accepted.
//
// Interface ports read from a PACKET_MMAP ring and send in sendmmsg batches
// (--port-mode mmap, the default) or make a socket call per frame
// (--port-mode afpacket); either way the pipeline sees the frames that were
// on the wire (VLAN tags restored, checksums completed, super-frames cut:
// see dataplane/afpacket). --port-mode xdp binds an AF_XDP socket and an
// XDP program instead (dataplane/xsk), zero-copy where the driver can, and
// falls back to mmap, with a warning naming the interface and the reason,
// where the kernel, the driver or the interface's queues do not allow it.
//
//	p4mesh-switch --device-id 1 --port 1=veth-vm1 --port 2=eth1 --metrics-addr 127.0.0.1:9560
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
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/internal/daemon"
	"github.com/p4mesh/p4mesh/mtls"
	"github.com/p4mesh/p4mesh/p4"
)

// cpuPort is CPU_PORT of vpc_peering.p4, fixed at compile time.
const cpuPort = 255

// shutdownGrace is how long a stop waits for unary RPCs (a Write, a
// pipeline push) to end before cutting them. StreamChannels never end by
// themselves; they are ended first, so an idle switch stops at once.
const shutdownGrace = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr, hooks{})
	stop()
	os.Exit(code)
}

// hooks let a test watch a running switch.
type hooks struct {
	// ready, if set, is called once the switch serves, with the addresses
	// actually bound (a ":0" port resolved); metrics is nil when off.
	ready func(grpcAddr, metricsAddr net.Addr)
}

// config is the parsed command line.
type config struct {
	grpcAddr    string
	deviceID    uint64
	ports       map[uint16]string // P4 port -> interface
	portMode    string            // how interface ports read and send: mmap, afpacket or xdp
	memPorts    []uint16
	logLevel    slog.Level
	metricsAddr string
	tls         mtls.Flags
	// host, with mutual TLS, is the only host identity allowed in: the
	// host this switch belongs to, whose OHC programs it.
	host   string
	limits daemon.Limits
}

// errUsage marks command-line errors, which exit with status 2.
var errUsage = errors.New("invalid command line")

// run is the whole command; it returns the exit status: 0 after a clean
// stop (cancellation is not an error), 2 for a bad command line, 1 when the
// switch cannot start or fails.
func run(ctx context.Context, args []string, stderr io.Writer, h hooks) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "p4mesh-switch:", err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel}))
	if err := serve(ctx, cfg, log, h); err != nil {
		log.Error("p4mesh-switch failed", "err", err)
		return 1
	}
	return 0
}

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

// portFlag collects repeated --port N=IFNAME.
type portFlag map[uint16]string

func (p portFlag) String() string {
	var s []string
	for n, ifname := range p {
		s = append(s, fmt.Sprintf("%d=%s", n, ifname))
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

func (p portFlag) Set(v string) error {
	num, ifname, ok := strings.Cut(v, "=")
	if !ok || ifname == "" {
		return fmt.Errorf("%q: want N=IFNAME, e.g. 1=veth0", v)
	}
	n, err := parsePort(num)
	if err != nil {
		return err
	}
	if _, dup := p[n]; dup {
		return fmt.Errorf("port %d given twice", n)
	}
	p[n] = ifname
	return nil
}

// parsePort parses a P4 port number: 1..510 (9 bits, 511 is BMv2's drop
// port, 0 is not a port), not the CPU port.
func parsePort(s string) (uint16, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || v == 0 || v > 510 {
		return 0, fmt.Errorf("port %q: P4 ports are 1..510", s)
	}
	if v == cpuPort {
		return 0, fmt.Errorf("port %d is the CPU port", v)
	}
	return uint16(v), nil
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("p4mesh-switch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ports := portFlag{}
	cfg := config{}
	fs.StringVar(&cfg.grpcAddr, "grpc-addr", "127.0.0.1:9559", "P4Runtime listen address (host:port; port 0 picks one and logs it)")
	fs.Uint64Var(&cfg.deviceID, "device-id", 1, "P4Runtime device id (not 0, which P4Runtime 1.5 reserves)")
	fs.Var(ports, "port", "P4 port bound to a Linux interface with AF_PACKET, N=IFNAME (repeatable)")
	fs.StringVar(&cfg.portMode, "port-mode", portModeMmap, "how --port interfaces read and send frames: mmap (a PACKET_MMAP ring, sendmmsg batches; falls back to afpacket where the kernel refuses a ring), afpacket (a socket call per frame) or xdp (an AF_XDP socket on queue 0 and an XDP program; falls back to mmap where attach or bind fails)")
	memPorts := fs.String("mem-ports", "", "comma-separated P4 ports backed by in-memory queues (demo without root)")
	cpu := fs.Uint("cpu-port", cpuPort, "CPU port; vpc_peering.p4 fixes it at 255")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&cfg.metricsAddr, "metrics-addr", "", "Prometheus /metrics, /healthz and /readyz (ready: a pipeline is loaded) listen address, e.g. 127.0.0.1:9560 (empty: off)")
	cfg.tls.Register(fs, "P4Runtime")
	fs.StringVar(&cfg.host, "host", "", "with mutual TLS, the host this switch belongs to: only its OHC (spiffe://<trust-domain>/host/<host>) and operators may connect; default: the host of --tls-cert's identity")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return cfg, usageErr("unexpected arguments %q", fs.Args())
	}
	if cfg.deviceID == 0 {
		return cfg, usageErr("--device-id 0: P4Runtime 1.5 reserves device id 0; use 1 or higher")
	}
	if *cpu != cpuPort {
		return cfg, usageErr("--cpu-port %d: vpc_peering.p4 defines CPU_PORT as 255, so only 255 is accepted", *cpu)
	}
	if err := cfg.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return cfg, usageErr("--log-level %q: %v", *level, err)
	}
	switch cfg.portMode {
	case portModeMmap, portModeAFPacket, portModeXDP:
	default:
		return cfg, usageErr("--port-mode %q: want mmap, afpacket or xdp", cfg.portMode)
	}
	cfg.ports = ports
	if *memPorts != "" {
		for s := range strings.SplitSeq(*memPorts, ",") {
			n, err := parsePort(s)
			if err != nil {
				return cfg, usageErr("--mem-ports: %v", err)
			}
			if _, dup := ports[n]; dup || slices.Contains(cfg.memPorts, n) {
				return cfg, usageErr("--mem-ports: port %d given twice", n)
			}
			cfg.memPorts = append(cfg.memPorts, n)
		}
	}
	if err := cfg.tls.Check(); err != nil {
		return cfg, usageErr("%v", err)
	}
	if err := cfg.tls.CheckListen(cfg.grpcAddr); err != nil {
		return cfg, usageErr("--grpc-addr %v", err)
	}
	if cfg.host != "" && !cfg.tls.TLS() {
		return cfg, usageErr("--host restricts who may connect by certificate: it needs --tls-cert, --tls-key and --tls-ca")
	}
	return cfg, nil
}

// serverOptions are the P4Runtime server's credentials, limits and, with
// mutual TLS, who may connect: the OHC of this switch's host, and
// operators (p4meshctl pipeline). Any other certificate of the deployment
// (another host's OHC, a controller) is refused, so that nobody else can
// arbitrate and take the switch from its OHC.
func serverOptions(cfg config, log *slog.Logger) ([]grpc.ServerOption, error) {
	opts, auth, err := cfg.tls.Server(cfg.grpcAddr, log)
	if err != nil {
		return nil, fmt.Errorf("--grpc-addr: %w", err)
	}
	opts = append(opts, daemon.ServerOptions(cfg.limits)...)
	if auth.Insecure {
		return opts, nil
	}
	host := cfg.host
	if host == "" {
		src, err := cfg.tls.Source(log)
		if err != nil {
			return nil, err
		}
		if id := src.ID(); id.Kind == identity.Host {
			host = id.Name
		} else {
			return nil, usageErr("--tls-cert is %s: a switch presents its host's identity (host/<id>), or name the host with --host", id)
		}
	}
	allow := func(id identity.ID) error {
		if id.Kind == identity.Operator || (id.Kind == identity.Host && id.Name == host) {
			return nil
		}
		return fmt.Errorf("%s may not program this switch: it belongs to host %s", id, host)
	}
	unary, stream := identity.Interceptors(auth, allow)
	return append(opts, grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream)), nil
}

// switchReady is the switch's readiness: it forwards nothing until a
// controller has committed a pipeline, which it loses only with the
// process.
func switchReady(sw *dataplane.Switch) error {
	if sw.Pipeline() == nil {
		return errors.New("no pipeline: waiting for a controller (the OHC) to push one")
	}
	return nil
}

// serve runs the switch until ctx ends or a server fails.
func serve(ctx context.Context, cfg config, log *slog.Logger, h hooks) (err error) {
	info, err := p4.P4Info()
	if err != nil {
		return err
	}
	opts, err := serverOptions(cfg, log)
	if err != nil {
		return err
	}
	ports := map[uint16]dataplane.Port{}
	closeAll := func() {
		for _, p := range ports {
			p.Close()
		}
	}
	modes := map[uint16]string{}
	for n, ifname := range cfg.ports {
		p, mode, err := openPort(ifname, cfg.portMode, log.With("port", n, "interface", ifname))
		if err != nil {
			closeAll()
			return fmt.Errorf("port %d: %w", n, err)
		}
		ports[n], modes[n] = p, mode
	}
	for _, n := range cfg.memPorts {
		ports[n] = dataplane.NewMemPort(1024)
	}
	sw, err := dataplane.NewSwitch(dataplane.SwitchOptions{
		Server: dataplane.Options{DeviceID: cfg.deviceID, P4Info: info, Logger: log},
		Ports:  ports,
	})
	if err != nil {
		closeAll()
		return err
	}

	lis, err := net.Listen("tcp", cfg.grpcAddr)
	if err != nil {
		closeAll()
		return fmt.Errorf("--grpc-addr: %w", err)
	}
	// A stop ends the controllers' StreamChannels first (they reconnect
	// and re-arbitrate with whichever switch comes up), so that the
	// graceful stop waits only for Writes in flight.
	streamsCtx, endStreams := context.WithCancel(context.Background())
	defer endStreams()
	opts = append(opts, grpc.ChainStreamInterceptor(daemon.EndStreamsOn(streamsCtx)))
	gs := dataplane.NewGRPCServer(opts...)
	sw.Server().Register(gs)

	var mlis net.Listener
	var hs *http.Server
	if cfg.metricsAddr != "" {
		if mlis, err = net.Listen("tcp", cfg.metricsAddr); err != nil {
			lis.Close()
			closeAll()
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(dataplane.NewCollector(sw),
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
		daemon.HandleHealth(mux, func() error { return switchReady(sw) })
		hs = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}

	// The switch's ports run until runCtx ends; Run closes them.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	swDone := make(chan struct{})
	go func() {
		defer close(swDone)
		sw.Run(runCtx)
	}()
	go func() {
		if err := gs.Serve(lis); err != nil {
			errc <- fmt.Errorf("p4runtime server: %w", err)
		}
	}()
	if hs != nil {
		go func() {
			if err := hs.Serve(mlis); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics server: %w", err)
			}
		}()
	}

	attrs := []any{"grpc_addr", lis.Addr().String(), "device_id", cfg.deviceID, "cpu_port", cpuPort, "mtls", cfg.tls.TLS()}
	for _, n := range sw.Ports() {
		if ifname, ok := cfg.ports[n]; ok {
			attrs = append(attrs, "port_"+strconv.Itoa(int(n)), ifname+" ("+modes[n]+")")
		} else {
			attrs = append(attrs, "port_"+strconv.Itoa(int(n)), "memory")
		}
	}
	var maddr net.Addr
	if mlis != nil {
		maddr = mlis.Addr()
		attrs = append(attrs, "metrics_addr", maddr.String())
	}
	log.Info("p4mesh-switch serving; waiting for a controller to push the pipeline", attrs...)
	if h.ready != nil {
		h.ready(lis.Addr(), maddr)
	}

	select {
	case <-ctx.Done():
		log.Info("stopping", "cause", context.Cause(ctx))
	case err = <-errc:
	}
	cancel()
	endStreams()
	daemon.StopGRPC(gs, shutdownGrace, log)
	daemon.StopHTTP(hs, shutdownGrace)
	<-swDone
	return err
}
