// Command p4mesh-ohc is the on-host controller: it pulls from the
// controllers only the connectivity its host needs and programs the host's
// switch over P4Runtime.
//
//	p4mesh-ohc --host h1 --controller 127.0.0.1:7001 --controller 127.0.0.1:7002 \
//	    --switch 127.0.0.1:9559 --device-id 1
//
// A controller that runs as a replica set is one --controller listing
// every replica, joined by commas; the OHC follows whichever one leads:
//
//	p4mesh-ohc --host h1 --controller 10.0.0.1:7001,10.0.0.2:7001,10.0.0.3:7001 ...
//
// --target names the kind of switch (bmv2, p4mesh, tofino for Stratum,
// dpdk for IPDK infrap4d) and --device-config the device config packed
// for it by `p4meshctl pipeline pack`; docs/targets.md says what each
// takes:
//
//	p4mesh-ohc --host h1 --controller ... --target tofino --device-config vpc_peering.tofino.pb.bin
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/internal/daemon"
	"github.com/p4mesh/p4mesh/internal/replicaset"
	"github.com/p4mesh/p4mesh/mtls"
	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

// controllersFlag is the repeatable --controller: one controller each,
// its replica set's addresses joined by commas.
type controllersFlag []string

func (l *controllersFlag) String() string { return strings.Join(*l, " ") }

func (l *controllersFlag) Set(v string) error {
	addrs, err := replicaset.Parse(v)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		for _, other := range *l {
			if slices.Contains(strings.Split(other, ","), a) {
				return fmt.Errorf("%s is already in --controller %s: one flag per controller, naming each of its replicas once", a, other)
			}
		}
	}
	*l = append(*l, replicaset.Join(addrs))
	return nil
}

// budgetFlag is --table-budget, repeatable: table=entries.
type budgetFlag map[string]int

func (b budgetFlag) String() string {
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(b)) {
		parts = append(parts, fmt.Sprintf("%s=%d", n, b[n]))
	}
	return strings.Join(parts, ",")
}

