package main

// The gNMI commands: get, set, subscribe and apply, against a controller's
// gNMI server (p4mesh-controller --gnmi-addr). They speak plain gNMI, so
// they work against any gNMI target serving the p4mesh model; gnmic and
// gnmi_cli work against p4mesh the same way.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/controller"
	p4gnmi "github.com/p4mesh/p4mesh/gnmi"
	"github.com/p4mesh/p4mesh/internal/replicaset"
)

// defaultGNMITarget is where p4mesh-controller serves gNMI by convention
// (57400, the port gnmic assumes).
const defaultGNMITarget = "127.0.0.1:57400"

// gnmiFlags are the connection flags every gNMI command takes.
type gnmiFlags struct {
	target             string
	insecure           bool
	ca, cert, key      string
	serverName         string
	timeout            time.Duration
	insecureSkipVerify bool
	maxMsgSize         int
}

func addGNMIFlags(fs *flag.FlagSet) *gnmiFlags {
	g := &gnmiFlags{}
	fs.StringVar(&g.target, "target", defaultGNMITarget, "the controller's gNMI address, host:port; for a controller that runs as a replica set, each replica's joined by commas (whichever serves answers)")
	fs.BoolVar(&g.insecure, "insecure", false, "plaintext gRPC, for a controller started with --gnmi-insecure")
	fs.StringVar(&g.ca, "tls-ca", "", "CA certificate (PEM) that signed the controller's certificate; default the system's roots")
	fs.StringVar(&g.cert, "tls-cert", "", "client certificate (PEM), for mTLS")
	fs.StringVar(&g.key, "tls-key", "", "client private key (PEM), for mTLS")
	fs.StringVar(&g.serverName, "tls-server-name", "", "name to verify the controller's certificate against; default the host of --target")
	fs.DurationVar(&g.timeout, "timeout", 10*time.Second, "bound on get, set and apply, and on subscribe's wait for its first sync")
	fs.IntVar(&g.maxMsgSize, "max-msg-size", p4gnmi.DefaultMaxMsgSize, "largest gNMI message sent or received, in bytes: apply sends, and get / receives, a whole configuration in one (about 300 bytes per endpoint)")
	return g
}

// dial connects to the target. Plaintext only when --insecure asks for it:
// gNMI makes TLS a MUST.
func (g *gnmiFlags) dial() (gnmi.GNMIClient, func(), error) {
	if g.maxMsgSize <= 0 {
		return nil, nil, fmt.Errorf("%w: --max-msg-size %d: must be positive", errUsage, g.maxMsgSize)
	}
	var creds credentials.TransportCredentials
	switch {
	case g.insecure && (g.ca != "" || g.cert != "" || g.key != ""):
		return nil, nil, fmt.Errorf("%w: --insecure and --tls-* contradict each other", errUsage)
	case g.insecure:
		creds = insecure.NewCredentials()
	default:
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: g.serverName}
		if g.ca != "" {
			pem, err := os.ReadFile(g.ca)
			if err != nil {
				return nil, nil, fmt.Errorf("--tls-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("--tls-ca: no PEM certificate in %s", g.ca)
			}
			cfg.RootCAs = pool
		}
		if (g.cert == "") != (g.key == "") {
			return nil, nil, fmt.Errorf("%w: --tls-cert and --tls-key go together", errUsage)
		}
		if g.cert != "" {
			c, err := tls.LoadX509KeyPair(g.cert, g.key)
			if err != nil {
				return nil, nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
			}
			cfg.Certificates = []tls.Certificate{c}
		}
		creds = credentials.NewTLS(cfg)
	}
	// One target is dialed as given (any gRPC target, as before); a
	// comma is a replica set, whose every address must be host:port.
	addrs := []string{g.target}
	if strings.Contains(g.target, ",") {
		var err error
		if addrs, err = replicaset.Parse(g.target); err != nil {
			return nil, nil, fmt.Errorf("%w: --target: %v", errUsage, err)
		}
	}
	conn, err := replicaset.Dial(addrs, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(g.maxMsgSize), grpc.MaxCallSendMsgSize(g.maxMsgSize)))
	if err != nil {
		return nil, nil, fmt.Errorf("--target %s: %w", g.target, err)
	}
	return gnmi.NewGNMIClient(conn), func() { conn.Close() }, nil
}

