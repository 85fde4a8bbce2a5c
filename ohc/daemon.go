package ohc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

// DaemonOptions is everything an OHC runs with: p4mesh-ohc builds it from
// flags, tests and the demo build it directly.
type DaemonOptions struct {
	Host        string
	Controllers []string
	Switch      string
	DeviceID    uint64
	ElectionID  uint64
	// DeviceConfig is what the pipeline push carries: BMv2's JSON, nothing
	// for p4mesh-switch.
	DeviceConfig []byte
	Logger       *slog.Logger
	// ControllerDial and SwitchDial reach the controllers and the switch
	// (mutual TLS, keepalive); nil means plaintext.
	ControllerDial, SwitchDial []grpc.DialOption
	// SourceGrace is AgentOptions.SourceGrace: how long a source may stay
	// unsynced before it is reported down (0: DefaultSourceGrace).
	SourceGrace time.Duration
}

// ErrUsage marks a DaemonOptions error: the daemon was asked for something
// it cannot do.
var ErrUsage = errors.New("usage")

// RunDaemon runs an OHC until ctx ends: a P4Runtime client to the switch,
// the programmer and the agent. ready, if not nil, is called with the
// programmer, client and agent once they exist (for metrics).
func RunDaemon(ctx context.Context, o DaemonOptions, ready func(*Programmer, *p4rt.Client, *Agent)) error {
	switch {
	case o.Host == "":
		return fmt.Errorf("%w: --host is required", ErrUsage)
	case len(o.Controllers) == 0:
		return fmt.Errorf("%w: give at least one --controller", ErrUsage)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	log := o.Logger.With("host", o.Host)
	info, err := p4.P4Info()
	if err != nil {
		return err
	}
	client, err := p4rt.New(p4rt.Config{Addr: o.Switch, DeviceID: o.DeviceID, ElectionID: p4rt.ElectionID{Low: o.ElectionID}, Logger: log, DialOptions: o.SwitchDial})
	if err != nil {
		return err
	}
	prog, err := NewProgrammer(ProgrammerOptions{Client: client, P4Info: info, DeviceConfig: o.DeviceConfig, Logger: log})
	if err != nil {
		return err
	}
	agent, err := NewAgent(AgentOptions{Host: o.Host, Controllers: o.Controllers, Programmer: prog, Logger: log, DialOptions: o.ControllerDial, SourceGrace: o.SourceGrace})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	report := func(ctx context.Context) error { return agent.Report(ctx, prog) }
	for _, f := range []func(context.Context) error{client.Run, prog.Run, agent.Run, report} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				log.Error("stopped", "err", err)
				cancel()
			}
		}()
	}
	if ready != nil {
		ready(prog, client, agent)
	}
	log.Info("on-host controller started", "switch", o.Switch, "controllers", o.Controllers)
	<-ctx.Done()
	wg.Wait()
	return nil
}
