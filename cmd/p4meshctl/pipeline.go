package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"

	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/mtls"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

// pipelineShow prints the embedded pipeline the way a switch sees it: every
// table with its key and actions, every action with its parameters, by name
// and P4Runtime ID, read from the P4Info at run time.
func pipelineShow(w io.Writer) error {
	info, err := p4.P4Info()
	if err != nil {
		return err
	}
	s, err := p4rt.NewSchema(info)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "pipeline vpc_peering.p4 (arch %s)\n\nTABLE\tID\tKEY\tACTIONS\n", info.GetPkgInfo().GetArch())
	for _, t := range s.Tables() {
		var keys, acts []string
		for _, f := range t.GetMatchFields() {
			keys = append(keys, fmt.Sprintf("%s:%d/%s", f.GetName(), f.GetBitwidth(), strings.ToLower(f.GetMatchType().String())))
		}
		for _, r := range t.GetActionRefs() {
			a, err := s.ActionByID(r.GetId())
			if err != nil {
				return err
			}
			acts = append(acts, a.GetPreamble().GetAlias())
		}
		if t.Profile != nil {
			acts = append(acts, "via "+t.Profile.GetPreamble().GetAlias())
		}
		if len(keys) == 0 {
			keys = []string{"(default action only)"}
		}
		fmt.Fprintf(tw, "%s\t0x%08x\t%s\t%s\n", t.Name(), t.ID(), strings.Join(keys, " "), strings.Join(acts, " "))
	}
	fmt.Fprintf(tw, "\nACTION\tID\tPARAMS\n")
	for _, a := range info.GetActions() {
		var ps []string
		for _, p := range a.GetParams() {
			ps = append(ps, fmt.Sprintf("%s:%d", p.GetName(), p.GetBitwidth()))
		}
		fmt.Fprintf(tw, "%s\t0x%08x\t%s\n", a.GetPreamble().GetName(), a.GetPreamble().GetId(), strings.Join(ps, " "))
	}
	fmt.Fprintf(tw, "\nOTHER\tID\tKIND\n")
	for _, p := range info.GetActionProfiles() {
		kind := "action profile"
		if p.GetWithSelector() {
			kind = fmt.Sprintf("action selector, size %d", p.GetSize())
		}
		fmt.Fprintf(tw, "%s\t0x%08x\t%s\n", p.GetPreamble().GetName(), p.GetPreamble().GetId(), kind)
	}
	for _, c := range info.GetDirectCounters() {
		t, _ := s.TableByID(c.GetDirectTableId())
		fmt.Fprintf(tw, "%s\t0x%08x\tdirect counter on %s\n", c.GetPreamble().GetName(), c.GetPreamble().GetId(), t.Name())
	}
	for _, d := range info.GetDigests() {
		fmt.Fprintf(tw, "%s\t0x%08x\tdigest\n", d.GetPreamble().GetName(), d.GetPreamble().GetId())
	}
	for _, m := range info.GetControllerPacketMetadata() {
		fmt.Fprintf(tw, "%s\t0x%08x\tcontroller header\n", m.GetPreamble().GetName(), m.GetPreamble().GetId())
	}
	return tw.Flush()
}

// pipelinePush loads the embedded pipeline onto a switch. It arbitrates for
// primary first (only the primary may push) and skips the push when the
// switch already runs this pipeline, so pushing twice never clears tables.
func pipelinePush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("pipeline push", stderr)
	addr := fs.String("target", "127.0.0.1:9559", "P4Runtime address of the switch")
	device := fs.Uint64("device-id", 1, "P4Runtime device id (never 0)")
	election := fs.Uint64("election-id", 1, "election id (low 64 bits) to arbitrate with")
	jsonPath := fs.String("bmv2-json", "p4/v1model/build/vpc_peering.json", "p4c-bm2-ss output for BMv2 (`make p4` builds it)")
	mode := fs.String("action", "verify-and-commit", "verify-and-commit (clears tables) or reconcile-and-commit (keeps them where the target can)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	var tlsFlags mtls.Flags
	tlsFlags.Register(fs, "the switch (an operator certificate: p4meshctl pki issue operator/NAME)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if err := tlsFlags.Check(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	var action p4v1.SetForwardingPipelineConfigRequest_Action
	switch *mode {
	case "verify-and-commit":
		action = p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT
	case "reconcile-and-commit":
		action = p4v1.SetForwardingPipelineConfigRequest_RECONCILE_AND_COMMIT
	default:
		return fmt.Errorf("--action %q: want verify-and-commit or reconcile-and-commit", *mode)
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	info, err := p4.P4Info()
	if err != nil {
		return err
	}
	devConfig, err := p4rt.BMv2{JSONPath: *jsonPath}.DeviceConfig()
	if err != nil {
		return err
	}
	// The switch is the host it belongs to (p4mesh-switch presents its
	// host's identity); any host of the trust domain is accepted here,
	// since the operator names the switch by address.
	dial, err := tlsFlags.Dial(mtls.ExpectKind(tlsFlags.TrustDomain, identity.Host), log)
	if err != nil {
		return err
	}
	return push(ctx, pushConfig{
		client: p4rt.Config{Addr: *addr, DeviceID: *device, ElectionID: p4rt.ElectionID{Low: *election}, Logger: log, DialOptions: []grpc.DialOption{dial}},
		info:   info, devConfig: devConfig, action: action, timeout: *timeout,
	}, stdout)
}

type pushConfig struct {
	client    p4rt.Config
	info      *p4configv1.P4Info
	devConfig []byte
	action    p4v1.SetForwardingPipelineConfigRequest_Action
	timeout   time.Duration
}

func push(ctx context.Context, pc pushConfig, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, pc.timeout)
	defer cancel()
	c, err := p4rt.New(pc.client)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := c.WaitPrimary(ctx); err != nil {
		if last := c.LastError(); last != nil {
			return fmt.Errorf("not primary on %s: %w", pc.client.Addr, last)
		}
		return fmt.Errorf("not primary on %s: %w", pc.client.Addr, err)
	}
	cookie, err := p4rt.Cookie(pc.info, pc.devConfig)
	if err != nil {
		return err
	}
	pushed, err := c.SetPipeline(ctx, pc.info, pc.devConfig, cookie, pc.action)
	if err != nil {
		return fmt.Errorf("push to %s: %w", pc.client.Addr, err)
	}
	if pushed {
		fmt.Fprintf(stdout, "pushed vpc_peering to %s device %d (cookie %#x)\n", pc.client.Addr, pc.client.DeviceID, cookie)
	} else {
		fmt.Fprintf(stdout, "%s device %d already runs vpc_peering (cookie %#x): nothing pushed\n", pc.client.Addr, pc.client.DeviceID, cookie)
	}
	return nil
}