// rpcError turns a gRPC error into the server's own message: for a refused
// Set it names the path and says what is wrong.
func rpcError(what string, err error) error {
	if s, ok := status.FromError(err); ok {
		return fmt.Errorf("%s: %s: %s", what, s.Code(), s.Message())
	}
	return fmt.Errorf("%s: %w", what, err)
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// parseInterleaved parses flags wherever they are among the positional
// arguments (`get PATH --encoding json`), which flag.Parse alone does not.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// parsePath parses a gNMI path in its string form,
// /p4mesh/vpcs/vpc[name=red]/config/vni.
func parsePath(s string) (*gnmi.Path, error) {
	if s == "" || s == "/" {
		return &gnmi.Path{}, nil
	}
	p, err := ygot.StringToStructuredPath(s)
	if err != nil {
		return nil, fmt.Errorf("path %q: %w", s, err)
	}
	return p, nil
}

func pathText(p *gnmi.Path) string {
	s, err := ygot.PathToString(p)
	if err != nil || s == "" {
		return "/"
	}
	return s
}

// joinPath is prefix + p, as a notification's paths are meant.
func joinPath(prefix, p *gnmi.Path) *gnmi.Path {
	if len(prefix.GetElem()) == 0 {
		return p
	}
	return &gnmi.Path{Elem: append(append([]*gnmi.PathElem{}, prefix.GetElem()...), p.GetElem()...)}
}

// valueText renders a value as JSON, subtrees indented, so what get prints
// is what set takes.
func valueText(v *gnmi.TypedValue) string {
	var raw []byte
	switch x := v.GetValue().(type) {
	case *gnmi.TypedValue_JsonIetfVal:
		raw = x.JsonIetfVal
	case *gnmi.TypedValue_JsonVal:
		raw = x.JsonVal
	default:
		b, err := json.Marshal(scalar(v))
		if err != nil {
			return v.String()
		}
		raw = b
	}
	var out bytes.Buffer
	if len(raw) > 0 && (raw[0] == '{' || raw[0] == '[') && json.Indent(&out, raw, "", "  ") == nil {
		return out.String()
	}
	return string(raw)
}

// scalar is a non-JSON TypedValue as a Go value that marshals to its JSON.
func scalar(v *gnmi.TypedValue) any {
	switch x := v.GetValue().(type) {
	case *gnmi.TypedValue_StringVal:
		return x.StringVal
	case *gnmi.TypedValue_IntVal:
		return x.IntVal
	case *gnmi.TypedValue_UintVal:
		return x.UintVal
	case *gnmi.TypedValue_BoolVal:
		return x.BoolVal
	case *gnmi.TypedValue_DoubleVal:
		return x.DoubleVal
	case *gnmi.TypedValue_FloatVal:
		return x.FloatVal
	case *gnmi.TypedValue_BytesVal:
		return x.BytesVal
	case *gnmi.TypedValue_AsciiVal:
		return x.AsciiVal
	case *gnmi.TypedValue_LeaflistVal:
		out := []any{}
		for _, e := range x.LeaflistVal.GetElement() {
			out = append(out, scalar(e))
		}
		return out
	}
	return v.String()
}

func parseEncoding(s string) (gnmi.Encoding, error) {
	switch strings.ToLower(s) {
	case "json_ietf", "json-ietf":
		return gnmi.Encoding_JSON_IETF, nil
	case "json":
		return gnmi.Encoding_JSON, nil
	}
	return 0, fmt.Errorf("%w: --encoding %q: json_ietf or json", errUsage, s)
}

// getCmd: p4meshctl get PATH... prints every update as "path: value".
func getCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("get", stderr)
	g := addGNMIFlags(fs)
	encoding := fs.String("encoding", "json_ietf", "json_ietf or json")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return errUsage
	}
	enc, err := parseEncoding(*encoding)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		pos = []string{"/"}
	}
	req := &gnmi.GetRequest{Encoding: enc}
	for _, s := range pos {
		p, err := parsePath(s)
		if err != nil {
			return err
		}
		req.Path = append(req.Path, p)
	}
	c, closeConn, err := g.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	resp, err := c.Get(ctx, req)
	if err != nil {
		return rpcError("get", err)
	}
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			fmt.Fprintf(stdout, "%s: %s\n", pathText(joinPath(n.GetPrefix(), u.GetPath())), valueText(u.GetVal()))
		}
	}
	return nil
}

