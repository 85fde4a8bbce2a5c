// Command p4meshctl is p4mesh's operator CLI. It works with the pipeline the
// binary carries: `pipeline show` lists its tables and actions as the switch
// sees them, `pipeline push` loads it onto a P4Runtime switch (BMv2's
// simple_switch_grpc, or any target p4rt packs a device config for), and
// `pipeline pack` packs a compiler's outputs into the device config of a
// BMv2, Tofino (Stratum) or P4-DPDK (IPDK) switch. `demo`
// runs the demo topology (package demo) and checks what it should do.
// `get`, `set`, `subscribe` and `apply -f FILE` configure and observe a
// controller over gNMI (gnmi.go).
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
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "p4meshctl:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New(`usage: p4meshctl pipeline show | pipeline push [flags] | demo [--keep] [--in-memory] [--log-level L] | demo --write DIR [--controller-addrs A,B | --config FILE ...]
       p4meshctl pipeline pack --target bmv2|tofino|dpdk --in PATH --out FILE [--p4info FILE]   (--help: each target's inputs)
       p4meshctl get [gnmi flags] [--encoding json_ietf|json] PATH...
       p4meshctl set [gnmi flags] [--delete PATH] [--replace PATH=JSON] [--update PATH=JSON]...
       p4meshctl subscribe [gnmi flags] [--mode once|poll|stream] [--stream-mode on_change|sample] [--sample-interval D] PATH...
       p4meshctl apply [gnmi flags] -f FILE.yaml
       p4meshctl pki init | issue KIND/NAME... | lab --config C.yaml...   (a lab CA and certificates; see docs/security.md)
   gnmi flags: --target host:port (default 127.0.0.1:57400) --insecure | --tls-ca F [--tls-cert F --tls-key F] --timeout D
   values are JSON: a string is '"text"'`)

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) >= 1 {
		switch args[0] {
		case "demo":
			return demoCmd(ctx, args[1:], stdout, stderr)
		case "get":
			return getCmd(ctx, args[1:], stdout, stderr)
		case "set":
			return setCmd(ctx, args[1:], stdout, stderr)
		case "subscribe":
			return subscribeCmd(ctx, args[1:], stdout, stderr)
		case "apply":
			return applyCmd(ctx, args[1:], stdout, stderr)
		case "pki":
			return pkiCmd(ctx, args[1:], stdout, stderr)
		}
	}
	if len(args) < 2 || args[0] != "pipeline" {
		return errUsage
	}
	switch args[1] {
	case "show":
		return pipelineShow(stdout)
	case "push":
		return pipelinePush(ctx, args[2:], stdout, stderr)
	case "pack":
		return pipelinePack(args[2:], stdout, stderr)
	}
	return errUsage
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}