func (b budgetFlag) Set(v string) error {
	name, n, err := ohc.ParseTableBudget(v)
	if err != nil {
		return err
	}
	if _, dup := b[name]; dup {
		return fmt.Errorf("--table-budget %s given twice", name)
	}
	b[name] = n
	return nil
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("p4mesh-ohc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o ohc.DaemonOptions
	var controllers controllersFlag
	fs.StringVar(&o.Host, "host", "", "this host's id, as the controllers know it (required)")
	fs.Var(&controllers, "controller", "address of a controller of the directory, or of each of its replicas joined by commas when it runs as a replica set (repeatable, once per controller; at least one)")
	fs.StringVar(&o.Switch, "switch", "127.0.0.1:9559", "P4Runtime address of this host's switch")
	fs.Uint64Var(&o.DeviceID, "device-id", 1, "P4Runtime device id of the switch (never 0)")
	fs.Uint64Var(&o.ElectionID, "election-id", 0, "P4Runtime election id: the switch makes the highest primary (0: the start time in Unix nanoseconds, so that a restarted OHC takes the switch back)")
	target := fs.String("target", "", "the kind of switch: "+strings.Join(p4rt.TargetNames(), ", ")+
		" (default: bmv2 with --device-config, p4mesh without). It says what --device-config must be and what the "+
		"switch can take (port width, CPU port, table sizes, one-shot selectors); see docs/targets.md")
	devConfig := fs.String("device-config", "", "the device config `FILE` the pipeline push carries, as 'p4meshctl pipeline pack --target T' "+
		"writes it (for bmv2, p4c-bm2-ss's JSON as is); none for p4mesh-switch")
	fs.DurationVar(&o.SourceGrace, "source-grace", ohc.DefaultSourceGrace,
		"how long a controller's stream may stay unsynced before it is reported down (a warning, and the "+
			"p4mesh_ohc_sources_unsynced_past_grace metric). Programming never waits for it, and the switch "+
			"keeps what it holds for it, before the grace and after, until it syncs")
	budgets := budgetFlag{}
	fs.Var(budgets, "table-budget", "`table=entries`: hold at most that many entries in the table, below its P4Info size "+
		"(repeatable, once per table). vnet_destination's is the room for pool-mode peers' promoted destinations: "+
		"required entries first, promoted ones (least recently used out first) in what is left")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus /metrics, /healthz and /readyz (ready: primary on the switch, which holds a whole view of every source) on this address (off when empty)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	var tlsFlags mtls.Flags
	tlsFlags.Register(fs, "its channels to the controllers and the switch")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := tlsFlags.Check(); err != nil {
		fmt.Fprintln(stderr, "p4mesh-ohc:", err)
		return 2
	}
	o.Controllers = controllers
	if o.SourceGrace <= 0 {
		fmt.Fprintln(stderr, "p4mesh-ohc: --source-grace must be positive")
		return 2
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintln(stderr, "p4mesh-ohc: --log-level:", err)
		return 2
	}
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	if err := dialOptions(&o, &tlsFlags); err != nil {
		fmt.Fprintln(stderr, "p4mesh-ohc:", err)
		return 2
	}
	info, caps, cfg, err := targetConfig(*target, *devConfig)
	if err != nil {
		fmt.Fprintln(stderr, "p4mesh-ohc:", err)
		return 2
	}
	o.P4Info, o.DeviceConfig, o.Capabilities = info, cfg, caps
	if err := ohc.CheckTableBudgets(info, budgets); err != nil {
		fmt.Fprintln(stderr, "p4mesh-ohc: --table-budget:", err)
		return 2
	}
	o.TableBudget = budgets
	// The compiler reads the ports it may write from the P4Info (ohc's
	// checkPorts) and programs selectors with members and groups, which
	// every target takes, so caps.OneShotSelectors changes nothing; the
	// programmer refuses a view over caps' table sizes before writing.
	o.Logger.Info("target", "target", caps.Target, "arch", caps.Arch, "port_bits", caps.PortBits,
		"port_translation", caps.PortTranslation, "cpu_port", cpuPortAttr(caps), "one_shot_selectors", caps.OneShotSelectors)
	var srv *http.Server
	ready := func(prog *ohc.Programmer, client *p4rt.Client, agent *ohc.Agent) {
		if *metricsAddr == "" {
			return
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(ohc.NewCollector(prog, client, agent))
		reg.MustRegister(ohc.NewDemandCollector(prog))
		lis, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			o.Logger.Error("metrics not served", "addr", *metricsAddr, "err", err)
			return
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		daemon.HandleHealth(mux, func() error { return ohcReady(prog, client, agent) })
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(lis)
		o.Logger.Info("metrics", "addr", lis.Addr().String())
	}
	err = ohc.RunDaemon(ctx, o, ready)
	if srv != nil {
		srv.Close()
	}
	if err != nil {
		fmt.Fprintln(stderr, "p4mesh-ohc:", err)
		if errors.Is(err, ohc.ErrUsage) {
			return 2
		}
		return 1
	}
	return 0
}

// ohcReady is the OHC's readiness: it is primary on its switch, and the
// switch holds a whole view, every source (its controllers' host
// programming, each pulled service) synced. Until then the switch may
// forward with entries of an earlier run or without some peers'. A
// controller that goes away after a sync does not make the OHC unready:
// its streams resume from their revision and the switch holds what they
// said; a source is unsynced again only when a controller resets it.
func ohcReady(prog *ohc.Programmer, client *p4rt.Client, agent *ohc.Agent) error {
	if !client.IsPrimary() {
		return errors.New("not the primary controller of its switch")
	}
	st := prog.Stats()
	switch {
	case st.Applied == 0:
		return errors.New("nothing programmed yet: waiting for its controller's host programming")
	case st.LastError != nil:
		return fmt.Errorf("the last programming of the switch failed: %w", st.LastError)
	case len(st.Missing) > 0:
		return fmt.Errorf("programmed without sources not synced yet: %s", strings.Join(st.Missing, ", "))
	}
	if n := agent.Stats().Unsynced; n > 0 {
		return fmt.Errorf("%d sources not synced", n)
	}
	return nil
}

// dialOptions sets how the OHC reaches its controllers and its switch. With
// mutual TLS the OHC is its host: its certificate must say so, the
// controllers must be controllers of the trust domain, and the switch
// must present the same host's identity (it is part of the host).
func dialOptions(o *ohc.DaemonOptions, f *mtls.Flags) error {
	var ctl, sw mtls.Expect
	if f.TLS() {
		src, err := f.Source(o.Logger)
		if err != nil {
			return err
		}
		want, err := identity.New(f.TrustDomain, identity.Host, o.Host)
		if err != nil {
			return fmt.Errorf("--host: %w", err)
		}
		if src.ID() != want {
			return fmt.Errorf("--tls-cert is %s, but this OHC is --host %s (%s)", src.ID(), o.Host, want)
		}
		ctl, sw = mtls.ExpectKind(f.TrustDomain, identity.Controller), mtls.ExpectID(want)
	} else if f.Insecure {
		o.Logger.Warn("--insecure: the controllers and the switch are reached in plaintext, unauthenticated")
	}
	cd, err := f.Dial(ctl, o.Logger)
	if err != nil {
		return err
	}
	sd, err := f.Dial(sw, o.Logger)
	if err != nil {
		return err
	}
	o.ControllerDial = []grpc.DialOption{cd, daemon.ClientKeepalive()}
	o.SwitchDial = []grpc.DialOption{sd, daemon.ClientKeepalive()}
	return nil
}

// targetConfig resolves --target and --device-config: the embedded
// pipeline of the target's architecture (p4/v1model, p4/tna or p4/pna), the
// target's capabilities for it, and the device config, checked to be the
// target's and of that pipeline before any switch sees it. The config is
// packed ahead (p4meshctl pipeline pack) rather than here from the
// compiler's output directory: one file, built once, is what every host of
// a fleet pushes, and a host needs no compiler output tree.
func targetConfig(target, devConfig string) (*p4configv1.P4Info, *p4rt.Capabilities, []byte, error) {
	if target == "" {
		// Before --target, a --device-config was BMv2's JSON and its
		// absence meant p4mesh-switch; keep meaning that.
		target = "p4mesh"
		if devConfig != "" {
			target = "bmv2"
		}
	}
	tp, err := p4rt.LookupTarget(target)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--target: %w", err)
	}
	arch := ""
	for _, a := range tp.Archs {
		if slices.Contains(p4.Archs(), a) {
			arch = a
			break
		}
	}
	if arch == "" {
		return nil, nil, nil, fmt.Errorf("--target %s: p4mesh has no %s program", target, strings.Join(tp.Archs, " or "))
	}
	info, err := p4.P4InfoFor(arch)
	if err != nil {
		return nil, nil, nil, err
	}
	caps, err := tp.Capabilities(info)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--target %s: the embedded %s pipeline does not run there: %w", target, arch, err)
	}
	if tp.CheckDeviceConfig == nil {
		if devConfig != "" {
			return nil, nil, nil, fmt.Errorf("--target %s: %s takes no --device-config", target, tp.Server)
		}
		return info, caps, nil, nil
	}
	if devConfig == "" {
		return nil, nil, nil, fmt.Errorf("--target %s: %s needs --device-config (p4meshctl pipeline pack --target %s)", target, tp.Server, target)
	}
	b, err := os.ReadFile(devConfig)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--device-config: %w", err)
	}
	if err := tp.CheckDeviceConfig(b, info); err != nil {
		return nil, nil, nil, fmt.Errorf("--device-config %s is no %s device config for p4/%s: %w", devConfig, target, arch, err)
	}
	return info, caps, b, nil
}

func cpuPortAttr(c *p4rt.Capabilities) any {
	if !c.HasCPUPort {
		return "unknown"
	}
	return c.CPUPort
}