// splitAssign splits PATH=VALUE at the first "=" outside the path's
// [key=value] brackets.
func splitAssign(s string) (path, value string, ok bool) {
	depth := 0
	for i, r := range s {
		switch r {
		case '[':
			depth++
		case ']':
			depth--
		case '=':
			if depth == 0 {
				return s[:i], s[i+1:], true
			}
		}
	}
	return "", "", false
}

// jsonUpdate parses PATH=JSON into an Update carrying JSON_IETF. The value
// must be JSON: a string is written '"text"', so that 100 and "100" stay
// different things.
func jsonUpdate(flagName, s string) (*gnmi.Update, error) {
	ps, vs, ok := splitAssign(s)
	if !ok {
		return nil, fmt.Errorf("%w: --%s %q: want PATH=JSON", errUsage, flagName, s)
	}
	p, err := parsePath(ps)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flagName, err)
	}
	if !json.Valid([]byte(vs)) {
		return nil, fmt.Errorf("--%s %s: the value %s is not JSON (write a string as '\"text\"')", flagName, ps, vs)
	}
	return &gnmi.Update{Path: p, Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: []byte(vs)}}}, nil
}

// setCmd: p4meshctl set --delete PATH --replace PATH=JSON --update
// PATH=JSON, all in one SetRequest, one transaction.
func setCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("set", stderr)
	g := addGNMIFlags(fs)
	var updates, replaces, deletes multiFlag
	fs.Var(&updates, "update", "PATH=JSON to merge into the tree (repeatable); strings are JSON too: '\"text\"'")
	fs.Var(&replaces, "replace", "PATH=JSON to replace the subtree at PATH with (repeatable)")
	fs.Var(&deletes, "delete", "PATH to delete (repeatable); deleting what is absent succeeds")
	pos, err := parseInterleaved(fs, args)
	if err != nil || len(pos) > 0 {
		return errUsage
	}
	req := &gnmi.SetRequest{}
	for _, s := range deletes {
		p, err := parsePath(s)
		if err != nil {
			return fmt.Errorf("--delete: %w", err)
		}
		req.Delete = append(req.Delete, p)
	}
	for _, s := range replaces {
		u, err := jsonUpdate("replace", s)
		if err != nil {
			return err
		}
		req.Replace = append(req.Replace, u)
	}
	for _, s := range updates {
		u, err := jsonUpdate("update", s)
		if err != nil {
			return err
		}
		req.Update = append(req.Update, u)
	}
	if len(req.Delete)+len(req.Replace)+len(req.Update) == 0 {
		return fmt.Errorf("%w: set needs at least one --update, --replace or --delete", errUsage)
	}
	c, closeConn, err := g.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	resp, err := c.Set(ctx, req)
	if err != nil {
		return rpcError("set refused, nothing changed", err)
	}
	printSetResponse(stdout, resp)
	return nil
}

func printSetResponse(w io.Writer, resp *gnmi.SetResponse) {
	for _, r := range resp.GetResponse() {
		fmt.Fprintf(w, "%s %s\n", strings.ToLower(r.GetOp().String()), pathText(joinPath(resp.GetPrefix(), r.GetPath())))
	}
}

