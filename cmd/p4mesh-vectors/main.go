// Command p4mesh-vectors plays p4mesh's packet vectors against any P4Runtime
// target whose ports are Linux interfaces: p4mesh-switch, or BMv2's
// simple_switch_grpc running vpc_peering.p4. It programs the target over
// gRPC and injects and captures frames with AF_PACKET on the far ends of
// the target's links (the other ends of veth pairs).
//
//	p4mesh-vectors --target 127.0.0.1:9559 --device-id 1 \
//	    --device-config p4/v1model/build/vpc_peering.json \
//	    --port 1=veth1 --port 2=veth3 --port 3=veth5 --port 4=veth7
//
// The vectors are written for p4/v1model in BMv2's port numbering. Against
// a Tofino (Stratum) or P4-DPDK (infrap4d) target, --arch tna|pna pushes
// that architecture's program and plays the same behaviour in the
// target's port numbering: --port-map V=T takes the vectors' port V to the
// target's port T, in every update, frame, packet-out and packet-in
// (vectors.Case.Retarget); --port then names the target's ports:
//
//	p4mesh-vectors --arch tna --target SWITCH:9559 --device-config vpc_peering.tofino.pb.bin \
//	    --port-map 1=101 --port-map 2=102 --port 101=eth1 --port 102=eth2
//
// A case the target's pipeline cannot run (a digest on PNA) is skipped and
// said so.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"

	"github.com/p4mesh/p4mesh/dataplane/afpacket"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
	"github.com/p4mesh/p4mesh/test/vectors"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// portFlags collects repeated --port N=IFNAME.
type portFlags map[uint16]string

func (p portFlags) String() string { return fmt.Sprint(map[uint16]string(p)) }

func (p portFlags) Set(v string) error {
	n, ifname, ok := strings.Cut(v, "=")
	port, err := strconv.ParseUint(n, 10, 16)
	if !ok || err != nil || ifname == "" {
		return fmt.Errorf("want N=IFNAME with N a port number, got %q", v)
	}
	p[uint16(port)] = ifname
	return nil
}

// portMapFlags collects repeated --port-map V=T.
type portMapFlags vectors.PortMap

func (p portMapFlags) String() string { return fmt.Sprint(map[uint16]uint16(p)) }

func (p portMapFlags) Set(v string) error {
	a, b, ok := strings.Cut(v, "=")
	from, err1 := strconv.ParseUint(a, 10, 16)
	to, err2 := strconv.ParseUint(b, 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("want V=T with V a vectors' port and T the target's, got %q", v)
	}
	if _, dup := p[uint16(from)]; dup {
		return fmt.Errorf("port %d is mapped twice", from)
	}
	p[uint16(from)] = uint16(to)
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("p4mesh-vectors", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "127.0.0.1:9559", "P4Runtime address of the switch")
	device := fs.Uint64("device-id", 1, "P4Runtime device id (never 0)")
	election := fs.Uint64("election-id", 1, "election id to become primary with")
	devConfig := fs.String("device-config", "", "device config to push with the P4Info (BMv2: p4c's JSON, p4/v1model/build/vpc_peering.json); empty for p4mesh-switch")
	dir := fs.String("dir", "test/vectors/testdata", "directory of vector files")
	only := fs.String("run", "", "run only the cases whose name matches this regexp")
	netns := fs.String("netns", "", "network namespace the --port interfaces are in (default: this one)")
	settle := fs.Duration("settle", 150*time.Millisecond, "how long to wait for frames that must not come")
	ports := portFlags{}
	fs.Var(ports, "port", "P4 port to interface, N=IFNAME: the far end of the link to switch port N (repeatable)")
	arch := fs.String("arch", p4.V1Model, "the program to push and play the vectors on: "+strings.Join(p4.Archs(), ", ")+
		" (tna for Tofino under Stratum, pna for P4-DPDK under infrap4d)")
	portMap := portMapFlags{}
	fs.Var(portMap, "port-map", "V=T: the vectors' port V is the target's port T (repeatable; unnamed ports stay)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := play(ctx, config{addr: *target, device: *device, election: *election, devConfig: *devConfig,
		dir: *dir, only: *only, netns: *netns, settle: *settle, ports: ports, arch: *arch,
		portMap: vectors.PortMap(portMap), log: log}, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "p4mesh-vectors:", err)
		return 1
	}
	return 0
}

