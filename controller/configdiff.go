package controller

import (
	"fmt"
	"reflect"
	"strings"
)

// A ConfigDiff says how two configurations differ, for an operator to
// read: one item per entry (VPC, endpoint, peering, ...) that only one of
// them has or that differs, naming the fields that do, in file order.
// Entries are matched by their key (a VPC's name, an endpoint's id, a
// peering's pair), so an edit reads as "vpc red: vni differs" rather than
// as one entry removed and another added.
type ConfigDiff []string

// diffShown bounds String: a log line stays readable when a restart
// meets a --config 50,000 endpoints away from the saved configuration.
const diffShown = 10

// String summarises d on one line: its first items, then how many more.
func (d ConfigDiff) String() string {
	if len(d) <= diffShown {
		return strings.Join(d, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(d[:diffShown], "; "), len(d)-diffShown)
}

// DiffConfigs lists how b differs from a; aName and bName say, in the
// items, which side an entry is only in ("only in saved").
func DiffConfigs(a, b *Config, aName, bName string) ConfigDiff {
	da, db := docOf(a), docOf(b)
	dd := &differ{aName: aName, bName: bName}
	if da.Controller != db.Controller {
		dd.add(fmt.Sprintf("controller: %q in %s, %q in %s", da.Controller, aName, db.Controller, bName))
	}
	diffList(dd, "directory", "directory", da.Directory, db.Directory, func(e controllerDoc) string { return e.Name })
	diffList(dd, "vpcs", "vpc", da.VPCs, db.VPCs, func(v vpcDoc) string { return v.Name })
	diffList(dd, "hosts", "host", da.Hosts, db.Hosts, func(h hostDoc) string { return h.ID })
	diffList(dd, "endpoints", "endpoint", da.Endpoints, db.Endpoints, func(e endpointDoc) string { return e.ID })
	diffList(dd, "load_balancers", "load balancer", da.LoadBalancers, db.LoadBalancers, func(l lbDoc) string { return l.Name })
	diffList(dd, "routes", "route", da.Routes, db.Routes, func(r routeDoc) string { return r.VPC + " " + r.Prefix })
	diffList(dd, "export_policies", "export policy", da.ExportPolicies, db.ExportPolicies, func(p policyDoc) string { return p.Name })
	diffList(dd, "peerings", "peering", da.Peerings, db.Peerings, func(p peeringDoc) string { return p.VPC + "->" + p.PeerVPC })
	diffList(dd, "gateway_pools", "gateway pool", da.GatewayPools, db.GatewayPools, func(p gatewayPoolDoc) string { return p.Name })
	var ga, gb []bgpGlobalDoc
	var na, nb []bgpNeighborDoc
	if da.BGP != nil {
		ga, na = []bgpGlobalDoc{*da.BGP.global()}, da.BGP.Neighbors
	}
	if db.BGP != nil {
		gb, nb = []bgpGlobalDoc{*db.BGP.global()}, db.BGP.Neighbors
	}
	diffList(dd, "bgp", "bgp section", ga, gb, func(bgpGlobalDoc) string { return "speaker" })
	diffList(dd, "bgp.neighbors", "BGP neighbor", na, nb, func(n bgpNeighborDoc) string { return n.VPC + "/" + n.Address })
	return dd.items
}

type differ struct {
	aName, bName string
	items        ConfigDiff
}

func (d *differ) add(item string) { d.items = append(d.items, item) }

// diffList adds the differences between the lists a and b of one kind;
// list is the YAML key of the list, kind the name of one entry.
func diffList[T any](d *differ, list, kind string, a, b []T, key func(T) string) {
	ka, kb := uniqueKeys(a, key), uniqueKeys(b, key)
	inB := make(map[string]int, len(b))
	for i, k := range kb {
		inB[k] = i
	}
	inA := make(map[string]bool, len(a))
	before := len(d.items)
	for i, k := range ka {
		inA[k] = true
		j, ok := inB[k]
		if !ok {
			d.add(fmt.Sprintf("%s %s: only in %s", kind, k, d.aName))
			continue
		}
		if f := changedFields(a[i], b[j]); len(f) > 0 {
			verb := "differs"
			if len(f) > 1 {
				verb = "differ"
			}
			d.add(fmt.Sprintf("%s %s: %s %s", kind, k, strings.Join(f, ", "), verb))
		}
	}
	for _, k := range kb {
		if !inA[k] {
			d.add(fmt.Sprintf("%s %s: only in %s", kind, k, d.bName))
		}
	}
	// The same entries, each alike, can still be listed in another order,
	// which Config.Equal counts as a difference (the order of subnets and
	// of the directory matters).
	if len(d.items) == before && !reflect.DeepEqual(a, b) {
		d.add(fmt.Sprintf("%s: the same entries in another order", list))
	}
}

// uniqueKeys returns the key of each entry, a repeated key numbered (a
// configuration that does not validate may repeat one) so that every
// entry is compared with its counterpart.
func uniqueKeys[T any](list []T, key func(T) string) []string {
	seen := make(map[string]int, len(list))
	keys := make([]string, len(list))
	for i, e := range list {
		k := key(e)
		seen[k]++
		if n := seen[k]; n > 1 {
			k = fmt.Sprintf("%s (#%d)", k, n)
		}
		keys[i] = k
	}
	return keys
}

// changedFields returns the YAML names of the fields of two entries (YAML
// documents, structs) that differ.
func changedFields(a, b any) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := range va.NumField() {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			name, _, _ := strings.Cut(va.Type().Field(i).Tag.Get("yaml"), ",")
			out = append(out, name)
		}
	}
	return out
}
