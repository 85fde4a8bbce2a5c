// Package replicaset dials a p4mesh controller that runs as a replica set:
// one shard, several processes, one elected leader at a time. Only the
// leader serves the controller's gRPC API (a standby accepts no connection
// on it), so a client that dials every replica with gRPC's pick_first
// policy is connected to whichever leads, and after a failover reconnects,
// with its usual backoff, to the new leader. Watches resume there by
// revision: the leader's tables are at its store's revisions.
//
// A replica set is written as its addresses joined by commas
// ("10.0.0.1:7001,10.0.0.2:7001"): the form flags take, and the key a
// client shares one connection by. One address is a controller as it has
// always been, dialed exactly as before.
package replicaset

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
)

// Scheme is the gRPC target scheme of a replica set with more than one
// address. Its resolver is handed to each connection (grpc.WithResolvers),
// never registered globally.
const Scheme = "p4mesh-replicas"

// serviceConfig asks for pick_first explicitly: it is gRPC's default, but
// a replica set depends on it (round_robin would open a connection to
// every replica and fail calls on the standbys' refusals).
const serviceConfig = `{"loadBalancingConfig":[{"pick_first":{}}]}`

// CheckAddr checks one address is host:port with a port in 1..65535.
func CheckAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return fmt.Errorf("%q is not host:port", a)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("%q has no valid port", a)
	}
	return nil
}

// Parse reads a replica set written as addresses joined by commas. Each
// must be host:port, and none may repeat: a repeated address is a typo
// that would leave a replica unlisted.
func Parse(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("no address: want host:port, or several joined by commas for a replica set")
	}
	var addrs []string
	for i, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if err := CheckAddr(a); err != nil {
			return nil, fmt.Errorf("replica %d of %q: %w", i+1, s, err)
		}
		if j := slices.Index(addrs, a); j >= 0 {
			return nil, fmt.Errorf("replica %d of %q: %s is also replica %d", i+1, s, a, j+1)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

// Join writes a replica set as Parse reads it.
func Join(addrs []string) string { return strings.Join(addrs, ",") }

// Dial returns a client connection to the replica set addrs (Parse's
// result, or a directory entry's addresses) that follows whichever replica
// serves. It connects lazily, as grpc.NewClient does.
//
// One address is dialed as a plain target, through gRPC's default
// resolver, exactly as before replica sets existed. Several are given to
// pick_first in order, each with its own address as its TLS server name
// and :authority, so each replica is seen as if dialed alone; host names
// among them are resolved when dialed. With mutual TLS, clients check the
// server's identity (spiffe://<domain>/controller/<name>), not its host
// name, so every replica of one controller carries the controller's
// identity (see p4meshctl pki).
func Dial(addrs []string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	switch len(addrs) {
	case 0:
		return nil, errors.New("replicaset: no address to dial")
	case 1:
		return grpc.NewClient(addrs[0], opts...)
	}
	for _, a := range addrs {
		if err := CheckAddr(a); err != nil {
			return nil, fmt.Errorf("replicaset: %w", err)
		}
	}
	state := resolver.State{}
	for _, a := range addrs {
		state.Endpoints = append(state.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: a, ServerName: a}}})
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a, ServerName: a})
	}
	all := append([]grpc.DialOption{
		grpc.WithResolvers(builder{state: state}),
		grpc.WithDefaultServiceConfig(serviceConfig),
	}, opts...)
	return grpc.NewClient(Scheme+":///"+Join(addrs), all...)
}

// builder resolves a replica set to its fixed addresses.
type builder struct{ state resolver.State }

func (b builder) Scheme() string { return Scheme }

func (b builder) Build(_ resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	if err := cc.UpdateState(b.state); err != nil {
		return nil, err
	}
	return nopResolver{}, nil
}

// nopResolver has nothing to re-resolve: the addresses are the
// directory's, and a change of directory makes a new connection.
type nopResolver struct{}

func (nopResolver) ResolveNow(resolver.ResolveNowOptions) {}
func (nopResolver) Close()                                {}