type config struct {
	addr             string
	device, election uint64
	devConfig, dir   string
	only, netns      string
	settle           time.Duration
	ports            portFlags
	arch             string
	portMap          vectors.PortMap
	log              *slog.Logger
}

// retarget loads the cases and takes them to the architecture's program
// and the target's ports; the cases it cannot run are named in skipped.
func retarget(cfg config) (cases []*vectors.Case, info *p4configv1.P4Info, skipped []string, err error) {
	cases, err = vectors.Load(cfg.dir)
	if err != nil {
		return nil, nil, nil, err
	}
	if info, err = p4.P4InfoFor(cfg.arch); err != nil {
		return nil, nil, nil, fmt.Errorf("--arch: %w", err)
	}
	if cfg.arch == p4.V1Model && len(cfg.portMap) == 0 {
		return cases, info, nil, nil
	}
	from, err := p4.P4InfoFor(p4.V1Model)
	if err != nil {
		return nil, nil, nil, err
	}
	var out []*vectors.Case
	for _, c := range cases {
		r, err := c.Retarget(from, info, cfg.portMap)
		if errors.Is(err, vectors.ErrNotOnTarget) {
			skipped = append(skipped, err.Error())
			continue
		}
		if err != nil {
			return nil, nil, nil, err
		}
		out = append(out, r)
	}
	return out, info, skipped, nil
}

func play(ctx context.Context, cfg config, stdout io.Writer) error {
	match, err := regexp.Compile(cfg.only)
	if err != nil {
		return fmt.Errorf("--run: %w", err)
	}
	cases, info, skipped, err := retarget(cfg)
	if err != nil {
		return err
	}
	for _, s := range skipped {
		fmt.Fprintf(stdout, "skip %s\n", s)
	}
	var dev []byte
	if cfg.devConfig != "" {
		if dev, err = os.ReadFile(cfg.devConfig); err != nil {
			return fmt.Errorf("--device-config: %w", err)
		}
	}
	if len(cfg.ports) == 0 {
		return errors.New("no --port given: the runner needs the interfaces facing the switch's ports")
	}
	io := map[uint16]vectors.PortIO{}
	for n, ifname := range cfg.ports {
		var p *afpacket.Port
		if cfg.netns != "" {
			p, err = afpacket.OpenNetns(cfg.netns, ifname)
		} else {
			p, err = afpacket.Open(ifname)
		}
		if err != nil {
			return fmt.Errorf("port %d: %w", n, err)
		}
		defer p.Close()
		io[n] = vectors.NewPortIO(p)
	}

	c, err := p4rt.New(p4rt.Config{Addr: cfg.addr, DeviceID: cfg.device, ElectionID: p4rt.ElectionID{Low: cfg.election}, Logger: cfg.log})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	defer wcancel()
	if err := c.WaitPrimary(wctx); err != nil {
		if last := c.LastError(); last != nil {
			err = last
		}
		return fmt.Errorf("not primary on %s: %w", cfg.addr, err)
	}

	t := &vectors.Target{Client: c, P4Info: info, DeviceConfig: dev, Ports: io, Settle: cfg.settle}
	failed, ran := 0, 0
	for _, vc := range cases {
		if !match.MatchString(vc.Name) {
			continue
		}
		ran++
		start := time.Now()
		if err := vectors.Run(ctx, t, vc); err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL %s (%s)\n%v\n", vc.Name, time.Since(start).Round(time.Millisecond), err)
			continue
		}
		fmt.Fprintf(stdout, "ok   %s (%d steps, %s)\n", vc.Name, len(vc.Steps), time.Since(start).Round(time.Millisecond))
	}
	if ran == 0 {
		return fmt.Errorf("no case matches --run %q", cfg.only)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d cases failed", failed, ran)
	}
	fmt.Fprintf(stdout, "all %d cases passed\n", ran)
	return nil
}