// subscribeCmd: p4meshctl subscribe PATH... prints updates as they come
// and "sync" at each sync_response.
func subscribeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("subscribe", stderr)
	g := addGNMIFlags(fs)
	mode := fs.String("mode", "stream", "once, poll or stream")
	streamMode := fs.String("stream-mode", "on_change", "for --mode stream: on_change or sample")
	sample := fs.Duration("sample-interval", time.Second, "for --stream-mode sample: how often the target sends everything")
	pollEvery := fs.Duration("poll-interval", 5*time.Second, "for --mode poll: how often to poll")
	count := fs.Int("count", 0, "for --mode poll and stream: stop after this many notifications after the first sync (0: until Ctrl-C)")
	updatesOnly := fs.Bool("updates-only", false, "skip the initial dump: only changes")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return errUsage
	}
	if len(pos) == 0 {
		return fmt.Errorf("%w: subscribe needs at least one PATH", errUsage)
	}
	list := &gnmi.SubscriptionList{Encoding: gnmi.Encoding_JSON_IETF, UpdatesOnly: *updatesOnly}
	var subMode gnmi.SubscriptionMode
	switch *mode {
	case "once":
		list.Mode = gnmi.SubscriptionList_ONCE
	case "poll":
		list.Mode = gnmi.SubscriptionList_POLL
	case "stream":
		list.Mode = gnmi.SubscriptionList_STREAM
		switch *streamMode {
		case "on_change", "on-change":
			subMode = gnmi.SubscriptionMode_ON_CHANGE
		case "sample":
			subMode = gnmi.SubscriptionMode_SAMPLE
		default:
			return fmt.Errorf("%w: --stream-mode %q: on_change or sample", errUsage, *streamMode)
		}
	default:
		return fmt.Errorf("%w: --mode %q: once, poll or stream", errUsage, *mode)
	}
	for _, s := range pos {
		p, err := parsePath(s)
		if err != nil {
			return err
		}
		sub := &gnmi.Subscription{Path: p, Mode: subMode}
		if subMode == gnmi.SubscriptionMode_SAMPLE {
			sub.SampleInterval = uint64(*sample)
		}
		list.Subscription = append(list.Subscription, sub)
	}
	c, closeConn, err := g.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.Subscribe(sctx)
	if err != nil {
		return rpcError("subscribe", err)
	}
	if err := st.Send(&gnmi.SubscribeRequest{Request: &gnmi.SubscribeRequest_Subscribe{Subscribe: list}}); err != nil {
		return rpcError("subscribe", err)
	}
	// The first sync must come within --timeout; after it, a stream
	// lives until Ctrl-C.
	synced := make(chan struct{})
	go func() {
		select {
		case <-synced:
		case <-sctx.Done():
		case <-time.After(g.timeout):
			cancel()
		}
	}()
	first := true
	seen := 0
	for {
		resp, err := st.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C: cancellation is not an error
			}
			if first && sctx.Err() != nil {
				return fmt.Errorf("subscribe: no sync_response within --timeout %s", g.timeout)
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return rpcError("subscribe", err)
		}
		switch r := resp.GetResponse().(type) {
		case *gnmi.SubscribeResponse_SyncResponse:
			fmt.Fprintln(stdout, "sync")
			if first {
				first = false
				close(synced)
			} else if list.Mode == gnmi.SubscriptionList_POLL {
				seen++
			}
			switch {
			case list.Mode == gnmi.SubscriptionList_ONCE:
				return nil
			case *count > 0 && seen >= *count:
				return nil
			case list.Mode == gnmi.SubscriptionList_POLL:
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(*pollEvery):
				}
				if err := st.Send(&gnmi.SubscribeRequest{Request: &gnmi.SubscribeRequest_Poll{Poll: &gnmi.Poll{}}}); err != nil {
					return rpcError("poll", err)
				}
			}
		case *gnmi.SubscribeResponse_Update:
			n := r.Update
			for _, p := range n.GetDelete() {
				fmt.Fprintf(stdout, "%s: deleted\n", pathText(joinPath(n.GetPrefix(), p)))
			}
			for _, u := range n.GetUpdate() {
				fmt.Fprintf(stdout, "%s: %s\n", pathText(joinPath(n.GetPrefix(), u.GetPath())), valueText(u.GetVal()))
			}
			if !first && list.Mode == gnmi.SubscriptionList_STREAM {
				seen++
				if *count > 0 && seen >= *count {
					return nil
				}
			}
		}
	}
}

