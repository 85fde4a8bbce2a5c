package ohc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
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
	// ElectionID is the OHC's election id on its switch; 0 means
	// ElectionIDAt the start, so that a restarted OHC takes the switch
	// back.
	ElectionID uint64
	// P4Info is the pipeline the switch runs: the embedded program of the
	// target's architecture (p4.P4InfoFor); nil is the v1model program.
	P4Info *p4configv1.P4Info
	// DeviceConfig is what the pipeline push carries: BMv2's JSON,
	// Stratum's or IPDK's packed config, nothing for p4mesh-switch.
	DeviceConfig []byte
	// Capabilities are the target's (p4rt.LookupTarget): the table sizes
	// views are checked against before writing. nil: P4Info's.
	Capabilities *p4rt.Capabilities

	Logger *slog.Logger
	// ControllerDial and SwitchDial reach the controllers and the switch
	// (mutual TLS, keepalive); nil means plaintext.
	ControllerDial, SwitchDial []grpc.DialOption
	// SourceGrace is AgentOptions.SourceGrace: how long a source may stay
	// unsynced before it is reported down (0: DefaultSourceGrace).
	SourceGrace time.Duration
	// ReportInterval is AgentOptions.ReportInterval.
	ReportInterval time.Duration
	// TableBudget is ProgrammerOptions.TableBudget.
	TableBudget map[string]int
}

// ElectionIDAt is the election id an OHC started at t arbitrates with
// unless told otherwise: the start time in Unix nanoseconds (High 0).
//
// The switch makes the highest election id primary and remembers the
// highest it has seen for as long as it runs (P4Runtime §5). With a fixed id
// any client that once arbitrated higher keeps the switch for good: the
// OHC, even restarted, comes back with the same, lower id and stays backup.
// An id from the clock grows with every start, so later starts win: a
// restarted OHC outranks its former self and any controller that
// arbitrated before it with a fixed or older id, and restarting the OHC is
// how an operator takes its switch back. Nanoseconds keep two starts apart
// and fit 64 bits until 2262. A clock stepped back between two starts can
// yield a lower id than the switch remembers; the OHC then stays backup
// (and says so at ERROR), and --election-id sets one by hand.
func ElectionIDAt(t time.Time) p4rt.ElectionID {
	return p4rt.ElectionID{Low: uint64(t.UnixNano())}
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
	info := o.P4Info
	if info == nil {
		var err error
		if info, err = p4.P4Info(); err != nil {
			return err
		}
	}
	election := p4rt.ElectionID{Low: o.ElectionID}
	if election.IsZero() {
		election = ElectionIDAt(time.Now())
	}
	client, err := p4rt.New(p4rt.Config{Addr: o.Switch, DeviceID: o.DeviceID, ElectionID: election, Logger: log, DialOptions: o.SwitchDial})
	if err != nil {
		return err
	}
	prog, err := NewProgrammer(ProgrammerOptions{Client: client, P4Info: info, DeviceConfig: o.DeviceConfig, Capabilities: o.Capabilities, TableBudget: o.TableBudget, Logger: log})
	if err != nil {
		return err
	}
	agent, err := NewAgent(AgentOptions{Host: o.Host, Controllers: o.Controllers, Programmer: prog, Logger: log, DialOptions: o.ControllerDial, SourceGrace: o.SourceGrace, ReportInterval: o.ReportInterval})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	role := NewSwitchRole(election, log)
	var wg sync.WaitGroup
	report := func(ctx context.Context) error { return agent.Report(ctx, prog, role) }
	watchRole := func(ctx context.Context) error { return role.Run(ctx, client.Mastership()) }
	for _, f := range []func(context.Context) error{client.Run, prog.Run, agent.Run, report, watchRole} {
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
	log.Info("on-host controller started", "switch", o.Switch, "controllers", o.Controllers, "election_id", election)
	<-ctx.Done()
	wg.Wait()
	return nil
}
