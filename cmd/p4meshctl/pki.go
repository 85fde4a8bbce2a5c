package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/mtls"
	"github.com/p4mesh/p4mesh/pki"
)

const pkiUsage = `usage: p4meshctl pki init [--dir D] [--trust-domain TD]
       p4meshctl pki issue [--dir D] [--san HOST]... [--replica R] KIND/NAME...     (KIND: host, controller, operator, viewer)
       p4meshctl pki lab [--dir D] [--trust-domain TD] --config C.yaml... [--operator NAME] [--viewer NAME]`

// sanList is a repeatable --san.
type sanList []string

func (s *sanList) String() string     { return strings.Join(*s, ",") }
func (s *sanList) Set(v string) error { *s = append(*s, v); return nil }

// pkiCmd makes a lab's CA and certificates: what the daemons' --tls-*
// flags and p4meshctl's own take. A production deployment brings its own
// CA; the identities are the same (docs/security.md).
func pkiCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w\n%s", errUsage, pkiUsage)
	}
	fs := newFlagSet("p4meshctl pki "+args[0], stderr)
	dir := fs.String("dir", "pki", "directory of the CA (ca.pem, ca.key) and the certificates it issues")
	td := fs.String("trust-domain", identity.DefaultTrustDomain, "SPIFFE trust domain of the CA (init, lab)")
	var sans sanList
	var configs sanList
	fs.Var(&sans, "san", "extra DNS name or IP address in the certificate, for clients that check names (issue; repeatable)")
	fs.Var(&configs, "config", "controller configuration whose controllers and hosts get certificates (lab; repeatable)")
	operator := fs.String("operator", "admin", "operator identity to issue (lab; empty: none)")
	viewer := fs.String("viewer", "viewer", "read-only viewer identity to issue (lab; empty: none)")
	replica := fs.String("replica", "", "issue for this replica of a controller that runs as a replica set (e.g. 2): the controller's identity, a key of its own, saved as controller-NAME@R (issue)")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	switch args[0] {
	case "init":
		if fs.NArg() != 0 {
			return fmt.Errorf("%w: pki init takes no arguments\n%s", errUsage, pkiUsage)
		}
		ca, err := pki.NewCA(*td, 10*365*24*time.Hour)
		if err != nil {
			return err
		}
		if err := ca.Save(*dir); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "CA of trust domain %q in %s (ca.pem; keep ca.key private)\n", *td, *dir)
		return nil
	case "issue":
		if fs.NArg() == 0 {
			return fmt.Errorf("%w: name at least one KIND/NAME\n%s", errUsage, pkiUsage)
		}
		lab, err := pki.LoadCA(*dir)
		if err != nil {
			return err
		}
		l := &pki.Lab{Dir: *dir, CA: lab}
		for _, a := range fs.Args() {
			kind, name, ok := strings.Cut(a, "/")
			if !ok {
				return fmt.Errorf("%w: %q: want KIND/NAME, e.g. host/h1", errUsage, a)
			}
			if err := issue(l, identity.Kind(kind), name, *replica, sans, stdout); err != nil {
				return err
			}
		}
		return nil
	case "lab":
		if len(configs) == 0 {
			return fmt.Errorf("%w: pki lab needs at least one --config\n%s", errUsage, pkiUsage)
		}
		l, err := pki.OpenLab(*dir, *td)
		if err != nil {
			return err
		}
		return issueLab(l, configs, *operator, *viewer, stdout)
	}
	return fmt.Errorf("%w\n%s", errUsage, pkiUsage)
}

// issue issues kind/name, for one of its replicas when replica is set.
func issue(l *pki.Lab, kind identity.Kind, name, replica string, sans []string, stdout io.Writer) error {
	issue := l.Issue
	if replica != "" {
		issue = func(kind identity.Kind, name string, sans ...string) (mtls.Files, error) {
			return l.IssueReplica(kind, name, replica, sans...)
		}
	}
	f, err := issue(kind, name, sans...)
	if err != nil {
		return fmt.Errorf("%s/%s: %w", kind, name, err)
	}
	id, _ := identity.New(l.CA.TrustDomain, kind, name)
	who := id.String()
	if replica != "" {
		who += " (replica " + replica + ")"
	}
	fmt.Fprintf(stdout, "%-40s --tls-cert %s --tls-key %s --tls-ca %s\n", who, f.Cert, f.Key, f.CA)
	return nil
}

// issueLab issues what the configurations name: every controller of their
// directories (with its address's host and the loopback names as SANs, so
// gNMI clients that check names accept it) and every host, plus an
// operator and a viewer. A controller that runs as a replica set gets one
// certificate per replica (controller-NAME@1, @2, ... in the order of its
// replicas), each with the controller's identity, its own key and its
// replica's host.
func issueLab(l *pki.Lab, configs []string, operator, viewer string, stdout io.Writer) error {
	ctls := map[string][][]string{} // name → the SANs of each replica
	var hosts []string
	for _, path := range configs {
		c, err := controller.LoadFile(path)
		if err != nil {
			return fmt.Errorf("--config %s: %w", path, err)
		}
		for _, e := range c.Directory {
			var replicas [][]string
			for _, a := range e.Addresses() {
				sans := []string{"localhost", "127.0.0.1", "::1"}
				if h, _, err := net.SplitHostPort(a); err == nil && h != "" && !slices.Contains(sans, h) {
					sans = append(sans, h)
				}
				replicas = append(replicas, sans)
			}
			ctls[e.Name] = replicas
		}
		for _, h := range c.Hosts {
			if !slices.Contains(hosts, h.ID) {
				hosts = append(hosts, h.ID)
			}
		}
	}
	names := make([]string, 0, len(ctls))
	for n := range ctls {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if len(ctls[n]) == 1 {
			if err := issue(l, identity.Controller, n, "", ctls[n][0], stdout); err != nil {
				return err
			}
			continue
		}
		for i, sans := range ctls[n] {
			if err := issue(l, identity.Controller, n, strconv.Itoa(i+1), sans, stdout); err != nil {
				return err
			}
		}
	}
	slices.Sort(hosts)
	for _, h := range hosts {
		// The host's switch presents the same identity on loopback.
		if err := issue(l, identity.Host, h, "", []string{"localhost", "127.0.0.1", "::1"}, stdout); err != nil {
			return err
		}
	}
	for _, u := range []struct {
		kind identity.Kind
		name string
	}{{identity.Operator, operator}, {identity.Viewer, viewer}} {
		if u.name == "" {
			continue
		}
		if err := issue(l, u.kind, u.name, "", nil, stdout); err != nil {
			return err
		}
	}
	return nil
}