// applyCmd: p4meshctl apply -f FILE.yaml makes the controller's whole
// configuration the file's, in one gNMI Set replacing the root.
func applyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("apply", stderr)
	g := addGNMIFlags(fs)
	file := fs.String("f", "", "the YAML configuration file (the controller's --config format)")
	pos, err := parseInterleaved(fs, args)
	if err != nil || len(pos) > 0 || *file == "" {
		return fmt.Errorf("%w: apply -f FILE.yaml", errUsage)
	}
	want, err := controller.LoadFile(*file)
	if err != nil {
		return err
	}
	d, err := p4gnmi.FromConfig(want)
	if err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	b, err := p4gnmi.MarshalIETF(d)
	if err != nil {
		return err
	}
	c, closeConn, err := g.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	// What the controller runs now, for the summary of what changed. A
	// failure here only costs the summary.
	before, beforeErr := getConfig(ctx, c)
	_, err = c.Set(ctx, &gnmi.SetRequest{Replace: []*gnmi.Update{{
		Path: &gnmi.Path{}, Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: b}},
	}}})
	if err != nil {
		return rpcError("apply refused, nothing changed", err)
	}
	fmt.Fprintf(stdout, "applied %s to %s\n", *file, g.target)
	if beforeErr != nil {
		fmt.Fprintf(stdout, "(no summary: reading the previous configuration: %v)\n", beforeErr)
		return nil
	}
	for _, line := range configDiff(before, want) {
		fmt.Fprintln(stdout, line)
	}
	return nil
}

// getConfig reads the target's whole tree and returns its configuration.
func getConfig(ctx context.Context, c gnmi.GNMIClient) (*controller.Config, error) {
	resp, err := c.Get(ctx, &gnmi.GetRequest{Path: []*gnmi.Path{{}}, Encoding: gnmi.Encoding_JSON_IETF, Type: gnmi.GetRequest_CONFIG})
	if err != nil {
		return nil, rpcError("get /", err)
	}
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			if len(u.GetPath().GetElem()) != 0 || u.GetVal().GetJsonIetfVal() == nil {
				continue
			}
			d, err := p4gnmi.UnmarshalIETF(u.GetVal().GetJsonIetfVal())
			if err != nil {
				return nil, err
			}
			return p4gnmi.ToConfig(d)
		}
	}
	return nil, errors.New("get /: no JSON_IETF tree in the answer")
}

// configDiff summarises, per top-level list, what was added, removed and
// changed (by key) going from old to new: "vpcs: +1 −0 ~0".
func configDiff(old, new *controller.Config) []string {
	var out []string
	add := func(name string, n listDiff) {
		if n != (listDiff{}) {
			out = append(out, fmt.Sprintf("%s: +%d −%d ~%d", name, n.added, n.removed, n.changed))
		}
	}
	if old.Controller != new.Controller {
		out = append(out, fmt.Sprintf("controller: %s → %s", old.Controller, new.Controller))
	}
	add("directory", diffBy(old.Directory, new.Directory, func(e controller.ControllerEntry) string { return e.Name }))
	add("vpcs", diffBy(old.VPCs, new.VPCs, func(v controller.VPC) string { return v.Name }))
	add("hosts", diffBy(old.Hosts, new.Hosts, func(h controller.Host) string { return h.ID }))
	add("endpoints", diffBy(old.Endpoints, new.Endpoints, func(e controller.Endpoint) string { return e.ID }))
	add("load-balancers", diffBy(old.LoadBalancers, new.LoadBalancers, func(l controller.LoadBalancer) string { return l.Name }))
	add("routes", diffBy(old.Routes, new.Routes, func(r controller.Route) string { return r.VPC + " " + r.Prefix.String() + " " + r.NextHop }))
	add("export-policies", diffBy(old.ExportPolicies, new.ExportPolicies, func(p controller.ExportPolicy) string { return p.Name }))
	add("peerings", diffBy(old.Peerings, new.Peerings, func(p controller.Peering) string { return p.VPC + " " + p.PeerVPC }))
	add("gateway-pools", diffBy(old.GatewayPools, new.GatewayPools, func(p controller.GatewayPool) string { return p.Name }))
	if len(out) == 0 {
		out = append(out, "no change")
	}
	return out
}

type listDiff struct{ added, removed, changed int }

func diffBy[T any](old, new []T, key func(T) string) listDiff {
	var d listDiff
	was := map[string]T{}
	for _, x := range old {
		was[key(x)] = x
	}
	for _, x := range new {
		o, ok := was[key(x)]
		switch {
		case !ok:
			d.added++
		case !reflect.DeepEqual(o, x):
			d.changed++
		}
		delete(was, key(x))
	}
	d.removed = len(was)
	return d
}
